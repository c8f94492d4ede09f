"""The deployment files (Dockerfile, deploy/) checked without Docker: what they say is
read back and held against the code they start, the config they ship is loaded, the
image's health check is run, and the systemd unit is verified by systemd-analyze."""

from __future__ import annotations

import asyncio
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from adapters.http import HttpServer
from bot.cli import _parser
from bot.config import ConfigError, HttpConfig, load_config
from bot.status import StatusService
from tests.core.conftest import make_desk
from tests.deploy.parsing import (
    Instruction,
    dockerfile_instructions,
    env_file,
    exec_form,
    parse_yaml_subset,
    unit_sections,
)

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CONFIG_IN_IMAGE = "/etc/ticketbot/bot.toml"
DATA = "/var/lib/ticketbot"
SECRET_WORDS = re.compile(r"PASSWORD|PASSWD|TOKEN|SECRET|API_?KEY|PRIVATE", re.IGNORECASE)


def _cannot(reason: str) -> None:
    """Under CI a test is never skipped: it fails and says why; elsewhere it is skipped."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


# --- Dockerfile ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return dockerfile_instructions((ROOT / "Dockerfile").read_text(encoding="utf-8"))


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    starts = [i for i, ins in enumerate(instructions) if ins.name == "FROM"]
    assert starts, "no FROM"
    return instructions[starts[-1] :]


def only(instructions: list[Instruction], name: str) -> Instruction:
    found = [ins for ins in instructions if ins.name == name]
    assert len(found) == 1, f"expected one {name}, found {len(found)}"
    return found[0]


def healthcheck_command(instructions: list[Instruction]) -> list[str]:
    args = only(final_stage(instructions), "HEALTHCHECK").args
    options, sep, command = args.partition("CMD ")
    assert sep, f"HEALTHCHECK without CMD: {args}"
    for option in options.split():
        assert re.fullmatch(r"--(interval|timeout|start-period|start-interval|retries)=\S+", option)
    return exec_form(command)


def test_dockerfile_builds_on_slim_python_and_installs_without_dev_dependencies(
    dockerfile: list[Instruction],
) -> None:
    args = {
        ins.args.partition("=")[0]: ins.args.partition("=")[2]
        for ins in dockerfile
        if ins.name == "ARG"
    }
    images = [ins.args.split()[0] for ins in dockerfile if ins.name == "FROM"]
    assert len(images) == 2, "a build stage and a runtime stage"
    for image in images:
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert re.fullmatch(r"python:3\.1[12]-slim(-\w+)?", resolved), resolved

    installs = [ins.args for ins in dockerfile if ins.name == "RUN" and "pip install" in ins.args]
    assert installs and any(re.search(r"pip install \.(\s|$)", run) for run in installs)
    for run in installs:
        assert "[test]" not in run and " -e " not in run, f"dev install in the image: {run}"
    # only the runtime image's own files: the build stage's are copied over
    runtime = final_stage(dockerfile)
    assert any(ins.name == "COPY" and ins.args.startswith("--from=build") for ins in runtime)


def test_dockerfile_copies_every_package_pyproject_ships(dockerfile: list[Instruction]) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    copied = {
        source.rstrip("/")
        for ins in dockerfile
        if ins.name == "COPY" and not ins.args.startswith("--")
        for source in ins.args.split()[:-1]
    }
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
    packages = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    for pattern in packages:
        top = pattern.rstrip("*")
        assert top in copied, f"pyproject.toml ships {pattern}, the Dockerfile does not copy it"
    assert {"pyproject.toml", pyproject["project"]["readme"]} <= copied


def test_dockerfile_runs_as_a_user_other_than_root(dockerfile: list[Instruction]) -> None:
    runtime = final_stage(dockerfile)
    users = [ins for ins in runtime if ins.name == "USER"]
    assert users, "the runtime stage sets no USER: it would run as root"
    user = users[-1].args.split(":")[0]
    assert user not in ("root", "0"), user
    entry = only(runtime, "ENTRYPOINT")
    assert users[-1].line < entry.line
    assert all(ins.line < users[-1].line for ins in runtime if ins.name == "RUN"), (
        "RUN after USER: the non-root user is set last"
    )


def test_dockerfile_volumes_port_and_command(dockerfile: list[Instruction]) -> None:
    runtime = final_stage(dockerfile)
    volumes = [v for ins in runtime if ins.name == "VOLUME" for v in exec_form(ins.args)]
    assert DATA in volumes
    assert "9102" in only(runtime, "EXPOSE").args.split()
    entry = exec_form(only(runtime, "ENTRYPOINT").args)
    command = exec_form(only(runtime, "CMD").args)
    assert entry == ["ticketbot"]
    assert command == ["run", "--config", CONFIG_IN_IMAGE]
    # the ticketbot command line accepts it as given
    parsed = _parser().parse_args(command)
    assert parsed.command == "run" and parsed.config == CONFIG_IN_IMAGE


def test_dockerfile_holds_no_secrets(dockerfile: list[Instruction]) -> None:
    for ins in dockerfile:
        if ins.name not in ("ENV", "ARG", "LABEL"):
            continue
        names = re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", " " + ins.args)
        for name in names:
            assert not SECRET_WORDS.search(name), f"line {ins.line}: {ins.name} {name}"
        assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", ins.args), (
            f"line {ins.line}: a URL with a password"
        )


def test_dockerignore_keeps_local_state_out_and_the_sources_in(
    dockerfile: list[Instruction],
) -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    normalized = {p.rstrip("/") for p in patterns}
    for needed in (".git", ".venv", ".venv-synapse", "var", "bench/data", ".pytest_cache"):
        assert needed in normalized, f".dockerignore lacks {needed}"
    for needed in (".mypy_cache", ".ruff_cache", "**/__pycache__"):
        assert needed in normalized, f".dockerignore lacks {needed}"

    def ignored(path: str) -> bool:
        return any(fnmatch.fnmatch(path, p.rstrip("/")) for p in patterns if not p.startswith("!"))

    for ins in dockerfile:
        if ins.name == "COPY" and not ins.args.startswith("--"):
            for source in ins.args.split()[:-1]:
                assert not ignored(source.rstrip("/")), f"{source} is copied but ignored"


# --- the image's health check ---------------------------------------------------------------


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/healthz" else 404
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}\n' if code == 200 else b'{"status": "failing"}\n')

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[ThreadingHTTPServer, type[_Health]]]:
    handler = type("Handler", (_Health,), {"status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler
    server.shutdown()
    server.server_close()
    thread.join()


def run_healthcheck(command: list[str], url: str) -> subprocess.CompletedProcess[str]:
    assert command[0] == "python"
    env = {
        **os.environ,
        "TICKETBOT_HEALTHZ": url,
        # the check must not go through a proxy the container's environment names
        "http_proxy": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "no_proxy": "",
    }
    return subprocess.run(
        [sys.executable, *command[1:]], env=env, capture_output=True, text=True, timeout=30
    )


def test_healthcheck_passes_on_200_and_fails_otherwise(
    dockerfile: list[Instruction], health_server: tuple[ThreadingHTTPServer, type[_Health]]
) -> None:
    command = healthcheck_command(dockerfile)
    server, handler = health_server
    base = f"http://127.0.0.1:{server.server_address[1]}"

    ok = run_healthcheck(command, f"{base}/healthz")
    assert ok.returncode == 0, ok.stderr

    handler.status = 503
    failing = run_healthcheck(command, f"{base}/healthz")
    assert failing.returncode == 1 and "503" in failing.stderr

    wrong_path = run_healthcheck(command, f"{base}/nothing")
    assert wrong_path.returncode == 1 and "404" in wrong_path.stderr

    with ThreadingHTTPServer(("127.0.0.1", 0), _Health) as closed:
        port = closed.server_address[1]
    nobody = run_healthcheck(command, f"http://127.0.0.1:{port}/healthz")
    assert nobody.returncode == 1, "nothing listening must be unhealthy"


def test_healthcheck_default_url_is_the_exposed_port(dockerfile: list[Instruction]) -> None:
    command = healthcheck_command(dockerfile)
    runtime = final_stage(dockerfile)
    env_lines = " ".join(ins.args for ins in runtime if ins.name == "ENV")
    default = "http://127.0.0.1:9102/healthz"
    assert f"TICKETBOT_HEALTHZ={default}" in env_lines
    assert f"'{default}'" in command[-1]  # also without the ENV (docker run -e ... unset)
    assert "9102" in only(runtime, "EXPOSE").args


async def test_healthcheck_against_the_bots_own_endpoint(
    dockerfile: list[Instruction], tmp_path: Path
) -> None:
    command = healthcheck_command(dockerfile)
    desk = await make_desk(tmp_path)
    assert desk.live is not None
    status = StatusService(desk.live, desk.store, desk.clock, desk.intake.metrics, [])
    server = HttpServer(HttpConfig(port=0, badge_cache_seconds=0), status)
    await server.start()
    url = f"http://127.0.0.1:{server.port}/healthz"
    try:
        ok = await asyncio.to_thread(run_healthcheck, command, url)
        assert ok.returncode == 0, ok.stderr
        await desk.store.close()  # the database gone: /healthz answers 503
        failing = await asyncio.to_thread(run_healthcheck, command, url)
        assert failing.returncode == 1 and "503" in failing.stderr
    finally:
        await server.stop()
        await desk.store.close()


# --- deploy/bot.toml.example and the env files ---------------------------------------------------


def example_env() -> dict[str, str]:
    values, _ = env_file((DEPLOY / "ticketbot.env.example").read_text(encoding="utf-8"))
    return values


def test_example_config_loads_with_the_example_environment() -> None:
    config = load_config(DEPLOY / "bot.toml.example", example_env())
    assert config.storage.url == "postgresql://ticketbot:change-me@db:5432/ticketbot"
    assert config.console is None or not config.console.enabled
    assert config.http is not None and (config.http.host, config.http.port) == ("0.0.0.0", 9102)
    assert config.backup.path == Path(DATA) / "backups"
    assert config.log_format == "json"
    assert config.mail.imap is not None and config.mail.imap.password == "change-me"
    assert config.mail.smtp is not None and config.mail.smtp.password == "change-me"
    assert config.matrix is not None and config.matrix.password == "change-me"
    for queue in config.queues:
        assert queue.bindings(config), f"queue {queue.name} is shown nowhere"


def test_example_config_with_sqlite_on_the_data_volume() -> None:
    env = {**example_env(), "TICKETBOT_DATABASE_URL": f"sqlite:///{DATA}/ticketbot.db"}
    config = load_config(DEPLOY / "bot.toml.example", env)
    assert config.storage.url == f"sqlite:///{DATA}/ticketbot.db"


def test_example_config_takes_every_secret_from_the_environment() -> None:
    text = (DEPLOY / "bot.toml.example").read_text(encoding="utf-8")
    data = tomllib.loads(text)

    def inline_secrets(table: Any, path: str = "") -> Iterator[str]:
        if isinstance(table, dict):
            for key, value in table.items():
                if key in ("password", "access_token", "token") or (
                    key == "url" and isinstance(value, str) and "@" in value
                ):
                    yield f"{path}{key}"
                yield from inline_secrets(value, f"{path}{key}.")
        elif isinstance(table, list):
            for item in table:
                yield from inline_secrets(item, path)

    assert list(inline_secrets(data)) == []
    env = example_env()
    for name in env:
        stripped = {k: v for k, v in env.items() if k != name}
        with pytest.raises(ConfigError, match=f"environment variable {name} is not set"):
            load_config(DEPLOY / "bot.toml.example", stripped)


def test_env_example_names_every_variable_the_config_reads() -> None:
    values, mentioned = env_file((DEPLOY / "ticketbot.env.example").read_text(encoding="utf-8"))
    text = (DEPLOY / "bot.toml.example").read_text(encoding="utf-8")
    # also the commented alternatives (access_token_env, [discord] token_env)
    wanted = set(re.findall(r'\w+_env\s*=\s*"([A-Z0-9_]+)"', text))
    assert wanted, "the example reads no secrets from the environment?"
    missing = wanted - set(values) - mentioned
    assert not missing, f"ticketbot.env.example does not list {sorted(missing)}"
    for name in values:
        assert name.startswith("TICKETBOT_"), name


# --- deploy/docker-compose.yml ---------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    text = (DEPLOY / "docker-compose.yml").read_text(encoding="utf-8")
    parsed = parse_yaml_subset(text)
    assert isinstance(parsed, dict)
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:  # not a dependency; the subset reader above is the check
        return parsed
    assert yaml.safe_load(text) == parsed  # where PyYAML is present, both read it alike
    return parsed


def test_compose_runs_postgres_15_with_a_volume_and_a_healthcheck(
    compose: dict[str, Any],
) -> None:
    db = compose["services"]["db"]
    assert db["image"] in ("postgres:15", "postgres:15-bookworm")
    assert any(v.endswith(":/var/lib/postgresql/data") for v in db["volumes"])
    named = db["volumes"][0].split(":")[0]
    assert named in compose["volumes"]
    test = db["healthcheck"]["test"]
    assert test[0] in ("CMD", "CMD-SHELL") and "pg_isready" in " ".join(test)
    assert "ports" not in db, "the database stays on the compose network"
    assert db["env_file"] == ["postgres.env"]
    assert (DEPLOY / "postgres.env.example").is_file()


def test_compose_starts_the_bot_once_the_database_is_healthy(compose: dict[str, Any]) -> None:
    bot = compose["services"]["ticketbot"]
    assert bot["depends_on"]["db"]["condition"] == "service_healthy"
    assert bot["build"]["context"] == ".." and (DEPLOY / ".." / "Dockerfile").is_file()
    assert bot["env_file"] == ["ticketbot.env"]
    assert (DEPLOY / "ticketbot.env.example").is_file()
    assert f"./bot.toml:{CONFIG_IN_IMAGE}:ro" in bot["volumes"]
    data = [v for v in bot["volumes"] if v.endswith(f":{DATA}")]
    assert data and data[0].split(":")[0] in compose["volumes"]
    assert all(p.startswith("127.0.0.1:") for p in bot.get("ports", [])), "metrics on loopback"
    assert "environment" not in bot, "secrets come from the env file only"


def test_compose_database_matches_the_bots_url(compose: dict[str, Any]) -> None:
    postgres, _ = env_file((DEPLOY / "postgres.env.example").read_text(encoding="utf-8"))
    url = example_env()["TICKETBOT_DATABASE_URL"]
    match = re.fullmatch(r"postgresql://([^:@]+):([^@]+)@([^:/]+):5432/(\w+)", url)
    assert match, url
    user, password, host, database = match.groups()
    assert host in compose["services"]
    assert (user, password, database) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        postgres["POSTGRES_DB"],
    )


def test_the_yaml_reader_refuses_what_it_does_not_understand() -> None:
    for bad in (
        "a: 1\na: 2\n",  # duplicate key
        "a:\n  b: 1\n c: 2\n",  # bad indent
        "a:\n\t- x\n",  # tab
        "a: &anchor x\n",  # anchors
        "a:\n  - b: 1\n",  # mappings in sequences
        'a: "open\n',  # unterminated
    ):
        with pytest.raises(ValueError):
            parse_yaml_subset(bad)
    assert parse_yaml_subset('a:\n  - "x # y"  # c\n  - z\nb: [1, "2"]\n') == {
        "a": ["x # y", "z"],
        "b": [1, "2"],
    }


# --- deploy/ticketbot.service -----------------------------------------------------------------

UNIT = DEPLOY / "ticketbot.service"

SANDBOX = {
    "ProtectSystem": "strict",
    "NoNewPrivileges": "yes",
    "PrivateTmp": "yes",
    "ProtectHome": "yes",
    "StateDirectory": "ticketbot",
    "ConfigurationDirectory": "ticketbot",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "CapabilityBoundingSet": "",
    "Restart": "on-failure",
    "EnvironmentFile": "/etc/ticketbot/env",
}


def test_unit_is_sandboxed_and_runs_migrate_then_the_bot() -> None:
    service = unit_sections(UNIT.read_text(encoding="utf-8"))["Service"]
    for key, value in SANDBOX.items():
        assert service.get(key) == [value], f"{key}={value} expected, got {service.get(key)}"
    assert service.get("DynamicUser") == ["yes"] or service.get("User", [""])[0] not in (
        "",
        "root",
    )
    assert "@system-service" in service["SystemCallFilter"]

    (pre,) = service["ExecStartPre"]
    (start,) = service["ExecStart"]
    pre_argv, start_argv = pre.split(), start.split()
    assert pre_argv[0] == start_argv[0] and pre_argv[0].startswith("/")
    assert pre_argv[1:] == ["migrate", "--config", CONFIG_IN_IMAGE]
    assert start_argv[1:] == ["run", "--config", CONFIG_IN_IMAGE, "--log-format", "json"]
    for argv in (pre_argv[1:], start_argv[1:]):
        parsed = _parser().parse_args(argv)
        assert parsed.config == CONFIG_IN_IMAGE
    assert _parser().parse_args(start_argv[1:]).log_format == "json"

    install = unit_sections(UNIT.read_text(encoding="utf-8"))["Install"]
    assert install["WantedBy"] == ["multi-user.target"]


def unit_for_verify(tmp_path: Path) -> Path:
    """The unit with its ticketbot path pointed at one that exists here (verify checks)."""
    text = UNIT.read_text(encoding="utf-8")
    start = unit_sections(text)["Service"]["ExecStart"][0].split()[0]
    here = Path(sys.executable).parent / "ticketbot"
    local = tmp_path / "ticketbot.service"
    local.write_text(text.replace(start, str(here if here.exists() else sys.executable)))
    return local


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        _cannot("systemd-analyze not found: install systemd (apt-get install systemd)")
        return
    local = unit_for_verify(tmp_path)
    verify = subprocess.run(
        [tool, "verify", "--man=no", str(local)], capture_output=True, text=True, timeout=120
    )
    # unknown keys and bad values are only warnings to systemd: any output is a failure
    assert verify.returncode == 0 and not (verify.stdout + verify.stderr).strip(), (
        verify.stdout + verify.stderr
    )
    security = subprocess.run(
        [tool, "security", "--offline=yes", "--threshold=20", str(local)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if "--offline" in security.stderr and "unrecognized" in security.stderr:
        return  # systemd before 252 cannot rate a unit file that is not installed
    assert security.returncode == 0, f"exposure above 2.0:\n{security.stdout[-3000:]}"
