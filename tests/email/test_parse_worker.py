"""A very large mail is parsed in a child process: the same result as parsing it here."""

from __future__ import annotations

import dataclasses

import pytest

from adapters.email.parse import parse_email
from adapters.email.parse_worker import ChildParseFailed, parse_in_child

RAW = (
    b"From: Maria <maria@example.net>\r\nTo: info@example.org\r\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
    b"Message-ID: <child@example.net>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHallo, see the files.\r\n"
    b'--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="a.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\n" + b"JVBERi0xLjQK\r\n" * 10 + b"--b\r\n"
    b'Content-Type: video/mp4\r\nContent-Disposition: attachment; filename="big.mp4"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\n"
    + b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n" * 40_000
    + b"--b--\r\n"
)


async def test_the_child_parses_exactly_as_this_process_does() -> None:
    here = parse_email(RAW, max_attachment_bytes=500_000, max_total_attachment_bytes=1_000_000)
    there = await parse_in_child(RAW, 500_000, 1_000_000)
    assert there == here
    assert there.raw == RAW, "the raw bytes are the caller's, not sent back"
    assert [a.filename for a in there.attachments] == ["a.pdf"]
    assert there.dropped_attachments and "big.mp4" in there.dropped_attachments[0]
    assert dataclasses.replace(there, raw=b"") != here


async def test_a_child_that_fails_is_reported_not_hidden() -> None:
    with pytest.raises(ChildParseFailed, match="exit status"):
        await parse_in_child(RAW, -1, "not a number")  # type: ignore[arg-type]
