"""Admins run the desk by command: queues, access, admins, rules, audit, privacy, trainees.

Through the real core and a real SQLite store; chat and mail are recording fakes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.admin.live import LiveConfig
from bot.commands import CommandService
from bot.domain import Actor
from bot.ports import RoomCheck
from tests.core.conftest import ALICE, BOB, MALLORY, Desk, mail, make_desk

ADMINS = {"admins": [ALICE.user_id]}
CAROL = Actor("matrix", "@carol:example.org", "Carol")


@pytest.fixture
async def desk(tmp_path: Path) -> AsyncIterator[Desk]:
    desk = await make_desk(tmp_path, extra=ADMINS)
    yield desk
    await desk.store.close()


def current(desk: Desk):  # type: ignore[no-untyped-def]
    assert desk.live is not None
    return desk.live.current


class FakeInspector:
    def __init__(self, public: set[str]) -> None:
        self.public = public

    async def check_room(self, room: str) -> RoomCheck:
        if room in self.public:
            return RoomCheck(True, "join rule is public")
        return RoomCheck(False)


async def audit_count(desk: Desk) -> int:
    return len(await desk.store.run(lambda repo: repo.audit_log(limit=10_000)))


# --- who is an admin -----------------------------------------------------------------------


async def test_non_admin_commands_are_refused_and_change_nothing(desk: Desk) -> None:
    before = await audit_count(desk)
    for text in (
        "!queue add legal --address legal@example.org",
        "!access grant @mallory:example.org info",
        "!admin grant @mallory:example.org",
        "!rule add subject=x => queue=press",
        "!audit",
        "!privacy check",
        "!queue list",
    ):
        result = await desk.command(MALLORY, text)
        assert not result.ok, text
        assert "for admins" in result.message
    assert await audit_count(desk) == before
    assert current(desk).find_queue("legal") is None
    assert not current(desk).queue("info").may_act(MALLORY)


async def test_admin_grant_and_revoke_at_run_time(desk: Desk) -> None:
    assert (await desk.command(ALICE, "!admin grant @bob:example.org")).ok
    assert (await desk.command(BOB, "!queue list")).ok
    revoke_file_admin = await desk.command(BOB, "!admin revoke @alice:example.org")
    assert not revoke_file_admin.ok and "bot.toml" in revoke_file_admin.message
    assert (await desk.command(ALICE, "!admin revoke @bob:example.org")).ok
    assert not (await desk.command(BOB, "!queue list")).ok
    listing = (await desk.command(ALICE, "!admin list")).message
    assert "@alice:example.org (bot.toml)" in listing and "bob" not in listing


# --- queues --------------------------------------------------------------------------------


async def test_new_queue_bound_and_granted_receives_mail_that_the_volunteer_claims(
    desk: Desk,
) -> None:
    added = await desk.command(ALICE, "!queue add legal --address legal@example.org")
    assert added.ok, added.message
    bound = await desk.command(ALICE, "!queue bind legal", room="!legal:example.org")
    assert bound.ok, bound.message
    granted = await desk.command(ALICE, "!access grant @mallory:example.org legal")
    assert granted.ok, granted.message

    outcome = await desk.receive(mail("Licence question", to="legal@example.org"))
    await desk.flush()
    root = next(p for p in desk.chat.posts if p.kind == "ticket")
    assert root.room == "!legal:example.org"
    assert root.ticket.queue == "legal"
    claimed = await desk.command(MALLORY, f"!claim {outcome.ticket_number}")
    assert claimed.ok, claimed.message
    # her access is to legal only
    assert not current(desk).queue("info").may_act(MALLORY)


async def test_revoking_access_stops_the_next_command_at_once(desk: Desk) -> None:
    outcome = await desk.receive(mail(to="press@example.org"))
    assert (await desk.command(BOB, f"!note {outcome.ticket_number} looking")).ok
    revoked = await desk.command(ALICE, "!access revoke @bob:example.org press")
    assert revoked.ok, revoked.message
    refused = await desk.command(BOB, f"!note {outcome.ticket_number} still here")
    assert not refused.ok and "only volunteers" in refused.message
    search = await desk.command(BOB, "!search queue:press photo")
    assert "press" not in search.message or not search.ok
    # bob still works in info, from bot.toml
    assert current(desk).queue("info").may_act(BOB)
    again = await desk.command(ALICE, "!access grant @bob:example.org press")
    assert again.ok
    assert (await desk.command(BOB, f"!note {outcome.ticket_number} back")).ok


async def test_access_covers_sub_queues_unless_only(desk: Desk) -> None:
    assert (await desk.command(ALICE, "!queue add info::de")).ok
    assert (await desk.command(ALICE, "!access grant @carol:example.org info")).ok
    assert current(desk).queue("info::de").may_act(CAROL)
    assert (await desk.command(ALICE, "!access grant @carol:example.org info read --only")).ok
    config = current(desk)
    assert config.queue("info").level(CAROL) == "read"
    assert config.queue("info::de").level(CAROL) is None
    listing = (await desk.command(ALICE, "!access list @carol:example.org")).message
    assert "info: read" in listing and "info::de" not in listing


async def test_binding_a_public_room_is_refused_unless_overridden_and_logged(
    desk: Desk,
) -> None:
    desk.commands.set_room_inspector("matrix", FakeInspector({"!lobby:example.org"}))
    refused = await desk.command(ALICE, "!queue bind press", room="!lobby:example.org")
    assert not refused.ok
    assert "public" in refused.message and "--public-ok" in refused.message
    assert current(desk).queue("press").matrix_room == "!press:example.org"
    allowed = await desk.command(ALICE, "!queue bind press --public-ok", room="!lobby:example.org")
    assert allowed.ok, allowed.message
    assert current(desk).queue("press").matrix_room == "!lobby:example.org"
    log = (await desk.command(ALICE, "!audit")).message
    assert "privacy.override" in log and "queue.bind" in log
    check = (await desk.command(ALICE, "!privacy check")).message
    assert "press: matrix room !lobby:example.org is public" in check
    assert "allowed by an admin" in check


async def test_a_room_that_cannot_be_checked_counts_as_public(desk: Desk) -> None:
    class Broken:
        async def check_room(self, room: str) -> RoomCheck:
            raise ConnectionError("homeserver away")

    desk.commands.set_room_inspector("matrix", Broken())
    result = await desk.command(ALICE, "!queue bind press", room="!x:example.org")
    assert not result.ok and "could not check" in result.message


async def test_queue_with_open_tickets_cannot_be_removed_but_can_be_closed_to_mail(
    desk: Desk,
) -> None:
    first = await desk.receive(mail(to="press@example.org"))
    refused = await desk.command(ALICE, "!queue remove press")
    assert not refused.ok and "1 ticket(s) not closed" in refused.message
    closed = await desk.command(ALICE, "!queue close press --to info")
    assert closed.ok, closed.message
    new = await desk.receive(mail("Another", to="press@example.org"))
    ticket = await desk.store.run(lambda repo: repo.ticket_by_number(new.ticket_number))
    assert ticket is not None and ticket.queue == "info"
    # the open ticket still gets its follow-ups
    old = await desk.store.run(lambda repo: repo.ticket_by_number(first.ticket_number))
    assert old is not None and old.queue == "press"
    status = (await desk.command(BOB, "!queue status")).message
    assert "press (closed to new mail)" in status
    assert (await desk.command(ALICE, "!queue open press")).ok
    back = await desk.receive(mail("Third", to="press@example.org"))
    ticket = await desk.store.run(lambda repo: repo.ticket_by_number(back.ticket_number))
    assert ticket is not None and ticket.queue == "press"


async def test_removing_a_queue_keeps_its_closed_tickets_in_the_named_queue(desk: Desk) -> None:
    assert (await desk.command(ALICE, "!queue add legal --address legal@example.org")).ok
    assert (await desk.command(ALICE, "!access grant @alice:example.org legal")).ok
    outcome = await desk.receive(mail(to="legal@example.org"))
    assert (await desk.command(ALICE, f"!close {outcome.ticket_number}")).ok
    needs_target = await desk.command(ALICE, "!queue remove legal")
    assert not needs_target.ok and "--to" in needs_target.message
    removed = await desk.command(ALICE, "!queue remove legal --to info")
    assert removed.ok, removed.message
    assert current(desk).find_queue("legal") is None
    ticket = await desk.store.run(lambda repo: repo.ticket_by_number(outcome.ticket_number))
    assert ticket is not None and ticket.queue == "info"
    stray = await desk.receive(mail("After", to="legal@example.org"))
    ticket = await desk.store.run(lambda repo: repo.ticket_by_number(stray.ticket_number))
    assert ticket is not None and ticket.queue == "info"  # the default queue


async def test_rename_moves_tickets_rules_and_survives_a_restart(
    tmp_path: Path, desk: Desk
) -> None:
    assert (await desk.command(ALICE, "!rule add subject=invoice => queue=press")).ok
    outcome = await desk.receive(mail(to="press@example.org"))
    renamed = await desk.command(ALICE, "!queue rename press media")
    assert renamed.ok, renamed.message
    ticket = await desk.store.run(lambda repo: repo.ticket_by_number(outcome.ticket_number))
    assert ticket is not None and ticket.queue == "media"
    routed = await desk.receive(mail("Your invoice", to="info@example.org"))
    ticket = await desk.store.run(lambda repo: repo.ticket_by_number(routed.ticket_number))
    assert ticket is not None and ticket.queue == "media"
    assert (await desk.command(BOB, f"!claim {outcome.ticket_number}")).ok
    await desk.store.close()

    again = await make_desk(tmp_path, extra=ADMINS)
    try:
        config = current(again)
        assert [q.name for q in config.queues] == ["info", "media"]
        assert config.queue("media").addresses == ("press@example.org",)
        assert config.rules[0].queue == "media"
    finally:
        await again.store.close()
    desk.store = await again.store.open(again.config.storage.url)  # for the fixture's close


async def test_queue_settings_change_replies_and_reminders(desk: Desk) -> None:
    assert (await desk.command(ALICE, '!queue set info signature "The Info Team"')).ok
    assert (await desk.command(ALICE, '!queue set info signature --lang de "Das Info-Team"')).ok
    bad = await desk.command(ALICE, "!queue set info salutation Hi {name}")
    assert not bad.ok and "unknown variable {name}" in bad.message
    assert (await desk.command(ALICE, "!queue set info reminders off")).ok
    info = current(desk).queue("info")
    assert info.signature == {"*": "The Info Team", "de": "Das Info-Team"}
    assert not info.reminders
    outcome = await desk.receive(mail())
    assert (await desk.command(ALICE, f"!reply {outcome.ticket_number} Yes, you may.")).ok
    await desk.flush()
    assert "The Info Team" in desk.sender.sent[-1].text
    shown = (await desk.command(ALICE, "!queue info info")).message
    assert "changed by command (wins over bot.toml): reminders, signature" in shown


async def test_address_changes_are_checked(desk: Desk) -> None:
    taken = await desk.command(ALICE, "!queue address add info press@example.org")
    assert not taken.ok and "already belongs to queue press" in taken.message
    last = await desk.command(ALICE, "!queue address remove press press@example.org")
    assert not last.ok and "last address" in last.message
    assert (await desk.command(ALICE, "!queue address add press media@example.org")).ok
    routed = await desk.receive(mail(to="media@example.org"))
    ticket = await desk.store.run(lambda repo: repo.ticket_by_number(routed.ticket_number))
    assert ticket is not None and ticket.queue == "press"


# --- rules ---------------------------------------------------------------------------------


async def test_rules_by_command_and_a_dry_run_that_changes_nothing(desk: Desk) -> None:
    outcome = await desk.receive(mail("Invoice 42", text="Please pay."))
    assert (await desk.command(ALICE, "!rule add --name bills subject=invoice => queue=press")).ok
    assert (await desk.command(ALICE, "!rule add body=pay => priority=5 tags=money")).ok
    listing = (await desk.command(ALICE, "!rule list")).message
    assert "rule 1 (bills)" in listing and "set by admins' commands" in listing
    before = await audit_count(desk)
    one = (await desk.command(ALICE, f"!rule test 1 --ticket {outcome.ticket_number}")).message
    assert "rule 1 (bills) would fire" in one and "queue press" in one
    every = (await desk.command(ALICE, f"!rule test all --ticket {outcome.ticket_number}")).message
    assert "verdict: rule 1 (bills) => queue press" in every
    assert "rule 2: would fire" in every
    ticket = await desk.store.run(lambda repo: repo.ticket_by_number(outcome.ticket_number))
    assert ticket is not None and ticket.queue == "info" and ticket.priority == 3
    assert await audit_count(desk) == before
    assert (await desk.command(ALICE, "!rule move 2 1")).ok
    assert (await desk.command(ALICE, "!rule disable 1")).ok
    rules = current(desk).rules
    assert rules[0].tags == ("money",) and not rules[0].enabled
    routed = await desk.receive(mail("Invoice 43", text="Please pay."))
    ticket = await desk.store.run(lambda repo: repo.ticket_by_number(routed.ticket_number))
    assert ticket is not None and ticket.queue == "press" and ticket.priority == 3
    bad = await desk.command(ALICE, "!rule add colour=red => queue=press")
    assert not bad.ok and "unknown field 'colour'" in bad.message
    regex = await desk.command(ALICE, "!rule add subject_regex=[ => spam")
    assert not regex.ok and "regular expression" in regex.message


# --- audit ---------------------------------------------------------------------------------


async def test_audit_lists_who_did_what_with_before_and_after(desk: Desk) -> None:
    outcome = await desk.receive(mail())
    assert (await desk.command(BOB, f"!claim {outcome.ticket_number}")).ok
    assert (await desk.command(ALICE, "!queue set press reminders off")).ok
    by_bob = (await desk.command(ALICE, "!audit --user @bob:example.org")).message
    assert "ticket.claim" in by_bob and "queue.set" not in by_bob
    on_ticket = (await desk.command(ALICE, f"!audit --ticket {outcome.ticket_number}")).message
    assert "ticket.created" in on_ticket and "ticket.claim" in on_ticket
    settings = (await desk.command(ALICE, "!audit --user @alice:example.org --since 1d")).message
    assert "queue.set.reminders" in settings and "(on → off)" in settings
    later = (await desk.command(ALICE, "!audit --since 2999-01-01")).message
    assert later == "No audit entries match."
    bad = await desk.command(ALICE, "!audit --since yesterday")
    assert not bad.ok and "--since" in bad.message


# --- trainees ------------------------------------------------------------------------------


async def test_a_trainees_reply_waits_for_a_volunteers_approval_and_goes_once(
    desk: Desk,
) -> None:
    assert (await desk.command(ALICE, "!access grant @carol:example.org info trainee")).ok
    outcome = await desk.receive(mail())
    number = outcome.ticket_number
    assert (await desk.command(CAROL, f"!claim {number}")).ok
    assert (await desk.command(CAROL, f"!note {number} drafting")).ok
    closing = await desk.command(CAROL, f"!close {number}")
    assert not closing.ok and "trainees may not close" in closing.message
    drafted = await desk.command(CAROL, f"!reply {number} Yes, with credit.")
    assert drafted.ok and "approves" in drafted.message
    await desk.flush()
    assert desk.sender.sent == []
    assert ("approve",) in desk.chat.actions
    self_approval = await desk.command(CAROL, f"!approve {number}")
    assert not self_approval.ok
    approved = await desk.command(BOB, f"!approve {number}")
    assert approved.ok, approved.message
    twice = await desk.command(ALICE, f"!approve {number}")
    assert not twice.ok and "no draft" in twice.message
    await desk.flush()
    assert len(desk.sender.sent) == 1
    assert "Yes, with credit." in desk.sender.sent[0].text


# --- privacy on screen ---------------------------------------------------------------------


async def test_pseudonyms_hide_the_requester_and_reveal_is_private_and_logged(
    desk: Desk,
) -> None:
    assert (await desk.command(ALICE, "!privacy pseudonymize info on")).ok
    text = "Call me on +49 30 1234567 or write to maria.other@example.net"
    outcome = await desk.receive(mail(text=text))
    await desk.flush()
    root = next(p for p in desk.chat.posts if p.kind == "ticket")
    assert root.ticket.requester.startswith("Requester #")
    assert "maria@example.net" not in root.ticket.requester
    assert root.article is not None
    assert "1234567" not in root.article.body and "maria.other" not in root.article.body
    assert "[phone]" in root.article.body and "[address]" in root.article.body
    assert root.article.author == root.ticket.requester
    shown = (await desk.command(BOB, f"!show {outcome.ticket_number}")).message
    assert "maria@example.net" not in shown
    revealed = await desk.command(BOB, f"!reveal {outcome.ticket_number}")
    assert revealed.ok and revealed.private
    assert "maria@example.net" in revealed.message
    log = (await desk.command(ALICE, "!audit --user @bob:example.org")).message
    assert "ticket.reveal" in log
    # a second ticket of the same requester gets the same pseudonym
    await desk.receive(mail("Again"))
    await desk.flush()
    roots = [p for p in desk.chat.posts if p.kind == "ticket"]
    assert roots[1].ticket.requester == roots[0].ticket.requester


# --- volunteers' views ---------------------------------------------------------------------


async def test_mine_and_queue_status(desk: Desk) -> None:
    first = await desk.receive(mail("One"))
    await desk.receive(mail("Two"))
    await desk.receive(mail("Three", to="press@example.org"))
    assert (await desk.command(BOB, f"!claim {first.ticket_number}")).ok
    assert (await desk.command(BOB, f"!pending {first.ticket_number} 3d")).ok
    mine = (await desk.command(BOB, "!mine")).message
    assert first.ticket_number in mine and "Two" not in mine
    desk.clock.advance(5 * 3600)
    status = (await desk.command(BOB, "!queue status")).message
    assert "info: 1 new · 0 open · 1 pending · oldest waiting 5h" in status
    assert "press: 1 new" in status
    alice = (await desk.command(ALICE, "!queue status")).message
    assert "press" not in alice  # alice does not work in press


async def test_stored_changes_reach_a_second_instance_on_reload(tmp_path: Path, desk: Desk) -> None:
    other_live = LiveConfig(desk.config)
    other = CommandService(other_live, desk.store, desk.clock, lambda: None)
    assert (await desk.command(ALICE, "!access grant @carol:example.org press")).ok
    assert not other_live.current.queue("press").may_act(CAROL)
    await desk.store.run(other_live.load)
    assert other_live.current.queue("press").may_act(CAROL)
    assert other is not None


async def test_a_room_blocked_at_start_is_used_again_once_found_private(desk: Desk) -> None:
    assert desk.live is not None
    desk.live.block_room("matrix", "!press:example.org", "join rule is public")
    assert current(desk).queue("press").matrix_room is None
    desk.commands.set_room_inspector("matrix", FakeInspector(set()))
    assert (await desk.command(ALICE, "!privacy check")).ok
    assert current(desk).queue("press").matrix_room == "!press:example.org"


async def test_search_and_reminders_keep_pseudonyms(desk: Desk) -> None:
    assert (await desk.command(ALICE, "!privacy pseudonymize info on")).ok
    await desk.receive(mail("Call maria@example.net please", text="about the photo"))
    found = (await desk.command(BOB, "!search photo")).message
    assert "maria@example.net" not in found and "Requester #" in found
    desk.clock.advance(5 * 3600)
    await desk.reminders.tick()
    await desk.flush()
    pings = desk.chat.texts("ping")
    assert pings and all("maria@example.net" not in text for text in pings)
    assert "[address]" in pings[0]


async def test_a_queue_renamed_twice_keeps_its_tickets_and_address(desk: Desk) -> None:
    outcome = await desk.receive(mail(to="press@example.org"))
    assert (await desk.command(ALICE, "!queue rename press media")).ok
    assert (await desk.command(ALICE, "!queue rename media news")).ok
    assert [q.name for q in current(desk).queues] == ["info", "news"]
    assert (await desk.command(BOB, f"!show {outcome.ticket_number}")).ok
    again = await desk.receive(mail("Later", to="press@example.org"))
    ticket = await desk.store.run(lambda repo: repo.ticket_by_number(again.ticket_number))
    assert ticket is not None and ticket.queue == "news"
    assert (await desk.command(ALICE, "!queue rename news press")).ok
    assert [q.name for q in current(desk).queues] == ["info", "press"]


async def test_stored_settings_survive_a_bot_toml_edit_that_removes_a_queue(
    tmp_path: Path, desk: Desk
) -> None:
    assert (await desk.command(ALICE, "!rule add subject=x => queue=press")).ok
    assert (await desk.command(ALICE, "!access revoke @bob:example.org info")).ok
    assert (await desk.command(ALICE, "!admin grant @carol:example.org")).ok
    await desk.store.close()
    from tests.core.conftest import desk_config

    config = desk_config(tmp_path, extra=ADMINS)
    without_press = config.__class__(
        **{**config.__dict__, "queues": tuple(q for q in config.queues if q.name != "press")}
    )
    live = LiveConfig(without_press)
    from storage.store import SqlStore

    store = await SqlStore.open(config.storage.url)
    try:
        applied = await store.run(live.load)
    finally:
        await store.close()
    assert applied.is_admin(CAROL)
    assert applied.queue("info").level(BOB) is None  # the revocation still holds
    assert applied.rules == ()  # the rule naming press is left out
    desk.store = await SqlStore.open(config.storage.url)


async def test_admin_subcommands_ignore_case_and_still_check_privacy(desk: Desk) -> None:
    desk.commands.set_room_inspector("matrix", FakeInspector({"!lobby:example.org"}))
    refused = await desk.command(ALICE, "!queue Bind press", room="!lobby:example.org")
    assert not refused.ok and "public" in refused.message


async def test_revoking_on_a_parent_takes_sub_queue_grants_too(desk: Desk) -> None:
    assert (await desk.command(ALICE, "!queue add info::de")).ok
    assert (await desk.command(ALICE, "!access grant @carol:example.org info")).ok
    assert (await desk.command(ALICE, "!access grant @carol:example.org info::de read")).ok
    assert (await desk.command(ALICE, "!access revoke @carol:example.org info")).ok
    config = current(desk)
    assert config.queue("info").level(CAROL) is None
    assert config.queue("info::de").level(CAROL) is None


async def test_mine_follows_access_and_approve_refuses_spam(desk: Desk) -> None:
    press = await desk.receive(mail("Call me at +49 170 1234567", to="press@example.org"))
    assert (await desk.command(BOB, f"!claim {press.ticket_number}")).ok
    assert (await desk.command(ALICE, "!access revoke @bob:example.org press")).ok
    assert press.ticket_number not in (await desk.command(BOB, "!mine")).message

    assert (await desk.command(ALICE, "!access grant @carol:example.org info trainee")).ok
    info = await desk.receive(mail())
    assert (await desk.command(CAROL, f"!reply {info.ticket_number} Draft")).ok
    assert (await desk.command(BOB, f"!spam {info.ticket_number}")).ok
    refused = await desk.command(BOB, f"!approve {info.ticket_number}")
    assert not refused.ok and "spam" in refused.message
    await desk.flush()
    assert desk.sender.sent == []


async def test_pseudonyms_hold_in_notices_replies_show_and_the_old_room_after_a_move(
    desk: Desk,
) -> None:
    assert (await desk.command(ALICE, "!privacy pseudonymize info on")).ok
    outcome = await desk.receive(mail("Photo", sender="maria@example.net"))
    number = outcome.ticket_number
    assert (await desk.command(ALICE, '!queue set info salutation "Hello {requester_name},"')).ok
    assert (await desk.command(BOB, f"!reply {number} Yes, you may.")).ok
    await desk.flush()
    assert (await desk.command(BOB, f"!spam {number}")).ok
    assert (await desk.command(BOB, f"!reopen {number}")).ok
    await desk.flush()
    text = (await desk.command(BOB, f"!show {number}")).message
    assert "Maria" not in text and "maria@" not in text
    assert f"[Ticket#{number}]" in text  # the ticket number stays readable
    assert (await desk.command(BOB, f"!move {number} press")).ok
    await desk.flush()
    assert any(p.ticket.moved_to for p in desk.chat.posts if p.room == "!info:example.org")
    in_info = [p for p in desk.chat.posts if p.room == "!info:example.org"]
    shown = " ".join(
        " ".join(
            filter(
                None,
                [
                    p.text,
                    p.ticket.requester,
                    p.ticket.subject,
                    p.article.body if p.article else "",
                    p.article.author if p.article else "",
                ],
            )
        )
        for p in in_info
    )
    assert "maria@example.net" not in shown and "Maria" not in shown
    assert "Requester #" in shown
    assert desk.sender.sent and "Hello Maria," in desk.sender.sent[0].text  # mail is real


async def test_reset_hands_a_setting_back_to_bot_toml(desk: Desk) -> None:
    assert (await desk.command(ALICE, "!queue set info reminders off")).ok
    assert (await desk.command(ALICE, '!queue set info signature "X"')).ok
    assert (await desk.command(ALICE, "!queue reset info reminders")).ok
    info = current(desk).queue("info")
    assert info.reminders and info.signature == {"*": "X"}
    again = await desk.command(ALICE, "!queue reset info reminders")
    assert not again.ok and "not changed by command" in again.message
    assert "queue.reset" in (await desk.command(ALICE, "!audit")).message
