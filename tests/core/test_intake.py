"""Mail becomes tickets: numbering, routing, follow-ups, duplicates."""

from __future__ import annotations

import re

from bot.domain import TicketState
from tests.core.conftest import ALICE, Desk, mail


async def test_new_mail_makes_a_ticket_with_a_date_based_number(desk: Desk) -> None:
    outcome = await desk.receive(mail())
    assert outcome.created and not outcome.duplicate
    assert re.fullmatch(r"20261123" r"10" r"000001", outcome.ticket_number)
    second = await desk.receive(mail(subject="Another"))
    assert second.ticket_number == "2026112310000002"


async def test_ticket_is_posted_once_to_its_queue_room_with_the_first_mail(desk: Desk) -> None:
    await desk.receive(mail(text="line one\nline two"))
    await desk.flush()
    await desk.flush()
    assert desk.chat.kinds() == ["ticket"]
    post = desk.chat.posts[0]
    assert post.room == "!info:example.org"
    assert post.ticket.state == "new"
    assert "line one" in post.ticket.preview
    assert post.article is not None and "line two" in post.article.body


async def test_mail_is_routed_by_recipient_address(desk: Desk) -> None:
    number = (await desk.receive(mail(to="Press@Example.org"))).ticket_number
    ticket = await desk.store.run(lambda repo: repo.ticket_by_number(number))
    assert ticket is not None and ticket.queue == "press"


async def test_mail_to_an_unknown_address_lands_in_the_default_queue(desk: Desk) -> None:
    number = (await desk.receive(mail(to="someone@elsewhere.org"))).ticket_number
    ticket = await desk.store.run(lambda repo: repo.ticket_by_number(number))
    assert ticket is not None and ticket.queue == "info"


async def test_same_message_id_twice_makes_one_ticket(desk: Desk) -> None:
    first = await desk.receive(mail(message_id="<same@x>"))
    again = await desk.receive(mail(message_id="<same@x>"))
    assert again.duplicate and again.ticket_number == first.ticket_number
    assert await desk.store.run(lambda repo: repo.count_tickets()) == 1


async def test_follow_up_by_subject_tag_is_appended_to_its_ticket(desk: Desk) -> None:
    number = (await desk.receive(mail())).ticket_number
    follow = await desk.receive(mail(subject=f"Re: [Ticket#{number}] Photo question"))
    assert not follow.created and follow.ticket_number == number
    articles = await desk.store.run(lambda repo: repo.articles(1))
    assert len(articles) == 2


async def test_follow_up_by_in_reply_to_is_appended_to_its_ticket(desk: Desk) -> None:
    number = (await desk.receive(mail(message_id="<orig@x>"))).ticket_number
    follow = await desk.receive(mail(subject="Re: hi", in_reply_to="<orig@x>"))
    assert follow.ticket_number == number and not follow.created


async def test_follow_up_by_references_is_appended_to_its_ticket(desk: Desk) -> None:
    number = (await desk.receive(mail(message_id="<orig2@x>"))).ticket_number
    follow = await desk.receive(mail(subject="x", references=("<unknown@y>", "<orig2@x>")))
    assert follow.ticket_number == number


async def test_unknown_ticket_tag_makes_a_new_ticket(desk: Desk) -> None:
    outcome = await desk.receive(mail(subject="Re: [Ticket#2020010110999999] old"))
    assert outcome.created


async def test_follow_up_to_a_closed_ticket_reopens_it_and_shows_in_thread(desk: Desk) -> None:
    number = (await desk.receive(mail(message_id="<c@x>"))).ticket_number
    await desk.flush()
    assert (await desk.command(ALICE, f"!close {number}")).ok
    await desk.flush()
    await desk.receive(mail(subject="thanks", in_reply_to="<c@x>", text="One more question"))
    await desk.flush()
    ticket = await desk.store.run(lambda repo: repo.ticket_by_number(number))
    assert ticket is not None and ticket.state is TicketState.OPEN
    articles = [p for p in desk.chat.posts if p.kind == "article"]
    assert articles[-1].article is not None and "One more question" in articles[-1].article.body
    assert any("Reopened" in p.text for p in desk.chat.posts if p.kind == "notice")


async def test_auto_reply_follow_up_does_not_reopen_a_closed_ticket(desk: Desk) -> None:
    number = (await desk.receive(mail(message_id="<d@x>"))).ticket_number
    await desk.command(ALICE, f"!close {number}")
    await desk.receive(mail(subject="Out of office", in_reply_to="<d@x>", auto_kind="auto-replied"))
    ticket = await desk.store.run(lambda repo: repo.ticket_by_number(number))
    assert ticket is not None and ticket.state is TicketState.CLOSED_SUCCESSFUL


async def test_raw_bytes_are_kept_with_the_article(desk: Desk) -> None:
    email = mail()
    await desk.receive(email)
    from storage import models

    raw = await desk.store.run(lambda repo: models.RawMessage.select().first().data)
    assert bytes(raw) == email.raw


async def test_forward_of_a_ticket_to_another_queue_makes_a_ticket_there(desk: Desk) -> None:
    """A subject tag of an info ticket must not pull mail sent to press@ into info's room."""
    number = (await desk.receive(mail())).ticket_number
    forwarded = await desk.receive(
        mail(subject=f"Fwd: Re: [Ticket#{number}] Photo question", to="press@example.org")
    )
    assert forwarded.created and forwarded.ticket_number != number
    ticket = await desk.store.run(lambda repo: repo.ticket_by_number(forwarded.ticket_number))
    assert ticket is not None and ticket.queue == "press"


async def test_reply_to_an_unknown_address_still_follows_up(desk: Desk) -> None:
    number = (await desk.receive(mail(message_id="<u@x>"))).ticket_number
    follow = await desk.receive(mail(to="someone@else.org", in_reply_to="<u@x>"))
    assert follow.ticket_number == number


async def test_a_mail_that_cannot_be_stored_is_kept_as_a_ticket_with_the_raw_mail(
    desk: Desk,
) -> None:
    """One bad mail must never stop the mailbox: it becomes a plain ticket instead."""
    from dataclasses import replace

    from bot.mail import AttachmentData

    broken = replace(mail(), attachments=(AttachmentData("x.bin", "a/b", None),))  # type: ignore[arg-type]
    outcome = await desk.receive(broken)
    assert outcome.created
    articles = await desk.store.run(lambda repo: repo.articles(1))
    assert "could not store" in articles[0].body
    assert articles[0].attachments[0].filename == "original.eml"
