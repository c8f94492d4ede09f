"""How bot.toml and the admins' stored changes combine (bot/admin/overlay.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.admin.overlay import Grant, Overlay, effective
from bot.config import Config, ConfigError, parse_config
from bot.domain import Actor

VOL = Actor("matrix", "@vol:example.org")


def base(tmp_path: Path) -> Config:
    data = {
        "mail": {"maildir": {"path": "mail"}, "files": {"path": "out"}},
        "matrix": {"homeserver": "http://127.0.0.1:1", "user_id": "@bot:x", "password": "x"},
        "admins": ["@root:example.org"],
        "queue": [
            {
                "name": "info",
                "addresses": ["info@example.org"],
                "matrix_room": "!info:x",
                "volunteers": [VOL.user_id],
                "default": True,
                "signature": "Info team",
            },
            {"name": "info::de", "language": "de"},
            {"name": "info::fr", "matrix_room": "!fr:x"},
        ],
        "rule": [{"match": {"language": "de"}, "queue": "info::de"}],
    }
    return parse_config(data, tmp_path / "bot.toml", {})


def test_nothing_stored_means_the_file(tmp_path: Path) -> None:
    config = base(tmp_path)
    assert effective(config, Overlay()) == config


def test_sub_queues_follow_their_parents_new_settings_unless_they_have_their_own(
    tmp_path: Path,
) -> None:
    config = effective(
        base(tmp_path),
        Overlay(queues={"info": {"matrix_room": "!new:x", "signature": {"*": "New team"}}}),
    )
    assert config.queue("info::de").matrix_room == "!new:x"  # inherited before, follows
    assert config.queue("info::fr").matrix_room == "!fr:x"  # its own room stays
    assert config.queue("info::de").signature == {"*": "New team"}
    assert config.queue("info::de").reply_address == "info@example.org"


def test_a_rename_carries_sub_queues_and_rules(tmp_path: Path) -> None:
    config = effective(base(tmp_path), Overlay(queues={"general": {"renamed_from": "info"}}))
    assert [q.name for q in config.queues] == ["general", "general::de", "general::fr"]
    assert config.rules[0].queue == "general::de"
    assert config.queue("general::de").language == "de"


def test_the_most_specific_grant_wins(tmp_path: Path) -> None:
    grants = (
        Grant(VOL.user_id, "info", "read"),
        Grant(VOL.user_id, "info::fr", "act"),
        Grant("@new:example.org", "info", "trainee", subqueues=False),
    )
    config = effective(base(tmp_path), Overlay(grants=grants))
    assert config.queue("info").level(VOL) == "read"
    assert config.queue("info::de").level(VOL) == "read"
    assert config.queue("info::fr").level(VOL) == "act"
    new = Actor("matrix", "@new:example.org")
    assert config.queue("info").level(new) == "trainee"
    assert config.queue("info::de").level(new) is None
    assert "@new:example.org" in config.queue("info").volunteers  # reminders ping trainees


def test_roles_get_access_and_none_takes_it_away(tmp_path: Path) -> None:
    role = Actor("discord", "discord:1", roles=frozenset({"discord-role:7"}))
    config = effective(base(tmp_path), Overlay(grants=(Grant("discord-role:7", "info", "act"),)))
    assert config.queue("info::de").may_act(role)
    config = effective(base(tmp_path), Overlay(grants=(Grant(VOL.user_id, "info", "none"),)))
    assert config.queue("info").level(VOL) is None
    assert VOL.user_id not in config.queue("info").volunteers


def test_admins_from_the_file_and_from_grants(tmp_path: Path) -> None:
    config = effective(base(tmp_path), Overlay(admins=("@two:example.org",)))
    assert config.admins == ("@root:example.org", "@two:example.org")
    assert config.is_admin(Actor("matrix", "@two:example.org"))
    assert not config.is_admin(VOL)


def test_changes_that_no_longer_fit_are_an_error_naming_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no queue named 'gone'"):
        effective(base(tmp_path), Overlay(rules=({"match": {"subject": "x"}, "queue": "gone"},)))
    with pytest.raises(ConfigError, match="does not exist"):
        effective(base(tmp_path), Overlay(queues={"info::de": {"closed_to": "nowhere"}}))


def test_a_queue_added_by_command_under_a_parent_takes_its_settings(tmp_path: Path) -> None:
    config = effective(
        base(tmp_path), Overlay(queues={"info::es": {"origin": "command", "addresses": []}})
    )
    queue = config.queue("info::es")
    assert queue.matrix_room == "!info:x" and queue.signature == {"*": "Info team"}
    assert queue.may_act(VOL) and not queue.default
