"""Rendering rules for Discord: no pings, no markup or forged links from email, within limits."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.discord.render import (
    ANSWER_UPLOAD_LIMIT,
    EMBED_LIMIT,
    FILES_PER_MESSAGE,
    MOVED_COLOUR,
    STATE_COLOURS,
    UPLOAD_LIMIT,
    answer_chunks,
    answer_messages,
    answer_uploads,
    article_messages,
    embed_size,
    notice_messages,
    ping_messages,
    safe_filename,
    thread_name,
    ticket_embed,
)
from adapters.discord.text import MESSAGE_LIMIT, cap, clean, cut_raw, dlen, escape, fit
from bot.chat import ArticleView, TicketView
from bot.commands import CommandResult
from bot.domain import TicketState
from bot.files import ResultFile
from bot.mail import AttachmentData
from tests.servers.discord_double import check_message

NUMBER = "2026112310000012"
HOSTILE = (
    "@everyone @here <@123> <@!123456789012345678> <@&456> <#789> "
    "[x](http://evil) [bank](<https://evil.example/login>) ||secret|| **bold**\n"
    "# heading\n> quote\n```code```\n-# small\n1. list\n<t:1700000000:R> </claim:1>"
)


WRAPPED_URL = re.compile(r"<(?:https?|steam|discord)://[^\s<>\[\]\\|`]+>")


def ticket(**changes: str) -> TicketView:
    fields: dict[str, Any] = {
        "number": NUMBER,
        "queue": "support",
        "state": "new",
        "owner": "",
        "requester": "Mallory <mallory@example.org>",
        "subject": "Printer on fire",
        "preview": f"Hello\n{HOSTILE}",
    }
    fields.update(changes)
    return TicketView(created_at=datetime(2026, 11, 23, 10, 0, tzinfo=UTC), **fields)


def article(body: str, *, subject: str = "Help", **changes: object) -> ArticleView:
    fields: dict[str, object] = {
        "kind": "inbound",
        "author": "Mallory <mallory@example.org>",
        "created_at": datetime(2026, 11, 23, 10, 5, tzinfo=UTC),
        "subject": subject,
        "body": body,
    }
    fields.update(changes)
    return ArticleView(**fields)  # type: ignore[arg-type]


def unescaped(text: str, char: str) -> list[int]:
    """Positions of ``char`` not preceded by an (unescaped) backslash."""
    found = []
    for index, c in enumerate(text):
        if c == char:
            slashes = len(text[:index]) - len(text[:index].rstrip("\\"))
            if slashes % 2 == 0:
                found.append(index)
    return found


def assert_inert(text: str) -> None:
    """What no message built from email may contain."""
    assert "@everyone" not in text and "@here" not in text
    assert unescaped(text, "[") == [] and unescaped(text, "]") == []
    assert "||" not in text.replace("\\|", "")
    assert "\u200b" not in text.replace("@\u200b", "")  # only the one escape_mentions adds
    # every "<" that is not escaped opens a wrapped URL (no <@id>, <#id>, <t:..>)
    for index in unescaped(text, "<"):
        assert WRAPPED_URL.match(text, index), text[index:]
    # every URL is wrapped in <...>: no link preview
    outside = WRAPPED_URL.sub("", text)
    assert not re.search(r"(?:https?|steam|discord)://[^\s<>\\\[\]|`]", outside), outside


# --- text ----------------------------------------------------------------------------------


def test_escape_neutralises_mentions_markup_and_forged_links() -> None:
    text = escape(HOSTILE)
    assert_inert(text)
    assert "@\u200beveryone" in text and "@\u200bhere" in text
    assert "\\<@123\\>" in text and "\\<@&456\\>" in text and "\\<#789\\>" in text
    assert "\\[x\\](<http://evil>)" in text
    assert "\\*\\*bold\\*\\*" in text and "\\# heading" in text and "\\> quote" in text
    assert "\\`\\`\\`code\\`\\`\\`" in text and "\\-# small" in text and "1\\. list" in text
    assert "\\|\\|secret\\|\\|" in text


def test_urls_are_wrapped_and_kept_clickable() -> None:
    text = escape("see https://example.org/a_b*c?x=1. and (http://x.org/p_(1)) end")
    assert "<https://example.org/a_b*c?x=1>." in text
    assert "<http://x.org/p_(1)>)" in text
    assert_inert(text)


def test_hidden_text_tricks_are_removed() -> None:
    sneaky = "pay\u200b here\u202e evil\u2066 x\U000e0041\u3164\u00ad\x07 done\r\nnext"
    assert clean(sneaky) == "pay here evil x done\nnext"
    assert "\u202e" not in escape(sneaky)


def test_backslashes_cannot_unescape() -> None:
    text = escape("\\@everyone \\[x](http://evil) \\<@123>")
    assert_inert(text)
    assert escape("http://a.b/c||x||\\") == "<http://a.b/c>\\|\\|x\\|\\|\\\\"


def test_fit_cuts_the_raw_text_never_an_escape() -> None:
    text = fit("*" * 1000, 101)
    assert dlen(text) <= 101 and text.endswith("…")
    assert text[:-1] == "\\*" * 50  # pairs stay whole
    assert fit("short", 10) == "short"


PIECES = st.sampled_from(
    [*"*_~|`\\[]<>()#->.@: 1\n\u200b😀é", "@everyone", "@here", "http://a.b/c_d", "https://", "1. "]
)
EMAILS = st.lists(PIECES, max_size=300).map("".join)


@settings(max_examples=300, deadline=None)
@given(EMAILS)
def test_escaping_at_most_doubles_and_stays_inert(text: str) -> None:
    """The renderer relies on this bound to skip measuring short lines."""
    for line in clean(text).split("\n"):
        escaped = escape(line)
        assert dlen(escaped) <= 2 * dlen(line) + 2
        assert_inert(escaped)


@settings(max_examples=100, deadline=None)
@given(EMAILS, st.integers(min_value=20, max_value=400))
def test_fit_and_cut_stay_within_the_limit(text: str, limit: int) -> None:
    text = clean(text)
    assert dlen(fit(text, limit)) <= limit
    line = text.replace("\n", " ")
    if line:
        head, rest = cut_raw(line, limit)
        assert head and head + rest == line
        assert dlen(escape(head)) <= limit or len(head) == 1


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(["a" * 700, "*" * 900, "word " * 90, "", "@here <#1>"]), max_size=20)
)
def test_every_article_message_fits(lines: list[str]) -> None:
    for message in article_messages(article("\n".join(lines)), NUMBER):
        assert dlen(message.content) <= MESSAGE_LIMIT
        check_message({"content": message.content}, len(message.uploads), creating=True)


def test_cap() -> None:
    assert cap("a" * 5000) == "a" * 2000
    assert dlen(cap("😀" * 1001)) == 2000
    assert cap("short") == "short"


# --- the root embed -----------------------------------------------------------------------


def test_embed_shows_the_ticket_safely() -> None:
    embed = ticket_embed(ticket(owner="Alice @everyone", state="open"))
    data = embed.to_dict()
    assert data["title"] == f"[Ticket#{NUMBER}] Printer on fire"
    fields = {f["name"]: f["value"] for f in data["fields"]}
    assert fields["State"] == "open" and fields["Queue"] == "support"
    assert fields["Owner"] == "Alice @\u200beveryone"
    assert fields["Requester"] == "Mallory \\<mallory@example.org\\>"
    assert data["color"] == 0x3498DB
    assert_inert(data["description"])
    assert "Hello" in data["description"]
    check_message({"embeds": [data]}, 0, creating=True)


def test_unclaimed_and_colour_by_state() -> None:
    new, closed = ticket_embed(ticket()), ticket_embed(ticket(state="closed_successful"))
    assert {f.name: f.value for f in new.fields}["Owner"] == "unclaimed"
    assert new.colour != closed.colour
    assert {f.name: f.value for f in closed.fields}["State"] == "closed successful"


def test_every_state_has_a_colour_and_a_readable_label() -> None:
    assert set(STATE_COLOURS) == {state.value for state in TicketState}
    grey = STATE_COLOURS["closed_successful"]
    assert STATE_COLOURS["closed_unsuccessful"] == STATE_COLOURS["merged"] == grey
    assert STATE_COLOURS["pending_reminder"] == STATE_COLOURS["pending_autoclose"] != grey
    assert STATE_COLOURS["spam"] not in (grey, STATE_COLOURS["new"], STATE_COLOURS["open"])
    for state in TicketState:
        fields = {f.name: f.value for f in ticket_embed(ticket(state=state.value)).fields}
        assert fields["State"] == state.value.replace("_", " ")


def test_priority_tags_pending_and_language_where_set() -> None:
    plain = {f.name for f in ticket_embed(ticket()).fields}
    assert plain == {"State", "Owner", "Queue", "Requester"}
    until = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    view = replace(
        ticket(state="pending_reminder", owner="Alice"),
        priority=5,
        tags=("press", "**vip** @everyone"),
        language="de",
        pending_until=until,
    )
    data = ticket_embed(view).to_dict()
    fields = {f["name"]: f["value"] for f in data["fields"]}
    assert fields["State"] == "pending reminder until 2026-12-01 09:00 UTC"
    stamp = int(until.timestamp())
    assert fields["Pending"] == f"<t:{stamp}:f> (<t:{stamp}:R>)"
    assert fields["Priority"].startswith("5")
    assert fields["Language"] == "de"
    assert fields["Tags"] == "press, \\*\\*vip\\*\\* @\u200beveryone"
    assert data["color"] == STATE_COLOURS["pending_reminder"]
    check_message({"embeds": [data]}, 0, creating=True)


def test_a_moved_ticket_says_where_it_is_now() -> None:
    link = "https://discord.com/channels/1/2"
    view = replace(ticket(state="open", owner="Alice"), moved_to=f"queue info::de: {link}")
    data = ticket_embed(view).to_dict()
    fields = {f["name"]: f["value"] for f in data["fields"]}
    assert fields == {"State": f"moved · now queue info::de: <{link}>"}
    assert "description" not in data and data["color"] == MOVED_COLOUR
    hostile = replace(ticket(), moved_to="[x](http://evil) @everyone")
    assert_inert(ticket_embed(hostile).to_dict()["fields"][0]["value"])


def test_embed_limits_with_huge_fields() -> None:
    huge = ticket(
        subject="S" * 5000,
        requester="R" * 5000,
        owner="O" * 5000,
        queue="Q" * 5000,
        preview="\n".join("<@&1> " * 40 for _ in range(200)),
    )
    embed = ticket_embed(huge)
    data = embed.to_dict()
    assert dlen(data["title"]) <= 256 and data["title"].startswith(f"[Ticket#{NUMBER}] SSS")
    assert all(dlen(f["value"]) <= 1024 for f in data["fields"])
    assert dlen(data.get("description", "")) <= 4096
    assert embed_size(embed) <= EMBED_LIMIT
    check_message({"embeds": [data]}, 0, creating=True)


def test_empty_subject_and_preview() -> None:
    data = ticket_embed(ticket(subject="", preview="")).to_dict()
    assert data["title"].endswith("(no subject)")
    assert "description" not in data


def test_thread_name_is_one_line_within_100() -> None:
    name = thread_name(ticket(subject="line\nbreak\u200b " + "x" * 300))
    assert name.startswith(f"Ticket#{NUMBER} line break ")
    assert len(name) == 100 and "\n" not in name


# --- articles ------------------------------------------------------------------------------


def test_short_article_is_one_message() -> None:
    [message] = article_messages(article(f"Hi,\n\n\n\n{HOSTILE}\n"), NUMBER)
    lines = message.content.split("\n")
    assert lines[0] == "**✉ Email from Mallory \\<mallory@example.org\\>**"
    assert lines[1] == "-# 2026-11-23 10:05 UTC"
    assert lines[2] == "**Subject:** Help"
    assert "\n\n\n" not in message.content  # runs of blank lines collapse
    assert_inert("\n".join(lines[3:]))
    assert message.uploads == ()


def test_medium_article_splits_on_lines_with_part_labels() -> None:
    body = "\n".join(f"line {i} " + "w" * 60 for i in range(70))  # ~4,800 characters
    messages = article_messages(article(body), NUMBER)
    assert 2 <= len(messages) <= 3
    for index, message in enumerate(messages, start=1):
        assert dlen(message.content) <= MESSAGE_LIMIT
        first = message.content.split("\n")[0]
        assert first.endswith(f"(part {index}/{len(messages)})")
    shown = [ln for m in messages for ln in m.content.split("\n") if ln.startswith("line ")]
    assert shown == body.split("\n")  # whole lines, in order, none lost


@pytest.mark.parametrize(
    "body",
    [
        "x" * 50_000,
        ("word " * 20 + "\n") * 500,
        "@everyone [x](http://evil) ||s|| " * 1500,
        "<@&456>" * 7000,
        "😀" * 20_000,
    ],
    ids=["one-line", "many-lines", "hostile", "brackets", "astral"],
)
def test_long_article_becomes_an_excerpt_and_a_text_file(body: str) -> None:
    [message] = article_messages(article(body, subject="S" * 5000), NUMBER)
    assert dlen(message.content) <= MESSAGE_LIMIT
    assert "full text is in the attached file" in message.content
    assert_inert(message.content.split("\n", 1)[1])
    [upload] = message.uploads
    assert upload.filename == f"ticket-{NUMBER}-inbound.txt"
    text = upload.data.decode("utf-8")
    expected = "\n".join(line.rstrip() for line in body.strip("\n").split("\n"))
    assert text.startswith("✉ Email from Mallory <mallory@example.org>\n")
    assert text.endswith(f"\n\n{expected}\n")  # the raw text: a file renders no markdown
    check_message({"content": message.content}, 1, creating=True)


def test_long_single_line_within_three_parts_stays_inline() -> None:
    body = "y" * 3000
    messages = article_messages(article(body), NUMBER)
    assert len(messages) == 2
    assert "".join(m.content.split("\n")[-1] for m in messages) == body


def test_attachments_are_uploaded_in_groups_and_large_ones_listed() -> None:
    files = tuple(AttachmentData(f"f{i}.txt", "text/plain", b"x" * 100) for i in range(12))
    big = AttachmentData("SPOILER_huge.bin", "application/octet-stream", b"0" * (UPLOAD_LIMIT + 1))
    messages = article_messages(article("see files", files=(*files, big)), NUMBER)
    assert [len(m.uploads) for m in messages] == [FILES_PER_MESSAGE, 2]
    assert "12 attachment(s) uploaded" in messages[0].content
    assert "huge.bin" in messages[0].content and "too large" in messages[0].content
    assert all(dlen(m.content) <= MESSAGE_LIMIT for m in messages)


def test_upload_groups_respect_the_size_limit() -> None:
    half = b"h" * (UPLOAD_LIMIT // 2 + 1)
    files = tuple(AttachmentData(f"h{i}.bin", "application/octet-stream", half) for i in range(3))
    messages = article_messages(article("x", files=files), NUMBER)
    assert [len(m.uploads) for m in messages] == [1, 1, 1]
    assert all(sum(len(u.data) for u in m.uploads) <= UPLOAD_LIMIT for m in messages)


def test_attachment_names_without_bytes_are_listed() -> None:
    [message] = article_messages(article("x", attachments=("a.pdf (application/pdf, 3 bytes)",)))
    assert "📎 **Attachments:**" in message.content and "a.pdf" in message.content


def test_reply_heading_and_send_state() -> None:
    reply = article("Thanks", kind="reply", author="Alice", send_state="sent", subject="")
    [message] = article_messages(reply, NUMBER)
    assert message.content.startswith("**↩ Reply by Alice**\n-# 2026-11-23 10:05 UTC · email sent")
    assert "Subject" not in message.content


def test_safe_filename() -> None:
    assert safe_filename("SPOILER_SPOILER_x.png") == "x.png"
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("C:\\evil\\a*b?.txt") == "a_b_.txt"
    assert safe_filename("\u200b") == "attachment"
    long = safe_filename("n" * 300 + ".pdf")
    assert len(long) <= 100 and long.endswith(".pdf")


# --- notices and answers ------------------------------------------------------------------


def test_notice_escapes_display_names() -> None:
    [message] = notice_messages("✋ Claimed by **@everyone** <@&1>")
    assert message.content == "✋ Claimed by \\*\\*@\u200beveryone\\*\\* \\<@&1\\>"


def test_ping_mentions_only_the_given_users_and_escapes_the_text() -> None:
    [message] = ping_messages(f"⏰ Ticket#{NUMBER} waits\n{HOSTILE}", [42, 7, 42])
    first, rest = message.content.split("\n", 1)
    assert first == "🔔 <@42> <@7>"
    assert_inert(rest)
    assert "<@123>" not in rest and "\\<@123\\>" in rest
    [nobody] = ping_messages("2 tickets wait @here", [])
    assert nobody.content == "🔔 2 tickets wait @\u200bhere"


def test_a_long_ping_mentions_in_its_first_part_only() -> None:
    text = "\n".join(f"Ticket#{n} waits <@&1>" for n in range(400))
    messages = ping_messages(text, list(range(10**17, 10**17 + 80)))
    assert len(messages) > 1
    assert messages[0].content.startswith("🔔 <@")
    assert messages[0].content.count("<@") - messages[0].content.count("\\<@") == 50
    for message in messages:
        assert dlen(message.content) <= MESSAGE_LIMIT
    for message in messages[1:]:
        assert_inert(message.content)
    shown = [ln for m in messages for ln in m.content.split("\n") if ln.startswith("Ticket#")]
    assert shown == [f"Ticket#{n} waits \\<@&1\\>" for n in range(400)]


def test_held_and_automatic_articles_use_their_heading() -> None:
    held = article("Hi @everyone", held=True, article_id=77)
    [message] = article_messages(held, NUMBER)
    assert message.content.startswith("**⚠ Email from an unknown sender, Mallory")
    assert "attach 77" in message.content and "newticket 77" in message.content
    assert_inert(message.content)
    [auto] = article_messages(article("We got your mail.", kind="auto_reply"), NUMBER)
    assert auto.content.startswith("**🤖 Automatic acknowledgement sent**")


def test_long_answers_are_split() -> None:
    show = "\n".join(f"- 2026-11-23 inbound Mallory: <@&{i}> line" for i in range(400))
    chunks = answer_chunks(show)
    assert len(chunks) > 1 and all(dlen(c) <= MESSAGE_LIMIT for c in chunks)
    assert all("<@&" not in c.replace("\\<@&", "") for c in chunks)


def test_answer_messages() -> None:
    done = CommandResult(True, "✋ Claimed by Alice", NUMBER, shown_in_thread=True)
    assert answer_messages(done) == ["✋ Claimed by Alice"]
    refused = CommandResult(False, "Sorry, only volunteers of queue support may act.")
    assert answer_messages(refused) == ["Sorry, only volunteers of queue support may act."]


def test_answer_uploads_keep_order_and_limits() -> None:
    png = ResultFile("traffic.png", "image/png", b"\x89PNG" + b"\0" * 96)
    chart = ResultFile("../response times", "image/png", b"\x89PNG" + b"\0" * 96)
    jpeg = ResultFile("photo.jpeg", "image/jpeg", b"\xff\xd8")
    csv = ResultFile("SPOILER_SPOILER_traffic.csv", "text/csv", b"day,new\n")
    uploads, note = answer_uploads((png, chart, jpeg, csv))
    assert [u.filename for u in uploads] == [
        "traffic.png",
        "response times.png",  # an image needs its extension to show inline
        "photo.jpeg",
        "traffic.csv",
    ]
    assert [u.data for u in uploads] == [png.data, chart.data, jpeg.data, csv.data]
    assert note == ""

    many = [ResultFile(f"c{i}.csv", "text/csv", b"1") for i in range(FILES_PER_MESSAGE + 2)]
    uploads, note = answer_uploads(many)
    assert len(uploads) == FILES_PER_MESSAGE
    assert note.splitlines()[1:] == [
        "• c10.csv (text/csv, 1 bytes)",
        "• c11.csv (text/csv, 1 bytes)",
    ]

    # a file too large for what is left is skipped; smaller ones after it still go
    big = ResultFile("big.csv", "text/csv", b"x" * 150)
    uploads, note = answer_uploads((png, big, csv), limit=200)
    assert [u.filename for u in uploads] == ["traffic.png", "traffic.csv"]
    assert note == (
        "📎 Not attached (Discord takes 10 files and 200 bytes per message):\n"
        "• big.csv (text/csv, 150 bytes)"
    )
    # never more than Discord's request limit, whatever the interaction claims
    huge = ResultFile("huge.csv", "text/csv", b"x" * (ANSWER_UPLOAD_LIMIT + 1))
    assert answer_uploads((huge,), limit=10 * ANSWER_UPLOAD_LIMIT)[0] == ()
    assert "25 MB per message" in answer_uploads((huge,), limit=10 * ANSWER_UPLOAD_LIMIT)[1]
