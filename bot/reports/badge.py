"""Backlog badges: a small SVG per queue, in the flat style of shields.io, and its JSON.

A badge goes on a team wiki or status page, maybe a public one: it carries a queue
name, a count and an age, nothing about any requester. The JSON also fits shields.io's
"endpoint" badge (``schemaVersion``, ``label``, ``message``, ``color``), for teams that
would rather have shields.io draw it.

Colour by how long the oldest waiting ticket has waited (the reminders' defaults ping
after 4 hours unclaimed and 2 days unanswered, so a day is already late):

* green: nothing waits, or the oldest has waited less than :data:`YELLOW_AFTER` (1 day);
* yellow: from 1 day;
* red: from :data:`RED_AFTER` (3 days).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC
from xml.sax.saxutils import escape

from bot.reports.data import BadgeData
from bot.reports.tables import format_age

YELLOW_AFTER = 24 * 3600
RED_AFTER = 3 * 24 * 3600

#: shields.io's colour names, and the colours it draws them in.
COLOURS = {"brightgreen": "#4c1", "yellow": "#dfb317", "red": "#e05d44"}
LABEL_COLOUR = "#555"

_HEIGHT = 20
_PADDING = 6
# Approximate advance widths of Verdana at 11 px, which shields.io badges use; close
# enough that the text sits centred in its box.
_NARROW = set("fijlrtI!|.,:;'`()[]{} ")
_WIDE = set("mwMW@%")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def colour(badge: BadgeData) -> str:
    """The shields.io colour name for the oldest waiting ticket's age."""
    age = badge.oldest_age_seconds
    if not badge.waiting or age is None or age < YELLOW_AFTER:
        return "brightgreen"
    return "yellow" if age < RED_AFTER else "red"


def message(badge: BadgeData) -> str:
    """``12 waiting · oldest 3d``, or ``0 waiting``."""
    if not badge.waiting:
        return "0 waiting"
    return f"{badge.waiting} waiting · oldest {format_age(badge.oldest_age_seconds)}"


def _text_width(text: str) -> int:
    width = 0.0
    for char in text:
        if char in _NARROW:
            width += 3.8
        elif char in _WIDE:
            width += 10.5
        elif char.isupper():
            width += 7.6
        elif char.isdigit():
            width += 7.0
        elif char == "·":
            width += 4.3
        else:
            width += 6.6
    return round(width)


def _attr(text: str) -> str:
    return escape(text, {'"': "&quot;"})


def badge_svg(badge: BadgeData) -> str:
    """Two boxes, queue name on grey and the count on the colour, as an SVG document."""
    label, value = badge.queue, message(badge)
    fill = COLOURS[colour(badge)]
    left = _text_width(label) + 2 * _PADDING
    right = _text_width(value) + 2 * _PADDING
    total = left + right
    title = f"{label}: {value}"
    text_left, text_right = left / 2, left + right / 2
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="{_HEIGHT}" '
        f'role="img" aria-label="{_attr(title)}">'
        f"<title>{escape(title)}</title>"
        '<linearGradient id="s" x2="0" y2="100%">'
        '<stop offset="0" stop-color="#bbb" stop-opacity=".1"/>'
        '<stop offset="1" stop-opacity=".1"/></linearGradient>'
        f'<clipPath id="r"><rect width="{total}" height="{_HEIGHT}" rx="3" fill="#fff"/>'
        "</clipPath>"
        '<g clip-path="url(#r)">'
        f'<rect width="{left}" height="{_HEIGHT}" fill="{LABEL_COLOUR}"/>'
        f'<rect x="{left}" width="{right}" height="{_HEIGHT}" fill="{fill}"/>'
        f'<rect width="{total}" height="{_HEIGHT}" fill="url(#s)"/></g>'
        '<g fill="#fff" text-anchor="middle" '
        'font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="{text_left:g}" y="15" fill="#010101" fill-opacity=".3">{escape(label)}</text>'
        f'<text x="{text_left:g}" y="14">{escape(label)}</text>'
        f'<text x="{text_right:g}" y="15" fill="#010101" fill-opacity=".3">{escape(value)}</text>'
        f'<text x="{text_right:g}" y="14">{escape(value)}</text>'
        "</g></svg>\n"
    )


def badge_json(badge: BadgeData) -> str:
    """The figures, and the fields of a shields.io endpoint badge."""
    waiting = bool(badge.waiting)
    return (
        json.dumps(
            {
                "queue": badge.queue,
                "waiting": badge.waiting,
                "oldest_age_seconds": badge.oldest_age_seconds if waiting else None,
                "oldest_age": format_age(badge.oldest_age_seconds) if waiting else None,
                "generated_at": badge.generated_at.astimezone(UTC).isoformat(timespec="seconds"),
                "schemaVersion": 1,
                "label": badge.queue,
                "message": message(badge),
                "color": colour(badge),
            },
            ensure_ascii=False,
            indent=2,
        )
        + "\n"
    )


def file_stems(queues: Sequence[str]) -> list[str]:
    """File-safe names, one per queue and all different: ``info::de`` -> ``info--de``.

    Anything but letters, digits, ``.``, ``_`` and ``-`` becomes ``-``, so a name can
    neither leave the folder nor hide as a dot file (nor start with "-"); a clash gets a
    number.
    """
    stems: list[str] = []
    for queue in queues:
        stem = _UNSAFE.sub(lambda m: "-" * min(len(m.group()), 2), queue.replace("::", "--"))
        stem = stem.lstrip(".-") or "queue"  # no dot file, nothing read as an option
        candidate, n = stem, 2
        while candidate in stems:
            candidate, n = f"{stem}-{n}", n + 1
        stems.append(candidate)
    return stems
