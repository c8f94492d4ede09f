"""``[instance]``: which roles a process may hold; errors name the key."""

from __future__ import annotations

from pathlib import Path

from bot.config import ROLES, load_config
from tests.config.test_config import MINIMAL, error_for, write

PG = '\n[storage]\nurl = "postgresql://ticketbot@db.example.org/ticketbot"\n'


def test_by_default_a_process_may_hold_every_role(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), {})
    assert config.instance.roles == ROLES
    assert config.instance.lease_check_seconds == 5.0


def test_roles_can_be_pinned_on_postgresql(tmp_path: Path) -> None:
    text = MINIMAL + PG + '\n[instance]\nroles = ["intake", "scheduler"]\nname = "mail-side"\n'
    config = load_config(write(tmp_path, text), {})
    assert config.instance.roles == ("intake", "scheduler")
    assert config.instance.name == "mail-side"


def test_an_unknown_role_is_named(tmp_path: Path) -> None:
    err = error_for(tmp_path, MINIMAL + PG + '\n[instance]\nroles = ["intake", "mail"]\n')
    assert err.key == "instance.roles[1]" and "'mail'" in err.reason and "scheduler" in err.reason


def test_a_chat_role_needs_its_platform(tmp_path: Path) -> None:
    err = error_for(tmp_path, MINIMAL + PG + '\n[instance]\nroles = ["matrix"]\n')
    assert err.key == "instance.roles" and "[matrix]" in err.reason


def test_pinning_on_sqlite_is_refused_with_the_reason(tmp_path: Path) -> None:
    err = error_for(tmp_path, MINIMAL + '\n[instance]\nroles = ["intake"]\n')
    assert err.key == "instance.roles" and "PostgreSQL" in err.reason


def test_the_weekly_report_needs_its_platform_beside_the_scheduler(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + PG
        + '\n[matrix]\nhomeserver = "https://m.example.org"\nuser_id = "@bot:example.org"\n'
        + 'access_token_env = "T"\n'
        + '\n[reports]\nweekly = "mon 08:00"\nmatrix_room = "!admins:example.org"\n'
        + '\n[instance]\nroles = ["intake", "scheduler"]\n'
    )
    err = error_for(tmp_path, text, {"T": "token"})
    assert err.key == "instance.roles" and "weekly report" in err.reason
    fixed = text.replace('roles = ["intake", "scheduler"]', 'roles = ["matrix", "scheduler"]')
    assert load_config(write(tmp_path, fixed), {"T": "token"}).instance.roles == (
        "matrix",
        "scheduler",
    )


def test_a_slow_lease_check_would_miss_the_takeover_bound(tmp_path: Path) -> None:
    err = error_for(tmp_path, MINIMAL + "\n[instance]\nlease_check_seconds = 10\n")
    assert err.key == "instance.lease_check_seconds" and "30 s" in err.reason
    err = error_for(tmp_path, MINIMAL + "\n[instance]\nlease_check_seconds = 0\n")
    assert err.key == "instance.lease_check_seconds"
