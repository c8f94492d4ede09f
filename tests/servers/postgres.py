"""A throwaway PostgreSQL cluster for the tests (pytest plugin, see tests/conftest.py).

Fixtures:

``postgres_url`` (session scope)
    ``postgresql://ticketbot@127.0.0.1:PORT/ticketbot_test`` on a cluster made with
    ``initdb`` in a temporary directory (trust authentication, fsync off, loopback
    only), stopped at the end of the session. If ``TICKETBOT_TEST_POSTGRES_URL`` is
    set, that server is used instead and nothing is started.

``postgres_db_url`` (function scope)
    The URL of a fresh, uniquely named, empty database on that server, dropped after
    the test.

When running as root (initdb refuses to), the cluster belongs to the ``postgres`` system
user and initdb/pg_ctl run through ``runuser -u postgres --`` (or ``su postgres -c``).
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg2
import pytest
from psycopg2 import errors, sql
from psycopg2.extensions import connection as Connection

from tests.servers.ports import LOOPBACK, free_port

INSTALL_HINT = (
    "PostgreSQL is not installed: apt-get install postgresql "
    "(or run scripts/install-test-servers.sh)"
)
URL_ENV = "TICKETBOT_TEST_POSTGRES_URL"
SUPERUSER = "ticketbot"
DATABASE = "ticketbot_test"
STARTUP_TIMEOUT = 30.0
SYSTEM_USER = "postgres"


def find_pg_bindir() -> Path | None:
    """The directory holding initdb and pg_ctl: from PATH, else the newest Debian one."""
    on_path = shutil.which("initdb")
    if on_path:
        real = Path(on_path).resolve().parent
        if (real / "pg_ctl").exists():
            return real
        if shutil.which("pg_ctl"):
            return Path(on_path).parent

    def version_key(bindir: str) -> tuple[int, ...]:
        version = Path(bindir).parent.name
        return tuple(int(part) for part in re.findall(r"\d+", version))

    candidates = [
        Path(initdb).parent
        for initdb in glob.glob("/usr/lib/postgresql/*/bin/initdb")
        if (Path(initdb).parent / "pg_ctl").exists()
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda p: version_key(str(p)))


@dataclass
class PostgresCluster:
    """A cluster in ``basedir`` (data/, sock/, postgres.log), run by ``owner`` if set."""

    bindir: Path
    basedir: Path
    port: int
    owner: pwd.struct_passwd | None

    @property
    def datadir(self) -> Path:
        return self.basedir / "data"

    @property
    def sockdir(self) -> Path:
        return self.basedir / "sock"

    @property
    def logfile(self) -> Path:
        return self.basedir / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@{LOOPBACK}:{self.port}/{DATABASE}"

    def run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL program as the cluster's owner, capturing its output."""
        cmd = [str(self.bindir / program), *args]
        if self.owner is not None:
            if shutil.which("runuser"):
                cmd = ["runuser", "-u", self.owner.pw_name, "--", *cmd]
            else:
                cmd = ["su", self.owner.pw_name, "-s", "/bin/sh", "-c", shlex.join(cmd)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return subprocess.run(
            cmd,
            cwd=self.basedir,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=STARTUP_TIMEOUT + 30,
            check=False,
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.logfile.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return "(no server log)"
        return f"--- {self.logfile} ---\n" + "\n".join(text)

    def init(self) -> None:
        if self.owner is not None:
            os.chown(self.basedir, self.owner.pw_uid, self.owner.pw_gid)
        self.sockdir.mkdir()
        if self.owner is not None:
            os.chown(self.sockdir, self.owner.pw_uid, self.owner.pw_gid)
        result = self.run(
            "initdb",
            "-D",
            str(self.datadir),
            "-A",
            "trust",
            "-U",
            SUPERUSER,
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        )
        if result.returncode != 0:
            pytest.fail(
                f"initdb failed (status {result.returncode}):\n{result.stdout}{result.stderr}",
                pytrace=False,
            )

    def start(self) -> None:
        options = " ".join(
            [
                f"-c listen_addresses={LOOPBACK}",
                f"-p {self.port}",
                f"-k {self.sockdir}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
            ]
        )
        result = self.run(
            "pg_ctl",
            "-D",
            str(self.datadir),
            "-l",
            str(self.logfile),
            "-o",
            options,
            "-w",
            "-t",
            str(int(STARTUP_TIMEOUT)),
            "start",
        )
        if result.returncode != 0:
            pytest.fail(
                f"pg_ctl start failed (status {result.returncode}):\n"
                f"{result.stdout}{result.stderr}\n{self.log_tail()}",
                pytrace=False,
            )

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop")


def connect(url: str, dbname: str | None = None) -> Connection:
    """An autocommit connection to ``url`` (or to another database on its server)."""
    conn = psycopg2.connect(url, dbname=dbname) if dbname else psycopg2.connect(url)
    conn.autocommit = True
    return conn


def wait_until_ready(
    url: str,
    timeout: float,
    cluster: PostgresCluster | None = None,
    dbname: str | None = None,
) -> None:
    """Try to connect until the server accepts connections, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            connect(url, dbname=dbname).close()
            return
        except psycopg2.OperationalError as exc:
            if time.monotonic() > deadline:
                tail = cluster.log_tail() if cluster else ""
                pytest.fail(
                    f"PostgreSQL did not accept connections within {timeout:.0f} s: {exc}\n{tail}",
                    pytrace=False,
                )
            time.sleep(0.1)


def start_cluster() -> tuple[PostgresCluster, float]:
    bindir = find_pg_bindir()
    if bindir is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            pytest.fail(
                f"running as root, and initdb refuses to: it needs the {SYSTEM_USER!r} "
                f"system user, which does not exist ({INSTALL_HINT})",
                pytrace=False,
            )
    # Not under pytest's tmp dir: that is private to root, so the postgres user
    # could not get into it.
    basedir = Path(tempfile.mkdtemp(prefix="ticketbot-pg-"))
    cluster = PostgresCluster(bindir=bindir, basedir=basedir, port=free_port(), owner=owner)
    started = time.monotonic()
    try:
        cluster.init()
        cluster.start()
        wait_until_ready(cluster.url, STARTUP_TIMEOUT, cluster, dbname="postgres")
        conn = connect(cluster.url, dbname="postgres")
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
        finally:
            conn.close()
    except BaseException:
        cluster.stop()
        shutil.rmtree(basedir, ignore_errors=True)
        raise
    return cluster, time.monotonic() - started


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a PostgreSQL database for the whole session (see the module docstring)."""
    external = os.environ.get(URL_ENV)
    if external:
        wait_until_ready(external, STARTUP_TIMEOUT)
        yield external
        return
    cluster, seconds = start_cluster()
    print(
        f"\nPostgreSQL ({cluster.bindir}) at {cluster.url} started in {seconds:.1f} s",
        file=sys.stderr,
    )
    try:
        yield cluster.url
    finally:
        cluster.stop()
        shutil.rmtree(cluster.basedir, ignore_errors=True)


def _drop_database(conn: Connection, name: str) -> None:
    with conn.cursor() as cur:
        try:
            # WITH (FORCE) (PostgreSQL 13+) also ends connections the test left open.
            cur.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        except errors.SyntaxError:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture
def postgres_db_url(postgres_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a fresh, empty database of its own for one test; dropped afterwards."""
    stem = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:40]
    name = f"t_{stem}_{uuid.uuid4().hex[:10]}"
    conn = connect(postgres_url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        yield urlsplit(postgres_url)._replace(path=f"/{name}").geturl()
    finally:
        try:
            _drop_database(conn, name)
        finally:
            conn.close()
