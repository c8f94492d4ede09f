"""bot.toml is validated before anything connects, with errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main
from bot.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]

MINIMAL = """
[mail.maildir]
path = "mail"
[mail.files]
path = "out"
[console]
user = "@a:x"
[[queue]]
name = "info"
addresses = ["info@example.org"]
default = true
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bot.toml"
    path.write_text(text, encoding="utf-8")
    return path


def error_for(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env or {})
    return info.value


def test_shipped_bot_toml_is_valid_and_runs_the_demo_setup() -> None:
    config = load_config(ROOT / "bot.toml", {})
    assert config.storage.url.startswith("sqlite:///")
    assert config.mail.maildir is not None and config.mail.files is not None
    assert config.console is not None and config.console.enabled
    assert config.default_queue.name == "info"


def test_shipped_bot_toml_documents_the_commented_sections() -> None:
    text = (ROOT / "bot.toml").read_text()
    for needle in ("[mail.imap]", "[mail.smtp]", "[matrix]", "password_env", "matrix_room", "idle"):
        assert needle in text


def test_minimal_config_loads_with_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), {})
    assert config.storage.url == f"sqlite:///{tmp_path}/ticketbot.db"
    assert config.mail.maildir is not None and config.mail.maildir.path == tmp_path / "mail"


def test_unknown_key_is_named(tmp_path: Path) -> None:
    err = error_for(tmp_path, MINIMAL + '\n[storage]\nurl = "sqlite:///x.db"\nurll = 1\n')
    assert err.key == "storage.urll" and "unknown" in err.reason


def test_unknown_key_in_a_queue_is_named(tmp_path: Path) -> None:
    err = error_for(tmp_path, MINIMAL.replace("default = true", "default = true\nvolunters = []"))
    assert err.key == "queue[0] (info).volunters"


def test_wrong_type_is_named(tmp_path: Path) -> None:
    text = MINIMAL + '\n[mail.imap]\nhost = "h"\nport = "993"\nusername = "u"\npassword = "p"\n'
    err = error_for(tmp_path, text.replace("[mail.imap]", "[mail.imap]"))
    assert err.key == "mail.imap.port" and "integer" in err.reason


def test_queue_without_address_is_refused(tmp_path: Path) -> None:
    err = error_for(tmp_path, MINIMAL.replace('addresses = ["info@example.org"]', "addresses = []"))
    assert err.key == "queue[0] (info).addresses"


def test_queue_bound_to_nothing_is_refused(tmp_path: Path) -> None:
    err = error_for(
        tmp_path, MINIMAL.replace('[console]\nuser = "@a:x"', "[console]\nenabled = false")
    )
    assert err.key == "queue[0] (info)" and "bound to nothing" in err.reason


def test_matrix_room_needs_a_matrix_section(tmp_path: Path) -> None:
    err = error_for(
        tmp_path, MINIMAL.replace("default = true", 'default = true\nmatrix_room = "!r:x"')
    )
    assert err.key == "queue[0] (info).matrix_room"


def test_secret_from_environment(tmp_path: Path) -> None:
    text = MINIMAL + (
        '\n[matrix]\nhomeserver = "https://m.example.org"\nuser_id = "@bot:example.org"\n'
        'password_env = "BOT_PW"\n'
    )
    config = load_config(write(tmp_path, text), {"BOT_PW": "s3cret"})
    assert config.matrix is not None and config.matrix.password == "s3cret"
    assert "s3cret" not in repr(config.matrix)


def test_missing_environment_secret_names_the_variable(tmp_path: Path) -> None:
    text = MINIMAL + (
        '\n[matrix]\nhomeserver = "https://m.example.org"\nuser_id = "@bot:example.org"\n'
        'password_env = "BOT_PW"\n'
    )
    err = error_for(tmp_path, text)
    assert err.key == "matrix.password_env" and "BOT_PW" in err.reason


def test_two_default_queues_are_refused(tmp_path: Path) -> None:
    text = MINIMAL + '\n[[queue]]\nname = "b"\naddresses = ["b@example.org"]\ndefault = true\n'
    assert "only one queue" in error_for(tmp_path, text).reason


