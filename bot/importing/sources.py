"""Reading an mbox file or a Maildir folder, message by message, as raw bytes.

Only the standard library's :mod:`mailbox`; parsing is the caller's (the mail adapter's
parser). Each message has a key (its position) so it can be read again when written,
and a fallback date for mail without a usable Date header: the mbox ``From_`` line's
time of delivery, or the Maildir file's modification time.
"""

from __future__ import annotations

import mailbox
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

Kind = Literal["mbox", "maildir"]


class SourceError(Exception):
    """PATH cannot be imported from: missing, or neither an mbox nor a Maildir."""


@dataclass(frozen=True)
class RawItem:
    key: int
    origin: str
    data: bytes | None  # None when it could not be read (``error`` says why)
    fallback_date: datetime
    error: str = ""


def source_kind(path: Path) -> Kind:
    """``mbox`` for a file starting with a ``From`` line, ``maildir`` for a folder with
    ``cur/`` and ``new/``; :class:`SourceError` otherwise."""
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    if path.is_dir():
        if (path / "cur").is_dir() and (path / "new").is_dir():
            return "maildir"
        raise SourceError(
            f"{path}: a folder, but not a Maildir (it has no cur/ and new/ folders); "
            "give a Maildir folder or an mbox file"
        )
    try:
        with path.open("rb") as file:
            head = file.read(4096).lstrip(b"\r\n")
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if head.startswith(b"From "):
        return "mbox"
    what = "an empty file" if not head else "a file that does not start with a 'From ' line"
    raise SourceError(f"{path}: neither an mbox file nor a Maildir folder ({what})")


class Source:
    """The messages of one mbox or Maildir, readable by key any number of times."""

    def __init__(self, path: Path, kind: Kind) -> None:
        self.path = path
        self.kind = kind
        self._mtime = _utc(path.stat().st_mtime)
        if kind == "mbox":
            self._mbox = mailbox.mbox(str(path), create=False)
            self._keys: list[str] = list(self._mbox.iterkeys())
        else:
            self._files = [
                f"{sub}/{name}"
                for sub in ("new", "cur")
                for name in sorted(os.listdir(path / sub))
                if not name.startswith(".")
            ]

    @property
    def label(self) -> str:
        return f"{self.kind} {self.path}"

    def __len__(self) -> int:
        return len(self._keys) if self.kind == "mbox" else len(self._files)

    def read(self, key: int) -> RawItem:
        if self.kind == "mbox":
            return self._read_mbox(key)
        return self._read_maildir(key)

    def __iter__(self) -> Iterator[RawItem]:
        for key in range(len(self)):
            yield self.read(key)

    def _read_mbox(self, key: int) -> RawItem:
        origin = f"{self.path.name} message {key + 1}"
        box_key = self._keys[key]
        try:
            with self._mbox.get_file(box_key, from_=True) as file:
                from_line = file.readline()
            data = self._mbox.get_bytes(box_key)
        except (OSError, KeyError) as exc:
            return RawItem(key, origin, None, self._mtime, f"cannot read: {exc}")
        return RawItem(key, origin, data, _from_line_date(from_line) or self._mtime)

    def _read_maildir(self, key: int) -> RawItem:
        name = self._files[key]
        file = self.path / name
        try:
            data = file.read_bytes()
            when = _utc(file.stat().st_mtime)
        except OSError as exc:
            return RawItem(key, name, None, self._mtime, f"cannot read: {exc.strerror or exc}")
        return RawItem(key, name, data, when)

    def close(self) -> None:
        if self.kind == "mbox":
            self._mbox.close()


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def _from_line_date(line: bytes) -> datetime | None:
    """The delivery time of an mbox ``From sender Thu Jan  1 00:00:00 2026`` line (UTC)."""
    words = line.decode("ascii", "replace").split()
    if len(words) < 7:
        return None
    try:
        return datetime.strptime(" ".join(words[2:7]), "%a %b %d %H:%M:%S %Y").replace(tzinfo=UTC)
    except ValueError:
        return None
