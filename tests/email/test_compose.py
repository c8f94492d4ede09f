"""Tests for adapters.email.compose: outgoing replies, and header injection in particular."""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.email.compose import build_message, message_bytes
from adapters.email.parse import parse_email
from bot.mail import Address, OutgoingEmail

WHEN = datetime(2024, 3, 5, 14, 3, tzinfo=UTC)
BASE_HEADERS = {
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Content-Type",
    "Content-Transfer-Encoding",
    "MIME-Version",
}
REPLY = OutgoingEmail(
    sender=Address("help@desk.example", "Help Desk"),
    to=(Address("ada@example.org", "Ada Lovelace"), Address("bob@example.org")),
    subject="Re: Printer on fire",
    text="Hello Ada,\n\nwe are on it.\n",
    message_id="<ticket-42.1@desk.example>",
    in_reply_to="<abc@mail.example.org>",
    references=("<root@example.org>", "<abc@mail.example.org>"),
    extra_headers=(("X-Ticket", "42"),),
)


def reparse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def header_lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def test_reply_has_all_headers_and_round_trips_through_the_parser() -> None:
    data = message_bytes(REPLY, date=WHEN)
    mail = parse_email(data)
    assert mail.sender == REPLY.sender
    assert mail.to == REPLY.to
    assert mail.subject == REPLY.subject
    assert mail.message_id == REPLY.message_id
    assert mail.in_reply_to == (REPLY.in_reply_to,)
    assert mail.references == REPLY.references
    assert mail.date == WHEN
    assert mail.text == "Hello Ada,\n\nwe are on it."
    assert mail.parse_defects == ()
    msg = reparse(data)
    assert set(msg.keys()) == BASE_HEADERS | {"In-Reply-To", "References", "X-Ticket"}
    assert msg["X-Ticket"] == "42"
    assert msg["References"] == "<root@example.org> <abc@mail.example.org>"
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content_charset() == "utf-8"


def test_message_bytes_use_crlf_line_endings() -> None:
    data = message_bytes(REPLY, date=WHEN)
    assert b"\n" not in data.replace(b"\r\n", b"")


def test_human_reply_is_not_marked_auto_submitted() -> None:
    msg = build_message(REPLY, date=WHEN)
    assert "Auto-Submitted" not in msg
    assert parse_email(message_bytes(REPLY, date=WHEN)).auto_kind == ""


def test_auto_submitted_can_be_added_through_extra_headers() -> None:
    out = replace(REPLY, extra_headers=(("Auto-Submitted", "auto-replied"),))
    assert parse_email(message_bytes(out, date=WHEN)).auto_kind == "auto-replied"


def test_date_defaults_to_now_and_naive_dates_are_utc() -> None:
    msg = build_message(REPLY)
    sent = email.utils.parsedate_to_datetime(str(msg["Date"]))
    assert abs(sent - datetime.now(UTC)) < timedelta(minutes=1)
    msg = build_message(REPLY, date=datetime(2024, 1, 2, 3, 4, 5))
    assert email.utils.parsedate_to_datetime(str(msg["Date"])) == datetime(
        2024, 1, 2, 3, 4, 5, tzinfo=UTC
    )
    zoned = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert "+0200" in str(build_message(REPLY, date=zoned)["Date"])


def test_non_ascii_subject_and_names_are_rfc2047_encoded() -> None:
    out = replace(
        REPLY,
        sender=Address("help@desk.example", "Hilfe für Bücher"),
        to=(Address("jurgen@example.de", "Jürgen Müller"),),
        subject="Re: Grüße aus Köln 😀 " + "und noch viel mehr Text " * 5,
        text="Schöne Grüße\n",
    )
    data = message_bytes(out, date=WHEN)
    assert data.isascii()
    assert all(len(line) <= 78 for line in header_lines(data))
    mail = parse_email(data)
    assert mail.sender == out.sender
    assert mail.to == out.to
    assert mail.subject == out.subject.strip()
    assert mail.text == "Schöne Grüße"


def test_names_with_specials_are_quoted() -> None:
    out = replace(REPLY, to=(Address("a@example.org", 'Doe, "John" <evil@x>'),))
    mail = parse_email(message_bytes(out, date=WHEN))
    assert mail.to == out.to


def test_internationalised_domain_is_sent_as_punycode() -> None:
    out = replace(REPLY, to=(Address("info@bücher.example"),))
    assert parse_email(message_bytes(out, date=WHEN)).to == (Address("info@xn--bcher-kva.example"),)


def test_line_breaks_in_subject_and_names_cannot_inject_headers() -> None:
    out = replace(
        REPLY,
        sender=Address("help@desk.example", "Desk\r\nBcc: evil@x.example"),
        to=(Address("ada@example.org", "Ada\nBcc: evil@x.example"),),
        subject="Re: hi\r\nBcc: evil@x.example\r\n\r\nfake body",
        in_reply_to="<abc@mail.example.org>\r\nBcc: evil@x.example",
        references=("<r@x.example>\nBcc: evil@x.example",),
        extra_headers=(("X-Ticket", "42\r\nBcc: evil@x.example"),),
    )
    data = message_bytes(out, date=WHEN)
    msg = reparse(data)
    assert "Bcc" not in msg
    assert set(msg.keys()) == BASE_HEADERS | {"In-Reply-To", "References", "X-Ticket"}
    assert str(msg["Subject"]) == "Re: hi  Bcc: evil@x.example    fake body"
    assert msg.get_content().replace("\r\n", "\n") == REPLY.text
    assert parse_email(data).in_reply_to == ("<abc@mail.example.org>",)


