"""Small readers for the deployment files, so their tests need neither Docker, PyYAML nor
systemd: a Dockerfile's instructions, the YAML subset the compose file is written in, a
systemd unit's keys, and an env file."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Instruction:
    name: str  # upper case: FROM, RUN, USER ...
    args: str  # the rest of the line, continuation lines joined
    line: int  # where it starts (1-based)


def dockerfile_instructions(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile, with ``\\`` continuations joined and comments
    (also those between continuation lines) left out, as the Docker builder reads it."""
    found: list[Instruction] = []
    current: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if not current:
            start = number
        if stripped.endswith("\\"):
            current.append(stripped[:-1].strip())
            continue
        current.append(stripped)
        joined = " ".join(part for part in current if part)
        current = []
        name, _, args = joined.partition(" ")
        if not re.fullmatch(r"[A-Za-z]+", name):
            raise ValueError(f"line {start}: not an instruction: {joined!r}")
        found.append(Instruction(name.upper(), args.strip(), start))
    if current:
        raise ValueError("the file ends inside a continued line")
    return found


def exec_form(args: str) -> list[str]:
    """A JSON array argument (``["ticketbot", "run"]``) as a list; ValueError otherwise."""
    value = json.loads(args)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"not an exec-form JSON array of strings: {args}")
    return value


# --- YAML: the subset docker-compose.yml is written in ----------------------------------------


def _strip_comment(line: str) -> str:
    """The line without a trailing comment (a # at the start or after a space, outside quotes)."""
    quote = ""
    i = 0
    while i < len(line):
        char = line[i]
        if quote:
            if quote == '"' and char == "\\":
                i += 2
                continue
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
        i += 1
    return line.rstrip()


def _scalar(text: str, where: int) -> Any:
    text = text.strip()
    if text.startswith(('"', "[", "{")):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {where}: cannot read {text!r}: {exc}") from None
    if text.startswith("'"):
        if not text.endswith("'") or len(text) < 2:
            raise ValueError(f"line {where}: unterminated quote: {text!r}")
        return text[1:-1].replace("''", "'")
    if text.startswith(("&", "*", "!", "|", ">", "%", "@", "`")):
        raise ValueError(f"line {where}: YAML feature outside the subset: {text!r}")
    return text


def parse_yaml_subset(text: str) -> Any:
    """Block mappings, block sequences of scalars, plain, quoted and JSON-style flow scalars,
    comments. Anything else (tabs, anchors, multi-line scalars, a duplicate key, a bad
    indent) is a ValueError: the file is kept to what this reads and YAML reads alike."""
    lines: list[tuple[int, int, str]] = []  # (line number, indent, content)
    for number, raw in enumerate(text.splitlines(), 1):
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise ValueError(f"line {number}: tab in the indentation")
        content = _strip_comment(raw)
        if content.strip():
            lines.append((number, len(content) - len(content.lstrip()), content.strip()))

    def block(i: int, indent: int) -> tuple[Any, int]:
        number, own, content = lines[i]
        if own != indent:
            raise ValueError(f"line {number}: indented {own}, expected {indent}")
        if content.startswith("- ") or content == "-":
            items: list[Any] = []
            while i < len(lines) and lines[i][1] == indent and lines[i][2].startswith("-"):
                number, _, content = lines[i]
                item = content[1:].strip()
                if not item or re.match(r"^[^\"'\[{]*:(\s|$)", item):
                    raise ValueError(f"line {number}: only scalars in sequences here")
                items.append(_scalar(item, number))
                i += 1
            return items, i
        mapping: dict[str, Any] = {}
        while i < len(lines) and lines[i][1] == indent:
            number, _, content = lines[i]
            match = re.match(r'^("[^"]*"|[^\s:][^:]*?)\s*:(?:\s+(.*)|$)', content)
            if match is None:
                raise ValueError(f"line {number}: expected 'key: value', got {content!r}")
            key = match.group(1).strip('"')
            if key in mapping:
                raise ValueError(f"line {number}: duplicate key {key!r}")
            rest = match.group(2)
            i += 1
            if rest:
                mapping[key] = _scalar(rest, number)
            elif i < len(lines) and lines[i][1] > indent:
                mapping[key], i = block(i, lines[i][1])
            else:
                mapping[key] = None
        if i < len(lines) and lines[i][1] > indent:
            raise ValueError(f"line {lines[i][0]}: unexpected indent")
        return mapping, i

    if not lines:
        return None
    value, end = block(0, lines[0][1])
    if end != len(lines):
        raise ValueError(f"line {lines[end][0]}: unexpected dedent or content")
    return value


# --- systemd units and env files ----------------------------------------------------------------


def unit_sections(text: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as section -> key -> every value given, in order (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        if current is None or not sep or not key.strip():
            raise ValueError(f"line {number}: expected Key=value in a section, got {line!r}")
        if value.rstrip().endswith("\\"):
            raise ValueError(f"line {number}: continued lines are not used here")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def env_file(text: str) -> tuple[dict[str, str], set[str]]:
    """``NAME=value`` lines (set), and the names of ``# NAME=`` lines (mentioned, commented)."""
    values: dict[str, str] = {}
    mentioned: set[str] = set()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if match := re.match(r"^#\s*([A-Z][A-Z0-9_]*)=", line):
                mentioned.add(match.group(1))
            continue
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match is None:
            raise ValueError(f"line {number}: expected NAME=value, got {line!r}")
        if match.group(1) in values:
            raise ValueError(f"line {number}: {match.group(1)} given twice")
        values[match.group(1)] = match.group(2)
    return values, mentioned
