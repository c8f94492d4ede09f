"""Rendering rules for Matrix: no pings, no markup from email, every event within size."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import pytest

from adapters.matrix.inbound import (
    Where,
    command_in,
    offered_actions,
    reaction_command,
    reaction_on_notice,
    strip_reply_fallback,
    where,
)
from adapters.matrix.render import (
    ACTIONS_KEY,
    action_hint,
    article_contents,
    matrix_user_ids,
    notice_contents,
    permalink,
    ping_contents,
    reply_relation,
    thread_relation,
    ticket_content,
    ticket_edit_content,
)
from adapters.matrix.split import MAX_BODY_BYTES, MAX_CONTENT_BYTES
from adapters.matrix.text import ZWJ, defang
from bot.chat import ArticleView, TicketView

ALLOWED_TAGS = {"b", "i", "code", "pre", "br", "p", "blockquote", "ul", "li"}
EVENT_LIMIT = 65_536
ROOT = "$root:localhost"
HOSTILE = '<script>alert("x")</script> <a href="https://evil">@room</a> @alice:evil.org &amp;'


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert not attrs, f"we never write attributes, got {tag} {attrs}"
        self.tags.append(tag)


def tags_of(formatted: str) -> set[str]:
    parser = _Tags()
    parser.feed(formatted)
    return set(parser.tags)


def ticket(**changes: str) -> TicketView:
    fields: dict[str, Any] = {
        "number": "2026112310000012",
        "queue": "support",
        "state": "new",
        "owner": "",
        "requester": "Mallory <mallory@example.org>",
        "subject": HOSTILE,
        "preview": f"Hello @room\n{HOSTILE}\nthird line",
    }
    fields.update(changes)
    return TicketView(created_at=datetime(2026, 11, 23, 10, 0, tzinfo=UTC), **fields)


def article(body: str, attachments: tuple[str, ...] = ()) -> ArticleView:
    return ArticleView(
        kind="inbound",
        author="Mallory <mallory@example.org>",
        created_at=datetime(2026, 11, 23, 10, 5, tzinfo=UTC),
        subject=HOSTILE,
        body=body,
        attachments=attachments,
    )


def assert_safe(content: dict[str, object]) -> None:
    """The rules every content the bot sends must follow."""
    assert content["m.mentions"] == {}
    body = str(content["body"])
    assert "@room" not in body.lower()
    assert "@alice" not in body
    assert content["format"] == "org.matrix.custom.html"
    formatted = str(content["formatted_body"])
    assert tags_of(formatted) <= ALLOWED_TAGS
    assert "<script" not in formatted and "<a " not in formatted
    assert "@room" not in formatted.lower()
    size = len(json.dumps(content, ensure_ascii=False).encode())
    assert size <= MAX_CONTENT_BYTES < EVENT_LIMIT


def test_root_message_is_escaped_defanged_and_mentions_nobody() -> None:
    content = ticket_content(ticket())
    assert_safe(content)
    assert content["msgtype"] == "m.text"
    body = content["body"]
    assert body.startswith("🎫 [Ticket#2026112310000012] ")
    assert "new · unclaimed · queue support" in body
    assert "From: Mallory <mallory@example.org>" in body  # email addresses stay intact
    assert f"@{ZWJ}room" in body
    formatted = content["formatted_body"]
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in formatted
    assert "&amp;amp;" in formatted  # an entity in the email is shown, not interpreted
    assert "<blockquote>" in formatted and "third line" in formatted
    assert "m.relates_to" not in content


def test_defang_keeps_addresses_and_breaks_mentions() -> None:
    assert defang("write to alice@example.org") == "write to alice@example.org"
    assert defang("hi @room and @ROOM") == f"hi @{ZWJ}room and @{ZWJ}ROOM"
    assert defang("ping @bob:matrix.org!") == f"ping @{ZWJ}bob:matrix.org!"
    assert defang("<@bob:matrix.org>") == f"<@{ZWJ}bob:matrix.org>"
    assert defang(defang("@room")) == defang("@room")


def test_edit_of_root_uses_m_replace_and_new_content() -> None:
    content = ticket_edit_content(ROOT, ticket(state="open", owner="Vera"))
    assert_safe(content)
    assert content["m.relates_to"] == {"rel_type": "m.replace", "event_id": ROOT}
    new = content["m.new_content"]
    assert_safe(new)
    assert "m.relates_to" not in new
    assert content["body"] == f"* {new['body']}"
    assert content["formatted_body"] == f"* {new['formatted_body']}"
    assert "open · claimed by Vera · queue support" in new["body"]


def test_article_in_thread_shows_heading_time_subject_body_and_attachments() -> None:
    [content] = article_contents(
        article(f"Dear @room,\n{HOSTILE}\nbye", ("<evil>.pdf (application/pdf, 10 bytes)",)),
        thread_relation(ROOT),
    )
    assert_safe(content)
    assert content["m.relates_to"] == {
        "rel_type": "m.thread",
        "event_id": ROOT,
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": ROOT},
    }
    body = content["body"]
    assert body.startswith("✉ Email from Mallory <mallory@example.org>\n2026-11-23 10:05 UTC\n")
    assert "Subject: <script>" in body
    assert "• <evil>.pdf (application/pdf, 10 bytes)" in body
    assert "&lt;evil&gt;.pdf" in content["formatted_body"]
    assert "<pre>" not in content["formatted_body"]


@pytest.mark.parametrize(
    "line",
    [
        "an ordinary line of mail text, nothing special about it at all",
        "<<<\"&&&>>> 'quoted' <b>bold?</b>",  # grows up to six times when escaped
        "€ünïcødé 🎫✉ — ",  # multi-byte characters
    ],
)
def test_200kb_body_is_split_into_labelled_parts_within_the_limits(line: str) -> None:
    lines = [f"{index:05d} {line}" for index in range(200_000 // (len(line) + 6) + 1)]
    body = "\n".join(lines)
    assert len(body.encode()) >= 200_000
    contents = article_contents(article(body), thread_relation(ROOT))
    assert len(contents) > 1
    seen: list[str] = []
    for index, content in enumerate(contents, start=1):
        assert_safe(content)
        assert len(content["body"].encode()) <= MAX_BODY_BYTES
        first = content["body"].split("\n", 1)[0]
        assert first.endswith(f"(part {index}/{len(contents)})")
        assert first.startswith("✉ Email from")
        seen += [ln for ln in content["body"].split("\n") if ln[:5].isdigit()]
    assert seen == lines  # every line once, in order, none cut


def test_a_single_huge_line_is_cut_between_characters() -> None:
    body = "€" * 100_000 + " tail"  # 300 KB without a newline
    contents = article_contents(article(body), None)
    assert len(contents) > 10
    pieces = []
    for content in contents:
        assert_safe(content)
        assert len(content["body"].encode()) <= MAX_BODY_BYTES
        # heading, then (first part only) time, subject and a blank line, then text
        pieces.append(content["body"].split("\n")[-1])
    assert "".join(pieces) == body


def test_long_notice_is_split_and_mentions_nobody() -> None:
    text = "\n".join(f"- @room {HOSTILE} {n}" for n in range(3000))
    contents = notice_contents(text, reply_relation("$cmd:localhost"))
    assert len(contents) > 1
    for content in contents:
        assert_safe(content)
        assert content["msgtype"] == "m.notice"
        assert content["m.relates_to"] == {"m.in_reply_to": {"event_id": "$cmd:localhost"}}
    [short] = notice_contents("✋ Claimed by @vera:example.org", thread_relation(ROOT))
    assert short["body"] == f"✋ Claimed by @{ZWJ}vera:example.org"


def test_lone_surrogates_and_control_characters_cannot_break_an_event() -> None:
    [content] = article_contents(article("bad \udce9 byte\x00\x1b[31m red\r\nnext"), None)
    assert_safe(content)
    assert "\ufffd" in content["body"] or "?" in content["body"]
    assert "\x00" not in content["body"] and "\x1b" not in content["body"]
    assert "\r" not in content["body"]
    json.dumps(content).encode("utf-8")


# --- reading volunteers' messages --------------------------------------------------------------


def test_reply_fallback_is_stripped_before_looking_for_a_command() -> None:
    body = "> <@vera:localhost> 🎫 [Ticket#1] help\n> second\n\n!claim"
    assert strip_reply_fallback(body) == "!claim"
    assert strip_reply_fallback("!note > not a quote") == "!note > not a quote"


def test_thread_and_reply_relations_give_the_thread_ref() -> None:
    thread = {
        "m.relates_to": {
            "rel_type": "m.thread",
            "event_id": ROOT,
            "is_falling_back": True,
            "m.in_reply_to": {"event_id": "$latest"},
        }
    }
    assert where(thread) == Where(ROOT, True)
    assert where({"m.relates_to": {"m.in_reply_to": {"event_id": ROOT}}}) == Where(ROOT, False)
    assert where({}) == Where(None, False)
    parsed = command_in("!reply 2026112310000012 Thanks!", thread)
    assert parsed is not None
    assert (parsed.name, parsed.args, parsed.where) == (
        "reply",
        "2026112310000012 Thanks!",
        Where(ROOT, True),
    )
    assert command_in("just chatting", thread) is None
    edit = {"m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}}
    assert command_in("* !close", edit) is None
    assert command_in("!close", edit) is None


def test_reactions_ignore_variation_selectors_and_skin_tones() -> None:
    assert reaction_command("✋") == "claim"
    assert reaction_command("✋\ufe0f") == "claim"
    assert reaction_command("✋🏽") == "claim"
    assert reaction_command("✅") == "close"
    assert reaction_command("✔") == "close"
    assert reaction_command("✔️") == "close"
    assert reaction_command("👍") is None


# --- pings, actions and links ------------------------------------------------------------------


class _Links(HTMLParser):
    """Collects (href, text) of every <a>; any other tag must carry no attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            assert [name for name, _ in attrs] == ["href"]
            self._href = attrs[0][1]
            self.links.append((self._href or "", ""))
        else:
            assert not attrs, f"unexpected attributes on {tag}: {attrs}"

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            href, text = self.links[-1]
            self.links[-1] = (href, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._href = None


def test_ping_mentions_exactly_the_listed_matrix_users() -> None:
    text = f"Ticket#2026112310000012 waits @room for @eve:evil.org\n{HOSTILE}"
    users = ["@vera:example.org", "discord:1234", "@vera:example.org", "@bob:example.org:8448"]
    users += ["console:alice", "@nocolon", "@room", "@a b:example.org"]
    [content] = ping_contents(text, users, thread_relation(ROOT))
    assert content["msgtype"] == "m.text"  # the push rules never notify for m.notice
    assert content["m.mentions"] == {"user_ids": ["@vera:example.org", "@bob:example.org:8448"]}
    assert "@room" not in json.dumps(content).lower()
    assert content["m.relates_to"] == thread_relation(ROOT)
    first, *rest = content["body"].split("\n")
    assert first == "🔔 @vera:example.org, @bob:example.org:8448"
    body = "\n".join(rest)
    assert f"@{ZWJ}eve:evil.org" in body and "@eve" not in body  # the text pings nobody
    parser = _Links()
    parser.feed(content["formatted_body"])
    assert parser.links == [
        ("https://matrix.to/#/@vera:example.org", "@vera:example.org"),
        ("https://matrix.to/#/@bob:example.org:8448", "@bob:example.org:8448"),
    ]
    formatted = content["formatted_body"]
    assert "<script" not in formatted and "&lt;script&gt;" in formatted
    assert 'href="https://evil"' not in formatted


def test_ping_in_the_room_and_without_matrix_users() -> None:
    [room_wide] = ping_contents("3 tickets wait", ["@vera:example.org"], None)
    assert "m.relates_to" not in room_wide
    assert room_wide["m.mentions"] == {"user_ids": ["@vera:example.org"]}
    [nobody] = ping_contents("3 tickets wait @room", ["discord:1", "console:x"], None)
    assert_safe(nobody)
    assert nobody["msgtype"] == "m.text"


def test_a_long_ping_mentions_only_in_its_first_part_and_fits() -> None:
    text = "\n".join(f"- Ticket#{n} <waits> @room" for n in range(6000))
    users = [f"@volunteer{n}:example.org" for n in range(80)]
    contents = ping_contents(text, users, thread_relation(ROOT))
    assert len(contents) > 1
    assert contents[0]["m.mentions"] == {"user_ids": users[:50]}  # a reminder is not a crowd
    for content in contents[1:]:
        assert_safe(content)
    for content in contents:
        assert len(content["body"].encode()) <= MAX_BODY_BYTES
        assert len(json.dumps(content, ensure_ascii=False).encode()) <= MAX_CONTENT_BYTES
    shown = [ln for c in contents for ln in c["body"].split("\n") if ln.startswith("- Ticket#")]
    assert len(shown) == 6000


def test_notice_actions_say_how_to_give_them() -> None:
    [content] = notice_contents(
        "✉ Reply by Vera goes out in 10 s.", thread_relation(ROOT), ["undo"]
    )
    assert_safe(content)
    assert content["body"] == (
        "✉ Reply by Vera goes out in 10 s.\n"
        "(send !undo in this thread, or react ↩️ to this message, to stop it)"
    )
    [other] = notice_contents("x", None, ["show", "<b>bad</b>"])
    assert other["body"] == "x\n(send !show in this thread)"
    assert action_hint([]) == ""


def test_permalinks_quote_the_ids() -> None:
    assert permalink("!abc:example.org", "$ev-_1", "example.org") == (
        "https://matrix.to/#/!abc%3Aexample.org/$ev-_1?via=example.org"
    )
    assert permalink("#help:example.org", "$ev/1") == (
        "https://matrix.to/#/%23help%3Aexample.org/$ev%2F1"
    )
    assert matrix_user_ids(["discord:1", "@a:b.c", "@a:b.c", "@x:[::1]:8448"]) == [
        "@a:b.c",
        "@x:[::1]:8448",
    ]


def test_a_draft_notice_offers_approve_and_names_it_in_its_content() -> None:
    text = "📝 Draft reply by Tom (trainee) waits for a volunteer of info."
    [content] = notice_contents(text, thread_relation(ROOT), ["approve"])
    assert_safe(content)
    assert content["body"] == (
        f"{text}\n(send !approve in this thread, or react ✅ to this message, to send it)"
    )
    assert content[ACTIONS_KEY] == ["approve"]
    assert offered_actions(content) == ("approve",)
    # long notices carry the marker on every part; plain answers carry none
    parts = notice_contents("line\n" * 20_000, thread_relation(ROOT), ["approve", "approve"])
    assert len(parts) > 1
    assert all(part[ACTIONS_KEY] == ["approve"] for part in parts)
    [answer] = notice_contents("Claimed.", reply_relation("$cmd:localhost"))
    assert ACTIONS_KEY not in answer
    assert offered_actions(answer) == ()
    assert offered_actions({ACTIONS_KEY: "approve"}) == ()  # not a list: nothing offered
    assert offered_actions({ACTIONS_KEY: ["approve", 3]}) == ("approve",)


def test_a_check_mark_approves_on_a_draft_notice_and_closes_elsewhere() -> None:
    assert reaction_on_notice("close", ("approve",)) == "approve"
    assert reaction_on_notice(str(reaction_command("✔️")), ("approve",)) == "approve"
    assert reaction_on_notice("close", ()) == "close"
    assert reaction_on_notice("close", ("undo",)) == "close"
    assert reaction_on_notice("claim", ("approve",)) == "claim"
    assert reaction_on_notice("undo", ("approve", "undo")) == "undo"
