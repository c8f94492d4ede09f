"""Review findings for the lifecycle change: each test shows one bug (they fail today)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.domain import TicketState
from tests.core.conftest import ALICE, BOB, Desk, mail, make_desk

INFO_ROOM, DE_ROOM, PRESS_ROOM = "!info:example.org", "!de:example.org", "!press:example.org"


def _queues() -> list[dict[str, Any]]:
    return [
        {
            "name": "info",
            "addresses": ["info@example.org"],
            "matrix_room": INFO_ROOM,
            "volunteers": [ALICE.user_id, BOB.user_id],
            "default": True,
            "console": False,
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
    sections: dict[str, Any] = {"queue": _queues()}
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


# --- 1. privacy ------------------------------------------------------------------------------


async def test_daily_digest_of_info_never_lands_in_the_press_room(tmp_path: Path) -> None:
    """bot/reminders.py:_digest anchors the queue's digest to a ticket; the outbox picks
    the room from that ticket's *current* queue. Move the anchor before the ping goes
    out and info's digest (subjects of every waiting info ticket) is posted in press."""
    desk = await _desk(tmp_path, reminders={"digest_at": "09:00", "unclaimed_after": "off"})
    try:
        anchor = await _new(desk, subject="Anchor")
        await _new(desk, subject="Secret info matter")
        assert (await desk.reminders.tick()).digests == 1
        assert (await desk.command(BOB, f"!move {anchor} press")).ok
        await desk.flush()
        leaked = [
            p.text
            for p in desk.chat.posts
            if p.room == PRESS_ROOM and "Secret info matter" in (p.text or "")
        ]
        assert leaked == [], f"info's digest posted in the press room: {leaked}"
    finally:
        await desk.store.close()


async def test_search_in_a_room_does_not_list_other_queues_tickets(desk: Desk) -> None:
    """bot/actions/lookup.py:search uses every queue the asker may act in, whatever room the
    command was typed in, and the answer is posted in that room: Bob searching in the info
    room shows press tickets to Alice, who is not a press volunteer."""
    await _new(desk, subject="Embargoed press story", to="press@example.org")
    result = await desk.command(BOB, "!search Embargoed", room=INFO_ROOM)
    assert "Embargoed" not in result.message, result.message


async def test_history_in_a_room_does_not_list_other_queues_tickets(desk: Desk) -> None:
    await _new(desk, subject="Embargoed press story", to="press@example.org")
    result = await desk.command(BOB, "!history maria@example.net", room=INFO_ROOM)
    assert "Embargoed" not in result.message, result.message


# --- 2. nothing lost -------------------------------------------------------------------------


async def test_move_replays_history_even_when_an_earlier_post_was_still_waiting(
    desk: Desk,
) -> None:
    """bot/outbox.py:_chat: an item queued before the move (here a note whose post failed
    once) posts a bare root in the new room via _post_root_first; the move's post_ticket
    then sees post.room == room and skips the history replay entirely."""
    number = await _new(desk)
    await desk.receive(mail(subject=f"Re: [Ticket#{number}] Photo question", text="Second mail"))
    await desk.flush()
    desk.chat.fail_next = 1
    await desk.command(ALICE, f"!note {number} checking")
    await desk.flush()  # the note's post fails and waits for its retry
    assert (await desk.command(ALICE, f"!move {number} info::de")).ok
    desk.clock.advance(60)
    await desk.flush()
    shown = [
        p.article.body
        for p in desk.chat.posts
        if p.room == DE_ROOM and p.kind in ("article", "ticket") and p.article is not None
    ]
    assert any("Second mail" in body for body in shown), f"history missing in new room: {shown}"


# --- 3. wrong state --------------------------------------------------------------------------


async def test_a_pending_reminder_coming_back_keeps_its_owners_claim(desk: Desk) -> None:
    """bot/reminders.py:_tick: fall_due reopens the ticket, then the same tick runs _lapse on
    it; owner_active_at is from before the pending time, so the claim lapses at the very
    moment the owner is pinged about the reminder."""
    number = await _new(desk)
    await desk.command(ALICE, f"!claim {number}")
    assert (await desk.command(ALICE, f"!pending {number} 5d")).ok
    desk.clock.advance(5 * 86400 + 60)
    report = await desk.reminders.tick()
    assert report.fell_due == 1
    ticket = await _ticket(desk, number)
    assert ticket.owner == ALICE.user_id, f"claim lapsed with the reminder ({report})"


