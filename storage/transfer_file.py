"""The export file: its format, its values, and reading it back line by line, checked.

A gzip'd stream of JSON lines, so it can be written and read one row at a time and
moved between any two kinds of database: a header line (format version, schema
version, the kind of database it came from, when, each table's number of rows); per
table a section line naming its columns and their kinds, then one JSON array per row;
an end line with the counts again, so a file cut off anywhere is recognised as such.
Bytes are base64, datetimes ISO 8601 in UTC with a ``Z``; the rest is plain JSON.

The database side (which tables, reading and writing them) is :mod:`storage.transfer`.
"""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

FORMAT = "ticketbot-export"
FORMAT_VERSION = 1
#: gzip's level: compressing is most of an export's time (45 of 65 s at level 6 for
#: 300 MiB of mail), and the file is only kept for the move, so the fastest level.
COMPRESS_LEVEL = 1

#: The kinds a column's value can be, and how each is written in the file.
KINDS = ("int", "float", "bool", "text", "bytes", "datetime")


class TransferError(Exception):
    """An export or import failed; what was done before it is said in the message."""


class Refused(TransferError):
    """Nothing was done: the file, the source or the target cannot be used as they are."""


class RowProgress(Protocol):
    """What shows progress (``bot.importing.progress.ProgressBar`` fits)."""

    def advance(self, count: int = 1) -> None: ...

    def finish(self) -> None: ...


ProgressFactory = Callable[[str, int], RowProgress]


