"""A flood from one sender is grouped into one ticket: nothing lost, the room stays usable."""

from __future__ import annotations

from pathlib import Path

from bot.domain import TicketState
from tests.core.conftest import ALICE, mail, make_desk

FLOOD = {
    "flood": {"threshold": 5, "window": "1h", "notice_every": 10},
    "queue": [
        {
            "name": "info",
            "addresses": ["info@example.org"],
            "matrix_room": "!info:example.org",
            "volunteers": [ALICE.user_id],
            "default": True,
            "console": False,
            "autoresponse_new": "Received: {ticket_number}",
        }
    ],
}


async def test_a_flood_is_grouped_and_the_rest_of_the_queue_still_posts(tmp_path: Path) -> None:
    desk = await make_desk(tmp_path, extra=FLOOD)
    try:
        outcomes = []
        for index in range(30):
            outcomes.append(await desk.receive(mail(f"Spam {index}", sender="flood@example.com")))
            if index == 15:
                real = await desk.receive(mail("A real question", sender="maria@example.net"))
        await desk.flush()
        created = [o for o in outcomes if o.created]
        assert len(created) == 6, "five tickets, then the one the flood is grouped into"
        flood_number = created[-1].ticket_number
        assert all(o.ticket_number == flood_number for o in outcomes[6:])
        flood = await desk.store.run(lambda repo: repo.ticket_by_number(flood_number))
        assert flood is not None and "flood" in flood.tags
        articles = await desk.store.run(lambda repo: repo.article_count(flood.id or 0))
        assert articles == 25, "every mail is kept"
        roots = [p for p in desk.chat.posts if p.kind == "ticket"]
        assert len(roots) == 7, "six flood roots and the real one; no post per grouped mail"
        assert [p for p in roots if p.ticket.number == real.ticket_number]
        grouped_posts = [p for p in desk.chat.posts if p.kind == "article"]
        assert grouped_posts == []
        notices = desk.chat.texts("notice")
        assert any("grouped in this ticket, not posted one by one" in t for t in notices)
        assert sum("mails grouped in this ticket so far" in t for t in notices) == 2  # 10, 20
        acks = [m for m in desk.sender.sent if m.to[0].email == "flood@example.com"]
        assert len(acks) == 3, "acknowledgements stop at the daily limit, none for the flood"
    finally:
        await desk.store.close()


async def test_after_the_window_a_sender_gets_tickets_again(tmp_path: Path) -> None:
    desk = await make_desk(tmp_path, extra=FLOOD)
    try:
        for index in range(8):
            await desk.receive(mail(f"Burst {index}", sender="busy@example.com"))
        desk.clock.advance(2 * 3600)
        later = await desk.receive(mail("Next day question", sender="busy@example.com"))
        assert later.created
    finally:
        await desk.store.close()


async def test_a_flood_ticket_marked_spam_takes_further_mail_silently(tmp_path: Path) -> None:
    desk = await make_desk(tmp_path, extra=FLOOD)
    try:
        outcomes = [
            await desk.receive(mail(f"Buy {i}", sender="flood@example.com")) for i in range(7)
        ]
        flood_number = outcomes[5].ticket_number
        assert (await desk.command(ALICE, f"!spam {flood_number}")).ok
        await desk.flush()
        before = len(desk.chat.posts)
        for index in range(20):
            await desk.receive(mail(f"More {index}", sender="flood@example.com"))
        await desk.flush()
        assert len(desk.chat.posts) == before
        flood = await desk.store.run(lambda repo: repo.ticket_by_number(flood_number))
        assert flood is not None and flood.state is TicketState.SPAM
    finally:
        await desk.store.close()


async def test_a_real_ticket_is_posted_before_the_floods_backlog(tmp_path: Path) -> None:
    """The posts still waiting for a flooding sender's tickets go after everyone else's."""
    desk = await make_desk(tmp_path, extra=FLOOD)
    try:
        for index in range(8):  # five tickets, the flood's own, two grouped: nothing posted yet
            await desk.receive(mail(f"Spam {index}", sender="flood@example.com"))
        real = await desk.receive(mail("A real question", sender="maria@example.net"))
        await desk.flush()
        roots = [p.ticket.number for p in desk.chat.posts if p.kind == "ticket"]
        assert roots[0] == real.ticket_number, roots
        assert len(roots) == 7, "the flood's six are still all posted, after it"
        flood_roots = roots[1:]
        assert flood_roots == sorted(flood_roots), "in their own order"
    finally:
        await desk.store.close()