async def test_reminders_keep_working_when_a_pending_tickets_queue_is_removed(
    tmp_path: Path,
) -> None:
    """bot/reminders.py:_fall_due calls config.queue(...) for due_pending tickets without the
    removed-queue guard active tickets have: KeyError rolls back the whole tick, every tick,
    so no reminder of any queue ever fires again."""
    desk = await _desk(tmp_path)
    press = await _new(desk, to="press@example.org")
    info = await _new(desk)
    await desk.command(BOB, f"!pending {press} 1h")
    await desk.command(ALICE, f"!pending {info} 1h")
    clock = desk.clock.current
    await desk.store.close()
    without_press = _queues()[:2]
    again = await make_desk(tmp_path, extra={"queue": without_press})
    try:
        again.clock.current = clock
        again.clock.advance(2 * 3600)
        report = await again.reminders.tick()
        assert report.fell_due >= 1
        assert (await _ticket(again, info)).state is TicketState.OPEN
    finally:
        await again.store.close()


async def test_reply_quotes_the_requesters_mail_not_an_out_of_office(desk: Desk) -> None:
    """bot/actions/answer.py:reply quotes last_article_of_kinds(INBOUND), which includes
    automatic mail (out-of-office, bounces); reminders skip auto_kind, replies do not."""
    number = await _new(desk, text="Hello,\nmay I use the photo?\nMaria")
    await desk.receive(
        mail(
            subject=f"Auto: Re: [Ticket#{number}] Photo question",
            text="I am away until Monday.",
            auto_kind="auto-replied",
        )
    )
    assert (await desk.command(ALICE, f"!reply {number} Yes you may")).ok
    await desk.flush()
    text = desk.sender.sent[-1].text
    assert "> may I use the photo?" in text, text


async def test_reply_after_merge_does_not_quote_another_requesters_mail(desk: Desk) -> None:
    """Merging another person's ticket in (bot/actions/moves.py:merge) makes their mail the
    'previous' article a reply to this requester quotes: Maria gets Eve's text."""
    target = await _new(desk, subject="Licence")
    other = await _new(desk, subject="Licence too", sender="eve@example.com", text="My IBAN is X")
    assert (await desk.command(ALICE, f"!merge {other} {target}")).ok
    assert (await desk.command(ALICE, f"!reply {target} Yes")).ok
    await desk.flush()
    sent = desk.sender.sent[-1]
    assert sent.to[0].email == "maria@example.net"
    assert "IBAN" not in sent.text, sent.text


async def test_mail_marked_automatic_from_a_stranger_is_still_held(desk: Desk) -> None:
    """bot/intake.py:_follow_up: held = not email.auto_kind and ...; any stranger adding
    Auto-Submitted to a mail that names the ticket skips holding and is shown as ordinary
    (and is then quoted in the next reply, being the last non-held inbound)."""
    number = await _new(desk)
    await desk.receive(
        mail(
            subject=f"Re: [Ticket#{number}] Photo question",
            sender="eve@example.com",
            text="Click here",
            auto_kind="auto-replied",
        )
    )
    articles = await desk.store.run(lambda repo: repo.articles(1))
    stranger = [a for a in articles if a.author == "eve@example.com"]
    assert stranger and stranger[0].held


async def test_reply_to_a_closed_ticket_does_not_depend_on_whether_it_was_claimed(
    desk: Desk,
) -> None:
    """answer.reply allows replies on closed tickets, but an unclaimed one trips
    ticket.claim (refuses closed tickets): 'reopen it first' only when nobody held it."""
    claimed, unclaimed = await _new(desk), await _new(desk, subject="Other")
    await desk.command(ALICE, f"!claim {claimed}")
    for number in (claimed, unclaimed):
        assert (await desk.command(ALICE, f"!close {number}")).ok
    first = await desk.command(ALICE, f"!reply {claimed} One more thing")
    second = await desk.command(ALICE, f"!reply {unclaimed} One more thing")
    assert first.ok == second.ok, (first.message, second.message)


# --- crashes on odd input --------------------------------------------------------------------


async def test_pending_with_an_enormous_duration_is_refused_not_a_crash(desk: Desk) -> None:
    """bot/timeparse.py:parse_when: now + timedelta(huge) raises OverflowError, which is no
    TicketError, so CommandService.execute raises instead of answering."""
    number = await _new(desk)
    result = await desk.command(ALICE, f"!pending {number} 999999999999d")
    assert not result.ok


# --- mail sent against a promise -------------------------------------------------------------


async def test_spam_stops_a_reply_that_is_waiting_for_its_retry(desk: Desk) -> None:
    """storage/store.py:cancel_send only cancels state 'pending'; begin_send left a reply whose
    first attempt failed (4xx) in 'sending', so !spam ('gets no mail') lets it go out on
    the retry."""
    from bot.ports import MailSendError

    number = await _new(desk)
    desk.sender.failures.append(MailSendError("421 try later"))
    assert (await desk.command(ALICE, f"!reply {number} Dear friend")).ok
    await desk.flush()
    assert desk.sender.sent == []
    spam = await desk.command(ALICE, f"!spam {number}")
    assert spam.ok and "gets no mail" in spam.message
    desk.clock.advance(3600)
    await desk.flush()
    assert desk.sender.sent == [], "a spam ticket's reply was sent"
