"""Volunteers' commands through the core: permissions, state changes, replies."""

from __future__ import annotations

import asyncio

from bot.domain import SendState, TicketState
from bot.ports import MailSendError
from tests.core.conftest import ALICE, BOB, MALLORY, Desk, mail


async def _ticket(desk: Desk, **kwargs: object) -> str:
    number = (await desk.receive(mail(**kwargs))).ticket_number  # type: ignore[arg-type]
    await desk.flush()
    return number


async def test_claim_in_thread_sets_owner_and_edits_root(desk: Desk) -> None:
    number = await _ticket(desk)
    root = desk.chat.posts[0].ref
    result = await desk.command(ALICE, "!claim", thread=root, room="!info:example.org")
    assert result.ok and result.shown_in_thread
    await desk.flush()
    ticket = await desk.store.run(lambda repo: repo.ticket_by_number(number))
    assert ticket is not None and ticket.owner == ALICE.user_id
    assert ticket.state is TicketState.OPEN
    update = [p for p in desk.chat.posts if p.kind == "update"][-1]
    assert update.ticket.owner == "Alice"
    assert any(p.kind == "notice" and "Claimed by Alice" in p.text for p in desk.chat.posts)


async def test_non_volunteer_is_refused_and_nothing_changes(desk: Desk) -> None:
    number = await _ticket(desk)
    before = len(desk.chat.posts)
    result = await desk.command(MALLORY, f"!close {number}")
    assert not result.ok and "only volunteers" in result.message
    await desk.flush()
    ticket = await desk.store.run(lambda repo: repo.ticket_by_number(number))
    assert ticket is not None and ticket.state is TicketState.NEW
    assert len(desk.chat.posts) == before


async def test_volunteer_of_another_queue_is_refused(desk: Desk) -> None:
    number = await _ticket(desk, to="press@example.org")
    result = await desk.command(ALICE, f"!claim {number}")
    assert not result.ok


async def test_command_for_a_ticket_of_another_queue_room_is_refused(desk: Desk) -> None:
    number = await _ticket(desk, to="press@example.org")
    result = await desk.command(BOB, f"!show {number}", room="!info:example.org")
    assert not result.ok and "press" in result.message


async def test_command_without_number_outside_a_thread_asks_which_ticket(desk: Desk) -> None:
    await _ticket(desk)
    result = await desk.command(ALICE, "!claim", room="!info:example.org")
    assert not result.ok and "Which ticket" in result.message


async def test_second_claim_is_refused_naming_the_owner(desk: Desk) -> None:
    number = await _ticket(desk)
    assert (await desk.command(ALICE, f"!claim {number}")).ok
    result = await desk.command(BOB, f"!claim {number}")
    assert not result.ok and "Alice" in result.message


async def test_concurrent_claims_resolve_to_exactly_one_owner(desk: Desk) -> None:
    number = await _ticket(desk)
    results = await asyncio.gather(
        desk.command(ALICE, f"!claim {number}"), desk.command(BOB, f"!claim {number}")
    )
    assert sorted(r.ok for r in results) == [False, True]


async def test_unclaim_close_reopen_cycle(desk: Desk) -> None:
    number = await _ticket(desk)
    assert (await desk.command(ALICE, f"!claim {number}")).ok
    assert not (await desk.command(BOB, f"!unclaim {number}")).ok
    assert (await desk.command(ALICE, f"!unclaim {number}")).ok
    assert (await desk.command(ALICE, f"!close {number}")).ok
    assert not (await desk.command(ALICE, f"!close {number}")).ok
    assert (await desk.command(ALICE, f"!reopen {number}")).ok
    ticket = await desk.store.run(lambda repo: repo.ticket_by_number(number))
    assert ticket is not None and ticket.state is TicketState.OPEN


async def test_reply_is_stored_before_it_is_sent_and_sent_once(desk: Desk) -> None:
    number = await _ticket(desk, message_id="<q1@example.net>", subject="Photo question")
    result = await desk.command(ALICE, f"!reply {number} Yes, with credit.")
    assert result.ok
    stored = await desk.store.run(lambda repo: repo.articles(1))
    assert stored[-1].send_state is SendState.QUEUED and not desk.sender.sent
    await desk.flush()
    await desk.flush()
    assert len(desk.sender.sent) == 1
    sent = desk.sender.sent[0]
    assert sent.subject == f"Re: [Ticket#{number}] Photo question"
    assert sent.in_reply_to == "<q1@example.net>"
    assert sent.references == ("<q1@example.net>",)
    assert sent.sender.email == "info@example.org"
    assert [a.email for a in sent.to] == ["maria@example.net"]
    assert sent.message_id.startswith(f"<ticketbot.{number}.")
    stored = await desk.store.run(lambda repo: repo.articles(1))
    assert stored[-1].send_state is SendState.SENT


