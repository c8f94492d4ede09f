"""Parsing a very large mail in a child process, so the bot's own process stays responsive.

A 50 MB mail takes seconds of pure-Python parsing and hundreds of megabytes of short-lived
objects. In a worker thread it still holds the interpreter lock in long stretches (and
the garbage collector's passes over those objects run there, holding it too), so the
event loop, and with it every chat command and the Matrix sync, stands still for a
second and more on a busy machine. In a child process it cannot: the bot only writes
the bytes to a pipe and reads back the parsed mail, without its raw bytes (which the
bot already has), so the answer is small.

    python -m adapters.email.parse_worker MAX_ATTACHMENT_BYTES MAX_TOTAL_BYTES < mail.eml

writes the pickled :class:`bot.mail.InboundEmail` (with ``raw=b""``) to standard output.
"""

from __future__ import annotations

import asyncio
import dataclasses
import pickle
import sys

from adapters.email.parse import parse_email
from bot.mail import InboundEmail


class ChildParseFailed(Exception):
    """The child process died or answered nothing usable (the caller parses in a thread)."""


async def parse_in_child(
    raw: bytes, max_attachment_bytes: int, max_total_attachment_bytes: int
) -> InboundEmail:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "adapters.email.parse_worker",
        str(max_attachment_bytes),
        str(max_total_attachment_bytes),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await process.communicate(raw)
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    if process.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise ChildParseFailed(f"exit status {process.returncode}: {tail[0]}")
    try:
        parsed = pickle.loads(out)  # our own child's answer, not the mail's bytes
    except Exception as exc:
        raise ChildParseFailed(f"unreadable answer: {exc}") from exc
    if not isinstance(parsed, InboundEmail):
        raise ChildParseFailed(f"unexpected answer of type {type(parsed).__name__}")
    return dataclasses.replace(parsed, raw=raw)


def main() -> int:
    max_attachment, max_total = (int(value) for value in sys.argv[1:3])
    raw = sys.stdin.buffer.read()
    parsed = parse_email(
        raw, max_attachment_bytes=max_attachment, max_total_attachment_bytes=max_total
    )
    pickle.dump(dataclasses.replace(parsed, raw=b""), sys.stdout.buffer, protocol=5)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