class Silent:
    """Progress that shows nothing: for tests, and for the passes that are not shown."""

    def advance(self, count: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass


def silent(label: str, total: int) -> RowProgress:
    """The default progress: none."""
    return Silent()


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    declared: str = field(default="", compare=False)  # the SQL type, as the database says


# --- values in the file ------------------------------------------------------------------


def _naive_utc(value: datetime) -> datetime:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def encode(table: str, column: Column, value: Any, row_id: Any) -> Any:
    """A stored value as it goes into the file; an odd value names where it is."""
    if value is None:
        return None
    kind = column.kind
    try:
        if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind == "float" and isinstance(value, int | float):
            return float(value)
        if kind == "bool" and isinstance(value, bool | int):
            return bool(value)
        if kind == "text" and isinstance(value, str):
            return value
        if kind == "bytes" and isinstance(value, bytes | bytearray | memoryview):
            return base64.b64encode(bytes(value)).decode("ascii")
        if kind == "datetime" and isinstance(value, datetime | str):
            moment = datetime.fromisoformat(value) if isinstance(value, str) else value
            return _naive_utc(moment).isoformat(timespec="microseconds") + "Z"
    except ValueError as exc:
        raise TransferError(
            f"table {table}, row id {row_id}, column {column.name}: cannot read {value!r} "
            f"as {kind} ({exc})"
        ) from None
    raise TransferError(
        f"table {table}, row id {row_id}, column {column.name}: a {type(value).__name__} "
        f"value {str(value)[:40]!r} where the column holds {kind}"
    )


def decode(kind: str, value: Any, sqlite: bool) -> Any:
    """A value from the file as the target database takes it (``ValueError`` if odd)."""
    if value is None:
        return None
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind == "float":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif kind == "bool":
        if isinstance(value, bool):
            return int(value) if sqlite else value
    elif kind == "text":
        if isinstance(value, str):
            if "\x00" in value and not sqlite:
                raise ValueError(f"{value[:40]!r}: PostgreSQL text cannot hold a NUL character")
            return value
    elif kind == "bytes":
        if isinstance(value, str):
            return base64.b64decode(value, validate=True)
    elif kind == "datetime" and isinstance(value, str) and value.endswith("Z"):
        moment = datetime.fromisoformat(value[:-1])
        if moment.tzinfo is None:
            # SQLite: the text peewee writes, so the bot reads it back unchanged
            return str(moment) if sqlite else moment
    raise ValueError(f"{value!r} is not a {kind} value")


def value_size(value: Any) -> int:
    return len(value) if isinstance(value, bytes | str) else 8


def line_writer(stream: gzip.GzipFile) -> Callable[[Any], None]:
    def write(item: Any) -> None:
        stream.write(json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode())
        stream.write(b"\n")

    return write


# --- reading a file ----------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    schema_version: int
    source: str
    created_at: str
    counts: dict[str, int]


@dataclass
class Section:
    name: str
    columns: tuple[Column, ...]
    rows: int


def _lines(path: Path) -> Generator[tuple[int, Any], None, None]:
    """Each line of the file, parsed, with its number; damage names the line."""
    number = 0
    try:
        with gzip.open(path, "rb") as stream:
            for number, line in enumerate(stream, 1):
                try:
                    yield number, json.loads(line)
                except ValueError as exc:
                    raise Refused(f"{path}, line {number}: not JSON ({exc})") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise Refused(
            f"{path}: cannot be read after line {number} ({exc}); the file is damaged or cut off"
        ) from None


def read_header(path: Path) -> Header:
    lines = _lines(path)
    try:
        _, first = next(lines)
    except StopIteration:
        raise Refused(f"{path}: empty file, not a ticketbot export") from None
    finally:
        lines.close()
    if not isinstance(first, dict) or first.get("format") != FORMAT:
        raise Refused(f"{path}: not a ticketbot export (its first line has no format {FORMAT!r})")
    if first.get("format_version") != FORMAT_VERSION:
        raise Refused(
            f"{path}: export format version {first.get('format_version')!r}; this ticketbot "
            f"reads version {FORMAT_VERSION}"
        )
    try:
        return Header(
            int(first["schema_version"]),
            str(first["source"]),
            str(first["created_at"]),
            {str(k): int(v) for k, v in dict(first["tables"]).items()},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise Refused(f"{path}, line 1: header without a valid {exc}") from None


def sections(
    path: Path, sqlite: bool, bar: RowProgress
) -> Iterator[tuple[Section, Iterator[list[Any]]]]:
    """The file's tables in order, each with an iterator over its decoded rows.

    Every line is checked: its shape, each value against its column's kind, and each
    table's row count against its section line, the header and the end line.
    """
    header = read_header(path)
    lines = _lines(path)
    next(lines)
    seen: list[str] = []
    pending: Any = None
    ended = False

    def rows_of(section: Section) -> Iterator[list[Any]]:
        nonlocal pending
        kinds = [c.kind for c in section.columns]
        found = 0
        for number, item in lines:
            if not isinstance(item, list):
                pending = (number, item)
                break
            if len(item) != len(kinds):
                raise Refused(
                    f"{path}, line {number}: {len(item)} values for the "
                    f"{len(kinds)} columns of {section.name}"
                )
            values = []
            for column, value in zip(section.columns, item, strict=True):
                try:
                    values.append(decode(column.kind, value, sqlite))
                except ValueError as exc:
                    raise Refused(
                        f"{path}, line {number}: table {section.name}, column {column.name}: {exc}"
                    ) from None
            found += 1
            bar.advance()
            yield values
        else:
            pending = None
        if found != section.rows:
            raise Refused(
                f"{path}: table {section.name} has {found} rows, its section line says "
                f"{section.rows}"
            )

    try:
        pending = next(lines, None)
        while pending is not None:
            number, item = pending
            if not isinstance(item, dict):
                raise Refused(f"{path}, line {number}: a row outside any table")
            if item.get("end") is True:
                if item.get("tables") != header.counts:
                    raise Refused(
                        f"{path}, line {number}: the end line's counts differ from the header's"
                    )
                if next(lines, None) is not None:
                    raise Refused(f"{path}: lines after the end line")
                ended = True
                break
            section = _section(path, number, item)
            if section.name in seen:
                raise Refused(f"{path}, line {number}: table {section.name} appears twice")
            if header.counts.get(section.name) != section.rows:
                raise Refused(
                    f"{path}, line {number}: table {section.name} has {section.rows} rows, "
                    f"the header says {header.counts.get(section.name)}"
                )
            seen.append(section.name)
            pending = None
            yield section, rows_of(section)
            if pending is None:  # the rows ran to the end of the file
                pending = next(lines, None)
        if not ended:
            raise Refused(f"{path}: no end line; the file is cut off")
        missing = sorted(set(header.counts) - set(seen))
        if missing:
            raise Refused(f"{path}: tables in the header but not in the file: {', '.join(missing)}")
    finally:
        lines.close()


def _section(path: Path, number: int, item: dict[str, Any]) -> Section:
    try:
        columns = tuple(Column(str(name), str(kind)) for name, kind in item["columns"])
        section = Section(str(item["table"]), columns, int(item["rows"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise Refused(
            f"{path}, line {number}: a table's section line without a valid {exc}"
        ) from None
    for column in columns:
        if column.kind not in KINDS:
            raise Refused(
                f"{path}, line {number}: table {section.name}, column {column.name}: unknown "
                f"kind {column.kind!r}"
            )
    return section


@dataclass(frozen=True)
class FileContents:
    """What a full read of a file found: its header, each table's columns, and the
    smallest and largest whole number of each int column (to check the target's widths)."""

    header: Header
    columns: dict[str, tuple[Column, ...]]
    int_range: dict[tuple[str, str], tuple[int, int]]


def check_file(
    path: Path, *, progress: ProgressFactory = silent, sqlite: bool = True
) -> FileContents:
    """Read the whole file once, as the import will, without writing anything."""
    header = read_header(path)
    bar = progress("checking", sum(header.counts.values()))
    columns: dict[str, tuple[Column, ...]] = {}
    int_range: dict[tuple[str, str], tuple[int, int]] = {}
    for section, rows in sections(path, sqlite, bar):
        columns[section.name] = section.columns
        ints = [(i, c.name) for i, c in enumerate(section.columns) if c.kind == "int"]
        low = {name: 0 for _, name in ints}
        high = {name: 0 for _, name in ints}
        for row in rows:
            for i, name in ints:
                value = row[i]
                if value is not None:
                    low[name] = min(low[name], value)
                    high[name] = max(high[name], value)
        for _, name in ints:
            int_range[(section.name, name)] = (low[name], high[name])
    bar.finish()
    return FileContents(header, columns, int_range)
