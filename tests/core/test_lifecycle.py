"""The full ticket lifecycle through the core: states, ownership, queues, merges, held mail,
undo, acknowledgements and reminders, on a real SQLite store with a controllable clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.domain import ArticleKind, SendState, TicketState
from tests.core.conftest import ALICE, BOB, MALLORY, Desk, mail, make_desk

INFO_ROOM, DE_ROOM, PRESS_ROOM = "!info:example.org", "!de:example.org", "!press:example.org"


def _queues(**info: Any) -> list[dict[str, Any]]:
    return [
        {
            "name": "info",
            "addresses": ["info@example.org"],
            "matrix_room": INFO_ROOM,
            "volunteers": [ALICE.user_id, BOB.user_id],
            "default": True,
            "console": False,
            "sender_name": "Info team",
            **info,
        },
        {"name": "info::de", "matrix_room": DE_ROOM, "language": "de"},
        {
            "name": "press",
            "addresses": ["press@example.org"],
            "matrix_room": PRESS_ROOM,
            "volunteers": [BOB.user_id],
            "console": False,
        },
    ]


async def _desk(tmp_path: Path, **extra: Any) -> Desk:
    sections: dict[str, Any] = {"queue": _queues(**extra.pop("info", {}))}
    sections.update(extra)
    return await make_desk(tmp_path, extra=sections)


@pytest.fixture
async def desk(tmp_path: Path) -> AsyncIterator[Desk]:
    desk = await _desk(tmp_path)
    yield desk
    await desk.store.close()


async def _new(desk: Desk, **kwargs: Any) -> str:
    number = (await desk.receive(mail(**kwargs))).ticket_number
    await desk.flush()
    return number


async def _ticket(desk: Desk, number: str) -> Any:
    ticket = await desk.store.run(lambda repo: repo.ticket_by_number(number))
    assert ticket is not None
    return ticket


def _notices(desk: Desk) -> list[str]:
    return desk.chat.texts("notice")


# --- states ---------------------------------------------------------------------------------


async def test_close_successful_and_unsuccessful(desk: Desk) -> None:
    first, second = await _new(desk), await _new(desk)
    assert (await desk.command(ALICE, f"!close {first}")).ok
    assert (await desk.command(ALICE, f"!close {second} unsuccessful")).ok
    assert (await _ticket(desk, first)).state is TicketState.CLOSED_SUCCESSFUL
    assert (await _ticket(desk, second)).state is TicketState.CLOSED_UNSUCCESSFUL
    bad = await desk.command(ALICE, f"!close {first} maybe")
    assert not bad.ok


async def test_pending_reminder_falls_due_with_a_ping_and_no_sleeping(desk: Desk) -> None:
    number = await _new(desk)
    await desk.command(ALICE, f"!claim {number}")
    result = await desk.command(ALICE, f"!pending {number} 2d")
    assert result.ok, result.message
    ticket = await _ticket(desk, number)
    assert ticket.state is TicketState.PENDING_REMINDER
    assert ticket.pending_until == desk.clock.now() + timedelta(days=2)
    desk.clock.advance(86400)
    assert (await desk.reminders.tick()).fell_due == 0
    desk.clock.advance(86400 + 1)
    assert (await desk.reminders.tick()).fell_due == 1
    await desk.flush()
    ticket = await _ticket(desk, number)
    assert ticket.state is TicketState.OPEN and ticket.pending_until is None
    assert any("Pending reminder" in t for t in _notices(desk))
    assert desk.chat.pinged[-1] == (ALICE.user_id,)
    assert (await desk.reminders.tick()).fell_due == 0, "each reminder falls due once"


async def test_pending_autoclose_closes_unless_the_requester_answers(desk: Desk) -> None:
    quiet, answered = await _new(desk), await _new(desk, subject="Other")
    for number in (quiet, answered):
        assert (await desk.command(ALICE, f"!pending {number} 2026-12-01 autoclose")).ok
    await desk.receive(mail(subject=f"Re: [Ticket#{answered}] Other", text="Here it is"))
    assert (await _ticket(desk, answered)).state is TicketState.OPEN
    desk.clock.current = desk.clock.current.replace(month=12, day=2)
    await desk.reminders.tick()
    assert (await _ticket(desk, quiet)).state is TicketState.CLOSED_SUCCESSFUL
    assert (await _ticket(desk, answered)).state is TicketState.OPEN


async def test_pending_needs_a_future_date(desk: Desk) -> None:
    number = await _new(desk)
    assert not (await desk.command(ALICE, f"!pending {number} 2020-01-01")).ok
    assert not (await desk.command(ALICE, f"!pending {number} soon")).ok


async def test_requester_answer_reopens_a_closed_ticket(desk: Desk) -> None:
    number = await _new(desk)
    await desk.command(ALICE, f"!close {number}")
    await desk.receive(mail(subject=f"Re: [Ticket#{number}] Photo question"))
    assert (await _ticket(desk, number)).state is TicketState.OPEN


async def test_spam_sends_nothing_and_marks_the_sender(tmp_path: Path) -> None:
    desk = await _desk(tmp_path, tickets={"undo_seconds": 10})
    try:
        number = await _new(desk)
        # a reply still in its undo window is withdrawn too
        assert (await desk.command(ALICE, f"!reply {number} Dear friend")).ok
        assert (await desk.command(ALICE, f"!spam {number}")).ok
        desk.clock.advance(60)
        await desk.flush()
        assert desk.sender.sent == []
        ticket = await _ticket(desk, number)
        assert ticket.state is TicketState.SPAM
        marks = await desk.store.run(lambda repo: repo.sender_marks("maria@example.net"))
        assert "spam" in marks
        assert not (await desk.command(ALICE, f"!reply {number} again")).ok
    finally:
        await desk.store.close()


# --- ownership ------------------------------------------------------------------------------


async def test_assign_to_a_volunteer_of_the_queue_only(desk: Desk) -> None:
    number = await _new(desk)
    refused = await desk.command(ALICE, f"!assign {number} {MALLORY.user_id}")
    assert not refused.ok and "not a volunteer" in refused.message
    assert (await desk.command(ALICE, f"!assign {number} {BOB.user_id}")).ok
    ticket = await _ticket(desk, number)
    assert ticket.owner == BOB.user_id and ticket.state is TicketState.OPEN


async def test_reply_to_someone_elses_ticket_needs_force(desk: Desk) -> None:
    number = await _new(desk)
    await desk.command(BOB, f"!claim {number}")
    refused = await desk.command(ALICE, f"!reply {number} Hello")
    assert not refused.ok and "held by Bob" in refused.message and "--force" in refused.message
    forced = await desk.command(ALICE, f"!reply {number} --force Hello")
    assert forced.ok
    await desk.flush()
    assert len(desk.sender.sent) == 1
    assert (await _ticket(desk, number)).owner == BOB.user_id, "force does not take the claim"


async def test_reply_to_an_unclaimed_ticket_claims_it(desk: Desk) -> None:
    number = await _new(desk)
    assert (await desk.command(ALICE, f"!reply {number} Hello")).ok
    assert (await _ticket(desk, number)).owner == ALICE.user_id


async def test_a_claim_lapses_after_the_idle_time(desk: Desk) -> None:
    number = await _new(desk)
    await desk.command(ALICE, f"!claim {number}")
    desk.clock.advance(2 * 86400)
    await desk.command(ALICE, f"!note {number} looking into it")  # activity keeps it
    desk.clock.advance(2 * 86400)
    assert (await desk.reminders.tick()).lapsed == 0
    desk.clock.advance(86400 + 60)
    assert (await desk.reminders.tick()).lapsed == 1
    await desk.flush()
    assert (await _ticket(desk, number)).owner is None
    assert any("claim lapsed" in t for t in _notices(desk))


# --- priorities and tags --------------------------------------------------------------------


async def test_priority_and_tags(desk: Desk) -> None:
    number = await _new(desk)
    assert (await desk.command(ALICE, f"!priority {number} 5")).ok
    assert not (await desk.command(ALICE, f"!priority {number} 9")).ok
    assert (await desk.command(ALICE, f"!tag {number} add press legal")).ok
    assert (await desk.command(ALICE, f"!tag {number} remove legal")).ok
    assert not (await desk.command(ALICE, f"!tag {number} remove nothere")).ok
    assert not (await desk.command(ALICE, f"!tag {number} add <b>x</b>")).ok
    ticket = await _ticket(desk, number)
    assert ticket.priority == 5 and ticket.tags == ("press",)
    await desk.flush()
    update = [p for p in desk.chat.posts if p.kind == "update"][-1]
    assert update.ticket.priority == 5 and update.ticket.tags == ("press",)
    assert "priority 5" in update.ticket.status_line


# --- queues ---------------------------------------------------------------------------------


async def test_move_to_a_sub_queue_reposts_with_history_and_marks_the_old_post(
    desk: Desk,
) -> None:
    number = await _new(desk)
    await desk.receive(mail(subject=f"Re: [Ticket#{number}] Photo question", text="more"))
    await desk.flush()
    old_root = desk.chat.posts[0].ref
    assert (await desk.command(ALICE, f"!move {number} INFO::DE")).ok
    await desk.flush()
    ticket = await _ticket(desk, number)
    assert ticket.queue == "info::de"
    new_root = [p for p in desk.chat.posts if p.kind == "ticket" and p.room == DE_ROOM]
    assert len(new_root) == 1
    history = [p for p in desk.chat.posts if p.kind == "article" and p.room == DE_ROOM]
    assert len(history) == 1 and history[0].article is not None
    moved = [p for p in desk.chat.posts if p.kind == "update" and p.ref == old_root][-1]
    assert moved.ticket.moved_to.startswith("queue info::de: https://chat.example/")
    assert any("Moved to queue info::de" in t for t in _notices(desk))
    # commands now work in the new room, by the inherited volunteers
    claim = await desk.command(BOB, "!claim", thread=new_root[0].ref, room=DE_ROOM)
    assert claim.ok, claim.message


async def test_move_to_another_queue_ends_a_claim_of_a_non_volunteer(desk: Desk) -> None:
    number = await _new(desk)
    await desk.command(ALICE, f"!claim {number}")
    result = await desk.command(ALICE, f"!move {number} press")
    assert result.ok and "claim ends" in result.message
    ticket = await _ticket(desk, number)
    assert ticket.queue == "press" and ticket.owner is None
    assert not (await desk.command(ALICE, f"!claim {number}")).ok, "access follows the queue"


async def test_move_to_an_unknown_queue_lists_the_queues(desk: Desk) -> None:
    number = await _new(desk)
    result = await desk.command(ALICE, f"!move {number} nowhere")
    assert not result.ok and "info::de" in result.message


async def test_a_follow_up_to_a_moved_ticket_still_lands_on_it(desk: Desk) -> None:
    number = await _new(desk)
    await desk.command(ALICE, f"!move {number} info::de")
    outcome = await desk.receive(mail(subject=f"Re: [Ticket#{number}] Photo question"))
    assert outcome.ticket_number == number and not outcome.created


# --- merge ----------------------------------------------------------------------------------


async def test_merge_folds_history_and_redirects_follow_ups(desk: Desk) -> None:
    first = await _new(desk, subject="Licence")
    second = await _new(desk, subject="Licence again")
    result = await desk.command(ALICE, f"!merge {second} {first}")
    assert result.ok, result.message
    await desk.flush()
    source, target = await _ticket(desk, second), await _ticket(desk, first)
    assert source.state is TicketState.MERGED and source.merged_into == target.id
    articles = await desk.store.run(lambda repo: repo.articles(target.id))
    assert [a.subject for a in articles] == ["Licence", "Licence again"]
    follow = await desk.receive(mail(subject=f"Re: [Ticket#{second}] Licence again"))
    assert follow.ticket_number == first
    assert not (await desk.command(ALICE, f"!claim {second}")).ok
    assert any(f"Merged into ticket {first}" in t for t in _notices(desk))


async def test_merge_into_a_queue_you_cannot_act_in_is_refused(desk: Desk) -> None:
    mine = await _new(desk)
    theirs = await _new(desk, to="press@example.org")
    assert not (await desk.command(ALICE, f"!merge {mine} {theirs}")).ok


# --- follow-ups that can be trusted -------------------------------------------------------------


async def test_mail_from_a_stranger_is_held_then_attached(desk: Desk) -> None:
    number = await _new(desk, cc=("friend@example.net",))
    cc = await desk.receive(
        mail(subject=f"Re: [Ticket#{number}] Photo question", sender="friend@example.net")
    )
    assert cc.ticket_number == number
    stranger = await desk.receive(
        mail(subject=f"Re: [Ticket#{number}] Photo question", sender="eve@example.com")
    )
    assert stranger.ticket_number == number
    await desk.flush()
    articles = await desk.store.run(lambda repo: repo.articles(1))
    held = [a for a in articles if a.held]
    assert len(held) == 1 and held[0].author == "eve@example.com"
    shown = [p.article for p in desk.chat.posts if p.kind == "article" and p.article]
    assert shown[-1].held and "unknown sender" in shown[-1].heading
    assert (await desk.command(ALICE, f"!attach {number} {held[0].id}")).ok
    articles = await desk.store.run(lambda repo: repo.articles(1))
    assert not any(a.held for a in articles)
    # now a participant: the next mail is not held
    await desk.receive(
        mail(subject=f"Re: [Ticket#{number}] Photo question", sender="eve@example.com")
    )
    articles = await desk.store.run(lambda repo: repo.articles(1))
    assert not any(a.held for a in articles)


async def test_held_mail_opened_as_a_new_linked_ticket(desk: Desk) -> None:
    number = await _new(desk)
    await desk.receive(
        mail(subject=f"Re: [Ticket#{number}] Photo question", sender="eve@example.com")
    )
    held_id = (await desk.store.run(lambda repo: repo.articles(1)))[-1].id
    result = await desk.command(ALICE, f"!newticket {number} {held_id}")
    assert result.ok, result.message
    await desk.flush()
    new_number = result.message.split()[-1].rstrip(".")
    new = await _ticket(desk, new_number)
    assert new.requester_email == "eve@example.com" and new.linked_to == 1
    assert len(await desk.store.run(lambda repo: repo.articles(new.id))) == 1


@pytest.mark.parametrize(
    ("policy", "days_later", "new_ticket"),
    [
        ("reopen", 400, False),
        ("new", 0, True),
        ("reopen_within", 5, False),
        ("reopen_within", 40, True),
    ],
)
async def test_follow_up_to_a_closed_ticket_per_queue_policy(
    tmp_path: Path, policy: str, days_later: int, new_ticket: bool
) -> None:
    desk = await _desk(tmp_path, info={"follow_up_closed": policy, "reopen_days": 30})
    try:
        number = await _new(desk)
        await desk.command(ALICE, f"!close {number}")
        desk.clock.advance(days_later * 86400)
        outcome = await desk.receive(mail(subject=f"Re: [Ticket#{number}] Photo question"))
        assert outcome.created is new_ticket
        if new_ticket:
            new = await _ticket(desk, outcome.ticket_number)
            assert new.linked_to == (await _ticket(desk, number)).id
            assert (await _ticket(desk, number)).state is TicketState.CLOSED_SUCCESSFUL
        else:
            assert (await _ticket(desk, number)).state is TicketState.OPEN
    finally:
        await desk.store.close()


async def test_out_of_office_is_recorded_without_changing_the_state(desk: Desk) -> None:
    number = await _new(desk)
    await desk.command(ALICE, f"!close {number}")
    await desk.receive(
        mail(subject=f"Auto: Re: [Ticket#{number}] Photo question", auto_kind="auto-replied")
    )
    assert (await _ticket(desk, number)).state is TicketState.CLOSED_SUCCESSFUL


async def test_a_permanent_bounce_marks_the_address_undeliverable(desk: Desk) -> None:
    number = await _new(desk)
    await desk.command(ALICE, f"!reply {number} Hello")
    await desk.flush()
    reply_id = desk.sender.sent[0].message_id
    dsn = (
        "Content-Type: message/delivery-status\r\n\r\n"
        "Final-Recipient: rfc822; maria@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        f"\r\nMessage-ID: {reply_id}\r\n"
    ).encode()
    outcome = await desk.receive(
        mail(
            subject="Undelivered Mail Returned to Sender",
            sender="mailer-daemon@example.net",
            auto_kind="bounce",
            raw=dsn,
        )
    )
    assert outcome.ticket_number == number and not outcome.created
    await desk.flush()
    marks = await desk.store.run(lambda repo: repo.sender_marks("maria@example.net"))
    assert "undeliverable" in marks
    assert any("bounced permanently" in t for t in _notices(desk))
    # a later reply warns the volunteer
    await desk.command(ALICE, f"!reply {number} Again")
    await desk.flush()
    assert any("bounced before" in t for t in _notices(desk))


# --- undo -----------------------------------------------------------------------------------


async def test_undo_withdraws_a_reply_inside_its_window(tmp_path: Path) -> None:
    desk = await _desk(tmp_path, tickets={"undo_seconds": 10})
    try:
        number = await _new(desk)
        assert (await desk.command(ALICE, f"!reply {number} Oops")).ok
        await desk.flush()
        assert desk.sender.sent == [], "nothing goes out inside the undo window"
        assert ("undo",) in desk.chat.actions
        assert not (await desk.command(BOB, f"!undo {number}")).ok, "only your own reply"
        assert (await desk.command(ALICE, f"!undo {number}")).ok
        desk.clock.advance(30)
        await desk.flush()
        assert desk.sender.sent == []
        articles = await desk.store.run(lambda repo: repo.articles(1))
        assert articles[-1].send_state is SendState.CANCELLED

        assert (await desk.command(ALICE, f"!reply {number} Right one")).ok
        desk.clock.advance(11)
        await desk.flush()
        assert len(desk.sender.sent) == 1
        too_late = await desk.command(ALICE, f"!undo {number}")
        assert not too_late.ok
    finally:
        await desk.store.close()


# --- replies --------------------------------------------------------------------------------


async def test_template_reply_in_the_tickets_language_with_salutation_and_quote(
    tmp_path: Path,
) -> None:
    desk = await _desk(
        tmp_path,
        templates={
            "thanks": {
                "en": "Thank you for ticket {ticket_number}.",
                "de": "Danke für Ticket {ticket_number}.",
            }
        },
        info={
            "salutation": {"en": "Hello {requester_name},", "de": "Hallo {requester_name},"},
            "signature": {"*": "{volunteer_name}\n{queue} team"},
        },
    )
    try:
        number = await _new(desk)
        await desk.store.run(lambda repo: _set_language(repo, number, "de"))
        result = await desk.command(ALICE, f"!reply {number} --template thanks")
        assert result.ok, result.message
        await desk.flush()
        text = desk.sender.sent[0].text
        assert text.startswith("Hallo Maria,")
        assert f"Danke für Ticket {number}." in text
        assert "Alice\ninfo team" in text
        assert "> may I use the photo?" in text
        unknown = await desk.command(ALICE, f"!reply {number} --template nope")
        assert not unknown.ok and "thanks" in unknown.message
        listing = await desk.command(ALICE, "!templates")
        assert listing.ok and "thanks" in listing.message
    finally:
        await desk.store.close()


def _set_language(repo: Any, number: str, language: str) -> None:
    ticket = repo.ticket_by_number(number)
    ticket.language = language
    repo.save_ticket(ticket)


async def test_anonymous_queue_signs_with_the_team_only(tmp_path: Path) -> None:
    desk = await _desk(tmp_path, info={"anonymous": True, "signature": "{volunteer_name}"})
    try:
        number = await _new(desk)
        await desk.command(ALICE, f"!reply {number} Yes")
        await desk.flush()
        text = desk.sender.sent[0].text
        assert "Info team" in text and "Alice" not in text
    finally:
        await desk.store.close()


async def test_notes_never_reach_the_requester(desk: Desk) -> None:
    number = await _new(desk)
    await desk.command(ALICE, f"!note {number} internal only")
    await desk.flush()
    assert desk.sender.sent == []


# --- acknowledgements (RFC 3834) ------------------------------------------------------------


def _ack_config() -> dict[str, Any]:
    return {
        "info": {
            "autoresponse_new": {
                "en": "We received your message; your ticket number is {ticket_number}.",
                "de": "Wir haben Ihre Nachricht erhalten: Ticket {ticket_number}.",
            },
            "autoresponse_reopen": "Your ticket {ticket_number} is open again.",
        },
        "autoresponse": {"max_per_sender_per_day": 2},
    }


async def test_acknowledgement_is_sent_marked_auto_submitted(tmp_path: Path) -> None:
    desk = await _desk(tmp_path, **_ack_config())
    try:
        number = await _new(desk)
        sent = desk.sender.sent
        assert len(sent) == 1 and number in sent[0].text
        assert ("Auto-Submitted", "auto-replied") in sent[0].extra_headers
        articles = await desk.store.run(lambda repo: repo.articles(1))
        assert articles[-1].kind is ArticleKind.AUTO_REPLY
        # reopening by mail acknowledges too
        await desk.command(ALICE, f"!close {number}")
        await desk.receive(mail(subject=f"Re: [Ticket#{number}] Photo question"))
        await desk.flush()
        assert "open again" in desk.sender.sent[-1].text
    finally:
        await desk.store.close()


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"auto_kind": "auto-replied"}, "auto-submitted"),
        ({"auto_kind": "bounce"}, "bounce"),
        ({"auto_kind": "bulk"}, "list or bulk"),
        ({"sender": "press@example.org"}, "the desk's own address"),
    ],
)
async def test_no_acknowledgement_to_automatic_or_own_mail(
    tmp_path: Path, kwargs: dict[str, Any], why: str
) -> None:
    desk = await _desk(tmp_path, **_ack_config())
    try:
        await _new(desk, **kwargs)
        assert desk.sender.sent == [], why
    finally:
        await desk.store.close()


async def test_acknowledgements_per_sender_per_day_are_limited(tmp_path: Path) -> None:
    desk = await _desk(tmp_path, **_ack_config())
    try:
        for index in range(4):
            await _new(desk, subject=f"Question {index}")
        assert len(desk.sender.sent) == 2
        desk.clock.advance(86400 + 1)
        await _new(desk, subject="Next day")
        assert len(desk.sender.sent) == 3
    finally:
        await desk.store.close()


async def test_two_desks_answering_each_other_do_not_loop(tmp_path: Path) -> None:
    """Desk A's acknowledgement reaches desk B and the reverse, as mail servers would carry
    them; each sees Auto-Submitted and stays quiet. Even a responder that strips the header
    is stopped by the per-sender limit."""
    from bot.mail import Address, InboundEmail

    a = await _desk(tmp_path / "a", **_ack_config())
    b_config = _ack_config()
    b = await _desk(tmp_path / "b", **b_config)
    try:
        first = mail(sender="press@other.example", to="info@example.org")
        await a.receive(first)
        await a.flush()
        delivered = 0
        queue = [(b, m) for m in a.sender.sent]
        while queue and delivered < 50:
            target, out = queue.pop(0)
            delivered += 1
            before = len(target.sender.sent)
            headers = dict(out.extra_headers)
            await target.receive(
                InboundEmail(
                    raw=b"x",
                    message_id=out.message_id,
                    subject=out.subject,
                    sender=Address("info@example.org"),
                    to=(Address("info@example.org"),),
                    text=out.text,
                    auto_kind="auto-replied" if headers.get("Auto-Submitted") else "",
                )
            )
            await target.flush()
            other = a if target is b else b
            queue.extend((other, m) for m in target.sender.sent[before:])
        assert delivered == 1, "B never answers A's acknowledgement"
        assert len(b.sender.sent) == 0
    finally:
        await a.store.close()
        await b.store.close()


# --- search, history, languages -----------------------------------------------------------


async def test_history_lists_a_requesters_tickets_in_visible_queues_only(desk: Desk) -> None:
    await _new(desk, subject="One")
    await _new(desk, subject="Two", to="press@example.org")
    alice = await desk.command(ALICE, "!history maria@example.net")
    assert alice.ok and "One" in alice.message and "Two" not in alice.message
    bob = await desk.command(BOB, "!history Maria@Example.net")
    assert "One" in bob.message and "Two" in bob.message


async def test_languages_decide_who_is_pinged_first(desk: Desk) -> None:
    assert (await desk.command(BOB, "!languages de fr")).ok
    assert "de, fr" in (await desk.command(BOB, "!languages")).message
    assert not (await desk.command(BOB, "!languages <script>")).ok
    number = await _new(desk)
    await desk.store.run(lambda repo: _set_language(repo, number, "de"))
    desk.clock.advance(4 * 3600 + 1)
    assert (await desk.reminders.tick()).unclaimed_pings == 1
    await desk.flush()
    assert desk.chat.pinged[-1] == (BOB.user_id,), "German speakers first"
    desk.clock.advance(3600)
    assert (await desk.reminders.tick()).unclaimed_pings == 0, "not again at once"
    desk.clock.advance(4 * 3600)
    assert (await desk.reminders.tick()).unclaimed_pings == 1
    await desk.flush()
    assert set(desk.chat.pinged[-1]) == {ALICE.user_id, BOB.user_id}, "then the whole queue"


async def test_owner_is_pinged_when_the_requester_waits(desk: Desk) -> None:
    number = await _new(desk)
    await desk.command(ALICE, f"!claim {number}")
    desk.clock.advance(2 * 86400 + 1)
    report = await desk.reminders.tick()
    assert report.owner_pings == 1
    await desk.flush()
    assert desk.chat.pinged[-1] == (ALICE.user_id,)


async def test_daily_digest_goes_out_once_a_day(tmp_path: Path) -> None:
    desk = await _desk(tmp_path, reminders={"digest_at": "09:00", "unclaimed_after": "off"})
    try:
        await _new(desk)
        assert (await desk.reminders.tick()).digests == 1  # the fake clock says 10:00
        assert (await desk.reminders.tick()).digests == 0
        await desk.flush()
        assert "Daily digest for info: 1 new" in desk.chat.texts("ping")[-1]
        desk.clock.advance(86400)
        assert (await desk.reminders.tick()).digests == 1
    finally:
        await desk.store.close()


async def test_reminder_state_survives_a_restart(tmp_path: Path) -> None:
    desk = await _desk(tmp_path)
    number = await _new(desk)
    await desk.command(ALICE, f"!pending {number} 1h")
    await desk.store.close()
    again = await _desk(tmp_path)
    try:
        again.clock.current = desk.clock.current + timedelta(hours=2)
        assert (await again.reminders.tick()).fell_due == 1
    finally:
        await again.store.close()


async def test_help_lists_every_command(desk: Desk) -> None:
    from bot.commands import COMMANDS

    text = (await desk.command(ALICE, "!help")).message
    for name, spec in COMMANDS.items():
        # admin commands are listed to admins only
        assert (f"!{name}" in text) is not spec.admin
    assert not (await desk.command(MALLORY, "!search anything")).ok