async def test_reply_in_thread_without_number(desk: Desk) -> None:
    await _ticket(desk)
    root = desk.chat.posts[0].ref
    assert (await desk.command(ALICE, "!reply Thanks!", thread=root)).ok
    await desk.flush()
    assert desk.sender.sent[0].text.startswith("Thanks!\n")


async def test_reply_needs_text(desk: Desk) -> None:
    number = await _ticket(desk)
    result = await desk.command(ALICE, f"!reply {number}")
    assert not result.ok and "Usage" in result.message


async def test_failed_send_is_retried_from_the_outbox_and_reported(desk: Desk) -> None:
    number = await _ticket(desk)
    desk.sender.failures.append(MailSendError("451 try later", temporary=True))
    await desk.command(ALICE, f"!reply {number} Hello")
    await desk.flush()
    assert not desk.sender.sent
    assert any("could not be sent yet" in p.text for p in desk.chat.posts if p.kind == "notice")
    desk.clock.advance(11)
    await desk.flush()
    assert len(desk.sender.sent) == 1
    assert any("sent after 2 attempts" in p.text for p in desk.chat.posts)


async def test_permanent_send_failure_is_given_up_and_said(desk: Desk) -> None:
    number = await _ticket(desk)
    desk.sender.failures.append(MailSendError("550 no such user", temporary=False))
    await desk.command(ALICE, f"!reply {number} Hello")
    await desk.flush()
    desk.clock.advance(3600)
    await desk.flush()
    assert not desk.sender.sent
    articles = await desk.store.run(lambda repo: repo.articles(1))
    assert articles[-1].send_state is SendState.FAILED
    assert any("given up" in p.text for p in desk.chat.posts)


async def test_note_is_posted_in_thread_and_never_emailed(desk: Desk) -> None:
    number = await _ticket(desk)
    assert (await desk.command(ALICE, f"!note {number} called them")).ok
    await desk.flush()
    assert not desk.sender.sent
    notes = [p for p in desk.chat.posts if p.kind == "article"]
    assert notes[-1].article is not None and notes[-1].article.kind == "note"


async def test_show_lists_history(desk: Desk) -> None:
    number = await _ticket(desk, subject="Photo")
    await desk.command(ALICE, f"!note {number} first note")
    result = await desk.command(ALICE, f"!show {number}")
    assert result.ok and not result.shown_in_thread
    assert "first note" in result.message and "Photo" in result.message


async def test_every_action_is_audited_with_its_actor(desk: Desk) -> None:
    number = await _ticket(desk)
    await desk.command(ALICE, f"!claim {number}")
    from storage import models

    rows = await desk.store.run(
        lambda repo: [(r.actor_id, r.action) for r in models.AuditEntry.select()]
    )
    assert ("@alice:example.org", "ticket.claim") in rows
    assert ("ticketbot", "ticket.created") in rows


async def test_chat_outage_delays_posts_without_losing_or_doubling(desk: Desk) -> None:
    await desk.receive(mail())
    desk.chat.fail_next = 1
    await desk.flush()
    assert desk.chat.posts == []
    desk.clock.advance(60)
    await desk.flush()
    await desk.flush()
    assert desk.chat.kinds() == ["ticket"]


async def test_unknown_command_and_help(desk: Desk) -> None:
    assert not (await desk.command(ALICE, "!frobnicate")).ok
    help_result = await desk.command(ALICE, "!help")
    assert help_result.ok and "!claim" in help_result.message


async def test_a_failed_post_keeps_the_ticket_thread_in_order(desk: Desk) -> None:
    number = await _ticket(desk)
    other = await _ticket(desk, subject="other")
    await desk.command(ALICE, f"!note {number} first")
    await desk.command(ALICE, f"!note {number} second")
    await desk.command(ALICE, f"!note {other} elsewhere")
    desk.chat.fail_next = 1
    await desk.flush()
    desk.clock.advance(3600)
    await desk.flush()
    bodies = [p.article.body for p in desk.chat.posts if p.kind == "article" and p.article]
    assert bodies.index("first") < bodies.index("second")


async def test_a_ticket_without_a_root_post_gets_one_before_its_next_post(desk: Desk) -> None:
    """Say the queue was bound to the room after the ticket arrived."""
    from storage import models

    await desk.receive(mail(text="the original mail"))
    await desk.store.run(lambda repo: models.OutboxEntry.update(state="done").execute())
    await desk.command(ALICE, "!note 2026112310000001 later note")
    await desk.flush()
    assert desk.chat.kinds() == ["ticket", "article"]
    assert desk.chat.posts[0].article is not None
    assert "the original mail" in desk.chat.posts[0].article.body