def test_encoded_words_in_subject_and_names_cannot_inject_headers() -> None:
    # The stdlib policy decodes encoded words in values it is handed, and Python 3.11
    # then writes the decoded CR LF out raw. The composer must encode these itself.
    trap = "=?utf-8?q?x=0D=0ABcc:_evil@x.example?="
    out = replace(
        REPLY,
        sender=Address("help@desk.example", trap),
        to=(Address("ada@example.org", "Ada " + trap),),
        subject="Re: " + trap,
        extra_headers=(("X-Ticket", trap),),
    )
    data = message_bytes(out, date=WHEN)
    msg = reparse(data)
    assert "Bcc" not in msg
    assert set(msg.keys()) == BASE_HEADERS | {"In-Reply-To", "References", "X-Ticket"}
    assert str(msg["Subject"]) == "Re: " + trap
    assert msg["To"].addresses[0].display_name == "Ada " + trap
    assert str(msg["X-Ticket"]) == trap


@pytest.mark.parametrize(
    "address",
    [
        "",
        "not an address",
        "missing-domain@",
        "@missing-local.example",
        "a@b.example\r\nBcc: evil@x.example",
        "a@b.example, c@d.example",
        "jürgen@example.de",
        "x" * 300 + "@example.org",
    ],
)
def test_unusable_addresses_raise_value_error(address: str) -> None:
    with pytest.raises(ValueError, match="address"):
        build_message(replace(REPLY, to=(Address(address, "Name"),)))
    with pytest.raises(ValueError, match="From address"):
        build_message(replace(REPLY, sender=Address(address)))


def test_no_recipients_raises_value_error() -> None:
    with pytest.raises(ValueError, match="recipient"):
        build_message(replace(REPLY, to=()))


@pytest.mark.parametrize("message_id", ["", "<>", "<a b@c>", "<a@b>\r\n<c@d>", "<é@x>"])
def test_unusable_message_ids_raise_value_error(message_id: str) -> None:
    with pytest.raises(ValueError, match="Message-ID"):
        build_message(replace(REPLY, message_id=message_id))


def test_bare_message_id_is_bracketed() -> None:
    assert build_message(replace(REPLY, message_id="x@desk.example"))["Message-ID"] == (
        "<x@desk.example>"
    )


@pytest.mark.parametrize("name", ["", "X Bad", "X-Bad:", "X-Bad\r\nBcc", "Bcc", "Subject", "to"])
def test_invalid_or_reserved_extra_header_names_raise_value_error(name: str) -> None:
    with pytest.raises(ValueError, match="header"):
        build_message(replace(REPLY, extra_headers=((name, "value"),)))


def test_empty_in_reply_to_and_references_are_omitted() -> None:
    msg = build_message(replace(REPLY, in_reply_to="", references=()), date=WHEN)
    assert "In-Reply-To" not in msg
    assert "References" not in msg


def test_long_message_ids_are_not_mangled_by_folding() -> None:
    long_id = "<" + "a" * 120 + "@desk.example>"
    out = replace(REPLY, message_id=long_id, in_reply_to=long_id, references=(long_id,) * 3)
    data = message_bytes(out, date=WHEN)
    assert b"=?" not in data
    mail = parse_email(data)
    assert mail.message_id == long_id
    assert mail.in_reply_to == (long_id,)
    assert mail.references == (long_id,)


def test_body_is_utf8_and_survives_long_lines_and_dots() -> None:
    text = "Grüße\r\n.\r\n" + "x" * 500 + "\n"
    data = message_bytes(replace(REPLY, text=text), date=WHEN)
    assert all(len(line) <= 78 for line in data.split(b"\r\n"))
    assert parse_email(data).text == "Grüße\n.\n" + "x" * 500


def test_very_long_words_in_headers_stay_within_the_line_limit() -> None:
    word = "https://example.org/" + "x" * 3000
    out = replace(REPLY, subject="see " + word, extra_headers=(("X-Note", word),))
    data = message_bytes(out, date=WHEN)
    assert all(len(line) <= 998 for line in header_lines(data))
    mail = parse_email(data)
    assert mail.subject == "see " + word
    assert str(reparse(data)["X-Note"]) == word


# Property tests ------------------------------------------------------------------------

_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def normalised(value: str) -> str:
    """What a header value should read back as: controls gone, whitespace collapsed."""
    return " ".join(_CONTROLS.sub(" ", value).split())


@settings(max_examples=200, deadline=None)
@given(subject=st.text(max_size=120), name=st.text(max_size=80), extra=st.text(max_size=80))
def test_arbitrary_subject_and_name_never_break_header_structure(
    subject: str, name: str, extra: str
) -> None:
    out = replace(
        REPLY,
        sender=Address("help@desk.example", name),
        to=(Address("ada@example.org", name),),
        subject=subject,
        extra_headers=(("X-Note", extra),),
    )
    data = message_bytes(out, date=WHEN)
    # Every header line is either a new known header or a folded continuation.
    for line in header_lines(data):
        assert line[:1] in (b" ", b"\t") or line.split(b":", 1)[0].decode() in (
            BASE_HEADERS | {"In-Reply-To", "References", "X-Note"}
        )
    msg = reparse(data)
    assert set(msg.keys()) == BASE_HEADERS | {"In-Reply-To", "References", "X-Note"}
    for key in msg:
        value = str(msg[key])
        assert "\r" not in value and "\n" not in value
    mail = parse_email(data)
    assert mail.subject == normalised(subject)
    assert mail.sender.name == normalised(name)
    assert mail.to == (Address("ada@example.org", normalised(name)),)
    assert normalised(str(msg["X-Note"])) == normalised(extra)
    assert msg.get_content().replace("\r\n", "\n") == REPLY.text
