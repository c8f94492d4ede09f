# ticketbot in a container. See "Deployment: Docker, docker-compose, systemd" in
# docs/operators.md.
#
#   docker build -t ticketbot .
#   docker run -d --name ticketbot \
#     -v /srv/ticketbot/bot.toml:/etc/ticketbot/bot.toml:ro \
#     -v ticketbot-data:/var/lib/ticketbot \
#     --env-file /srv/ticketbot/ticketbot.env \
#     -p 127.0.0.1:9102:9102 ticketbot
#
# Config: /etc/ticketbot/bot.toml, mounted read-only (use absolute paths in it: relative
# ones are relative to /etc/ticketbot, which the bot cannot write). Data: the volume
# /var/lib/ticketbot (the SQLite database, backups, archives, reports). Secrets: the
# environment (password_env = "...", [storage] url_env = "..."), never the image.
#
# The HEALTHCHECK asks http://127.0.0.1:9102/healthz, so bot.toml needs an [http]
# section; listen = "0.0.0.0:9102" also lets Prometheus and `docker run -p` reach it.
# Another port: set TICKETBOT_HEALTHZ=http://127.0.0.1:PORT/healthz. Without [http],
# run with --no-healthcheck.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# --- build: the project and its dependencies into /opt/ticketbot --------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# only what the package is built from (no tests, docs, bench or local config)
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY adapters ./adapters
COPY storage ./storage
RUN python -m venv /opt/ticketbot \
    && /opt/ticketbot/bin/pip install --upgrade pip \
    && /opt/ticketbot/bin/pip install . \
    && /opt/ticketbot/bin/python -m compileall -q /opt/ticketbot/lib

# --- runtime ------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
# pg_dump/pg_restore for `ticketbot backup` and the daily [backup] on PostgreSQL. Use the
# client of the server's major version (bookworm's is 15, as in deploy/docker-compose.yml;
# for another version add the PGDG apt repository); leave empty for SQLite only.
ARG PG_CLIENT=postgresql-client-15
RUN if [ -n "${PG_CLIENT}" ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends "${PG_CLIENT}" \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && groupadd --system --gid 10001 ticketbot \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /var/lib/ticketbot --shell /usr/sbin/nologin ticketbot \
    && mkdir -p /etc/ticketbot /var/lib/ticketbot \
    && chown 10001:10001 /var/lib/ticketbot \
    && chmod 0700 /var/lib/ticketbot

COPY --from=build /opt/ticketbot /opt/ticketbot

ENV PATH=/opt/ticketbot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    TICKETBOT_HEALTHZ=http://127.0.0.1:9102/healthz

USER 10001:10001
WORKDIR /var/lib/ticketbot
VOLUME ["/var/lib/ticketbot"]
EXPOSE 9102

# 0 when /healthz answers 200; 1 when it answers otherwise or not at all (no proxy).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os,sys,urllib.request as u; r=u.build_opener(u.ProxyHandler({})).open(os.environ.get('TICKETBOT_HEALTHZ','http://127.0.0.1:9102/healthz'),timeout=8); sys.exit(0 if r.status==200 else 1)"]

ENTRYPOINT ["ticketbot"]
CMD ["run", "--config", "/etc/ticketbot/bot.toml"]