def test_address_in_two_queues_is_refused(tmp_path: Path) -> None:
    text = MINIMAL + '\n[[queue]]\nname = "b"\naddresses = ["INFO@example.org"]\n'
    assert "already belongs" in error_for(tmp_path, text).reason


def test_no_way_to_send_replies_is_refused(tmp_path: Path) -> None:
    err = error_for(tmp_path, MINIMAL.replace('[mail.files]\npath = "out"', ""))
    assert err.key == "mail" and "send replies" in err.reason


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    err = error_for(tmp_path, "[storage\n")
    assert "not valid TOML" in err.reason


def test_check_config_command_prints_one_line_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, MINIMAL + "\n[tickets]\nsystem_id = 5\n")
    assert main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tickets.system_id" in err[0]


def test_check_config_command_accepts_the_shipped_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(ROOT / "bot.toml")]) == 0
    assert "queue info (default)" in capsys.readouterr().out


DISCORD = '\n[discord]\ntoken_env = "DISCORD_TOKEN"\nguild_id = 42\n'


def test_discord_channel_and_roles_bind_a_queue(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "default = true", "default = true\ndiscord_channel = 7\ndiscord_roles = [8, 9]"
    ).replace('[console]\nuser = "@a:x"', "[console]\nenabled = false")
    config = load_config(write(tmp_path, text + DISCORD), {"DISCORD_TOKEN": "t0k"})
    queue = config.queues[0]
    assert queue.bindings(config) == {"discord": "7"}
    assert config.discord is not None and config.discord.token == "t0k"
    from bot.domain import Actor

    assert queue.may_act(Actor("discord", "discord:1", roles=frozenset({"discord-role:9"})))
    assert not queue.may_act(Actor("discord", "discord:1", roles=frozenset({"discord-role:5"})))


def test_discord_channel_needs_a_discord_section(tmp_path: Path) -> None:
    err = error_for(
        tmp_path, MINIMAL.replace("default = true", "default = true\ndiscord_channel = 7")
    )
    assert err.key == "queue[0] (info).discord_channel"


def test_discord_roles_must_be_ids(tmp_path: Path) -> None:
    text = MINIMAL.replace("default = true", 'default = true\ndiscord_roles = ["mods"]')
    assert error_for(tmp_path, text).key == "queue[0] (info).discord_roles"


def test_discord_guild_id_is_required(tmp_path: Path) -> None:
    err = error_for(tmp_path, MINIMAL + '\n[discord]\ntoken = "x"\n')
    assert err.key == "discord.guild_id"


def test_move_to_the_watched_folder_is_refused(tmp_path: Path) -> None:
    text = MINIMAL + (
        '\n[mail.imap]\nhost = "h"\nusername = "u"\npassword = "p"\n'
        'after_intake = "move"\nmove_to = "INBOX"\n'
    )
    assert error_for(tmp_path, text).key == "mail.imap.move_to"


def test_home_directory_in_a_sqlite_path_is_expanded(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL + '\n[storage]\nurl = "sqlite:///~/tb.db"\n'), {})
    assert config.storage.url == f"sqlite:///{Path.home() / 'tb.db'}"


def test_postgres_url_parameters_reach_the_driver() -> None:
    from storage.database import open_database

    db = open_database("postgresql://u:p@db.example.org:5433/desk?sslmode=verify-full")
    assert db.connect_params["sslmode"] == "verify-full"
    assert db.connect_params["port"] == 5433


def test_the_database_url_may_come_from_the_environment(tmp_path: Path) -> None:
    from bot.config import parse_config

    data = {
        "storage": {"url_env": "TICKETBOT_DATABASE_URL"},
        "mail": {"maildir": {"path": "mail"}, "files": {"path": "out"}},
        "queue": [{"name": "info", "addresses": ["info@example.org"], "default": True}],
        "console": {},
    }
    url = "postgresql://desk:secret@db:5432/desk"
    config = parse_config(data, tmp_path / "bot.toml", {"TICKETBOT_DATABASE_URL": url})
    assert config.storage.url == url
    with pytest.raises(ConfigError, match="TICKETBOT_DATABASE_URL is not set"):
        parse_config(data, tmp_path / "bot.toml", {})
