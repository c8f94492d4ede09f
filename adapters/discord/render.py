"""Turning the core's ticket and article views into Discord embeds and messages.

Pure functions (no client), so the limits and the safety rules can be tested alone.
Discord rejects, rather than truncates, anything over its limits, and the outbox
would retry such a post forever; so every piece is measured before it is sent:

* message content: 2,000 characters;
* embed: title 256, description 4,096, field value 1,024, and 6,000 in all;
* uploads: at most 10 files per message; we keep each message's files within
  :data:`UPLOAD_LIMIT` (Discord's smallest per-request limit for bots).

Every piece of email text goes through :func:`adapters.discord.text.escape` (or
:func:`~adapters.discord.text.fit`); only the bold headings and labels are ours, and
the ``<@id>`` mentions a ping (:func:`ping_messages`) starts with.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import discord

from adapters.discord.text import (
    MESSAGE_LIMIT,
    clean,
    cut_raw,
    dlen,
    escape,
    fit,
    one_line,
)
from bot.chat import ArticleView, TicketView
from bot.commands import CommandResult
from bot.domain import DEFAULT_PRIORITY
from bot.files import ResultFile
from bot.mail import AttachmentData

TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
FIELD_LIMIT = 1024
EMBED_LIMIT = 6000
THREAD_NAME_LIMIT = 100
#: Bytes of uploads per message (and so the largest single file we upload).
UPLOAD_LIMIT = 8 * 1024 * 1024
FILES_PER_MESSAGE = 10
#: Most bytes of files on one answer to a command: Discord's request limit (25 MiB); the
#: interaction's own, usually smaller, limit applies when it is known.
ANSWER_UPLOAD_LIMIT = 25 * 1024 * 1024
#: An article needing more messages than this is attached as a .txt file instead.
MAX_PARTS = 3
#: ... and so is one whose text is longer than this, however it would split.
MAX_INLINE_CHARS = 8000
#: How much of an attached article is still shown in the message itself.
EXCERPT_CHARS = 1000
#: Longest heading, subject or name shown (raw characters before escaping).
HEADER_CHARS = 300
ATTACHMENTS_LISTED = 25
#: Preview lines in the root embed; the core already cuts each to 200 characters.
PREVIEW_LINES = 12

_GREY, _AMBER = 0x95A5A6, 0xF1C40F
STATE_COLOURS = {
    "new": 0xE67E22,
    "open": 0x3498DB,
    "pending_reminder": _AMBER,
    "pending_autoclose": _AMBER,
    "closed_successful": _GREY,
    "closed_unsuccessful": _GREY,
    "merged": _GREY,
    "spam": 0x23272A,
}
#: The old root of a moved (or merged) ticket.
MOVED_COLOUR = _GREY
#: Most users one ping names (each ``<@id>`` is at most 23 characters).
MAX_PINGED = 50
PING_MARK = "🔔"
_WIDEST_LABEL = " (part 99/99)"


@dataclass(frozen=True)
class Upload:
    """A file to attach, already given a safe name."""

    filename: str
    data: bytes


@dataclass(frozen=True)
class OutMessage:
    """One message to send: ``content`` within :data:`MESSAGE_LIMIT`, and its uploads."""

    content: str
    uploads: tuple[Upload, ...] = ()


# --- the root message ---------------------------------------------------------------------


def ticket_embed(ticket: TicketView) -> discord.Embed:
    """The ticket's root message: headline, state, owner, queue, requester and a preview."""
    prefix = f"[Ticket#{ticket.number}] "
    title = prefix + fit(one_line(ticket.subject) or "(no subject)", TITLE_LIMIT - dlen(prefix))
    created = ticket.created_at
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    if ticket.moved_to:
        return _moved_embed(ticket, title, created)
    embed = discord.Embed(
        title=title,
        colour=STATE_COLOURS.get(ticket.state, 0x5865F2),
        timestamp=created,
    )
    owner = fit(one_line(ticket.owner), HEADER_CHARS) if ticket.owner else "unclaimed"
    fields = [
        ("State", fit(one_line(ticket.state_label), HEADER_CHARS), True),
        ("Owner", owner, True),
        ("Queue", fit(one_line(ticket.queue), HEADER_CHARS), True),
    ]
    if ticket.priority != DEFAULT_PRIORITY:
        fields.append(("Priority", f"{ticket.priority} (5 is most urgent)", True))
    if ticket.pending_until is not None and ticket.state.startswith("pending"):
        stamp = int(_utc(ticket.pending_until).timestamp())
        fields.append(("Pending", f"<t:{stamp}:f> (<t:{stamp}:R>)", True))
    if ticket.language:
        fields.append(("Language", fit(one_line(ticket.language), HEADER_CHARS), True))
    if ticket.tags:
        fields.append(("Tags", fit(one_line(", ".join(ticket.tags)), HEADER_CHARS), True))
    fields.append(("Requester", fit(one_line(ticket.requester), FIELD_LIMIT), False))
    for name, value, inline in fields:
        embed.add_field(name=name, value=value or "—", inline=inline)
    footer = "Buttons below, or react ✋ to claim and ✅ to close. Details in the thread."
    embed.set_footer(text=footer)
    used = embed_size(embed)
    lines = [line for line in ticket.preview.splitlines() if line.strip()][:PREVIEW_LINES]
    room = min(DESCRIPTION_LIMIT, EMBED_LIMIT - used)
    if lines and room > 0:
        embed.description = fit("\n".join(lines), room)
    return embed


def _moved_embed(ticket: TicketView, title: str, created: datetime) -> discord.Embed:
    """The old root of a moved or merged ticket: where it is now, and nothing to click."""
    embed = discord.Embed(title=title, colour=MOVED_COLOUR, timestamp=created)
    moved = fit(one_line(f"moved · now {ticket.moved_to}"), FIELD_LIMIT)
    embed.add_field(name="State", value=moved, inline=False)
    embed.set_footer(text="This ticket lives on elsewhere; its thread here is history.")
    return embed


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def embed_size(embed: discord.Embed) -> int:
    """Characters counted against the 6,000 per embed, as Discord counts them."""
    texts = [embed.title or "", embed.description or "", embed.footer.text or ""]
    texts.append(embed.author.name or "")
    for field in embed.fields:
        texts += [field.name or "", field.value or ""]
    return sum(dlen(text) for text in texts)


def thread_name(ticket: TicketView) -> str:
    """The thread's name; plain text in Discord (no markdown, no mentions), but one line."""
    name = one_line(f"Ticket#{ticket.number} {ticket.subject or '(no subject)'}")
    return name[:THREAD_NAME_LIMIT]


# --- articles and notices -------------------------------------------------------------------


def article_messages(article: ArticleView, number: str = "") -> list[OutMessage]:
    """One article as messages: a heading line, time, subject, body, then the attachments.

    A long body is split into "(part i/n)" messages; one that would need more than
    :data:`MAX_PARTS` of them, or is longer than :data:`MAX_INLINE_CHARS`, is
    attached as a .txt file with an excerpt shown, so a long email cannot flood the
    thread.
    """
    heading = f"**{fit(one_line(article.heading), HEADER_CHARS)}**"
    intro = [_meta_line(article)]
    if article.subject:
        intro.append(f"**Subject:** {fit(one_line(article.subject), HEADER_CHARS)}")
    body = _body_lines(article.body)
    uploads, listed = _attachments(article)
    tail = _attachment_lines(article, uploads, listed)
    raw_length = sum(len(line) + 1 for line in body)

    parts: list[list[str]] = []
    if raw_length <= MAX_INLINE_CHARS:
        parts = _pack([*intro, ""], body, tail, _line_budget(heading))
    if parts and len(parts) <= MAX_PARTS:
        messages = _label(heading, parts)
    else:
        messages = [_with_text_file(article, number, heading, intro, body, tail)]
    return _attach(messages, uploads)


def notice_messages(text: str) -> list[OutMessage]:
    """A line from the bot (claimed by, closed by); the names in it are users' and escaped."""
    budget = _line_budget("-#")
    parts = _pack((), _body_lines(text), (), budget)
    if len(parts) == 1:
        return [OutMessage("\n".join(parts[0]))]
    return _label("-#", parts)


def ping_messages(text: str, user_ids: Sequence[int]) -> list[OutMessage]:
    """A reminder that mentions ``user_ids``: ``🔔 <@1> <@2>`` then the text, escaped.

    The mentions are ours and are the only thing that can ping (the sender passes an
    ``AllowedMentions`` naming exactly these users); the text is escaped like a
    notice. A text too long for one message continues in parts mentioning nobody.
    """
    ids = list(dict.fromkeys(user_ids))[:MAX_PINGED]
    if not ids:
        return notice_messages(f"{PING_MARK} {text}")
    mentions = f"{PING_MARK} " + " ".join(f"<@{user}>" for user in ids)
    parts = _pack((), _body_lines(text), (), _line_budget(f"{mentions}\n-#"))
    if len(parts) == 1:
        return [OutMessage(f"{mentions}\n" + "\n".join(parts[0]))]
    labelled = _label("-#", parts)
    return [OutMessage(f"{mentions}\n{labelled[0].content}"), *labelled[1:]]


def answer_chunks(text: str) -> list[str]:
    """An answer to a volunteer's command (help, show, a refusal) as messages within limits.

    ``show`` repeats ticket text, so this escapes everything too.
    """
    parts = _pack((), _body_lines(text), (), MESSAGE_LIMIT)
    return ["\n".join(part) for part in parts] or ["(nothing)"]


def answer_messages(result: CommandResult) -> list[str]:
    """What a volunteer sees (ephemerally) after a command.

    A refusal in full; a short "done" when the thread already shows what happened;
    ``show`` and ``help`` output in full, escaped, over several messages if long.
    """
    if result.ok and result.shown_in_thread:
        return [confirmation(result.message)]
    return answer_chunks(result.message)


def answer_uploads(
    files: Sequence[ResultFile], limit: int = ANSWER_UPLOAD_LIMIT
) -> tuple[tuple[Upload, ...], str]:
    """The files of a command's answer (a chart, a CSV) that go on its message, and a note
    naming the others ("" when all fit).

    One message takes at most :data:`FILES_PER_MESSAGE` files and ``limit`` bytes in all
    (the interaction says how much its server allows; never more than
    :data:`ANSWER_UPLOAD_LIMIT`, Discord's request limit). Files are taken in the core's
    order, so the chart it lists first is the one shown. An image keeps an image
    extension, which is what makes Discord show it inline.
    """
    limit = min(limit, ANSWER_UPLOAD_LIMIT)
    uploads: list[Upload] = []
    left_out: list[str] = []
    size = 0
    for file in files:
        if len(uploads) < FILES_PER_MESSAGE and size + len(file.data) <= limit:
            uploads.append(Upload(_result_filename(file), file.data))
            size += len(file.data)
        else:
            left_out.append(
                f"{one_line(file.name)} ({file.content_type}, {len(file.data):,} bytes)"
            )
    if not left_out:
        return tuple(uploads), ""
    why = f"Discord takes {FILES_PER_MESSAGE} files and {_size(limit)} per message"
    lines = [f"📎 Not attached ({why}):"]
    lines += [f"• {name}" for name in left_out[:ATTACHMENTS_LISTED]]
    if len(left_out) > ATTACHMENTS_LISTED:
        lines.append(f"… and {len(left_out) - ATTACHMENTS_LISTED} more")
    return tuple(uploads), "\n".join(lines)


def _size(count: int) -> str:
    if count >= 1024 * 1024:
        return f"{count / 1024 / 1024:.0f} MB"
    if count >= 1024:
        return f"{count / 1024:.0f} KB"
    return f"{count} bytes"


_IMAGE_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg"}


def _result_filename(file: ResultFile) -> str:
    name = safe_filename(file.name)
    extension = _IMAGE_EXTENSIONS.get(file.content_type)
    if extension and not name.lower().endswith((extension, ".jpeg")):
        name = name[: 100 - len(extension)] + extension
    return name


def confirmation(text: str) -> str:
    """A short ephemeral "done" line for a command whose result the thread already shows."""
    first = next((line for line in text.splitlines() if line.strip()), "Done.")
    return fit(one_line(first), 300)


# --- internals -----------------------------------------------------------------------------


def _meta_line(article: ArticleView) -> str:
    when = article.created_at
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    meta = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if article.send_state:
        meta += f" · email {escape(one_line(article.send_state))}"
    return f"-# {meta}"


def _body_lines(text: str) -> list[str]:
    """Cleaned raw lines, without leading/trailing blank lines or runs of blank lines."""
    lines: list[str] = []
    for line in clean(text).strip("\n").split("\n"):
        line = line.rstrip()
        if line or (lines and lines[-1]):
            lines.append(line)
    while lines and not lines[-1]:
        lines.pop()
    return lines or [""]


def _first_lines(lines: Sequence[str], chars: int) -> list[str]:
    """The first lines holding at least ``chars`` characters: all an excerpt can show."""
    taken: list[str] = []
    for line in lines:
        taken.append(line[: chars + 1])  # escaping never shortens: more cannot be shown
        chars -= len(line) + 1
        if chars < 0:
            break
    return taken


def _line_budget(heading: str) -> int:
    """Room for the lines of one message under the heading and the widest part label."""
    return MESSAGE_LIMIT - dlen(heading) - dlen(_WIDEST_LABEL) - 1


class _Packer:
    """Fills messages of at most ``budget`` characters with lines, in order.

    Rendered lines (ours) are added as they are. Raw lines (email) are escaped; one
    too long for any message fills the rest of the current message (when a fair
    amount is left) and continues over as many messages as it takes, cut between
    words where possible and never inside an escape.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.parts: list[list[str]] = []
        self._current: list[str] = []
        self._used = 0

    def room(self) -> int:
        return self.budget - self._used - (1 if self._current else 0)

    def add(self, rendered: str) -> None:
        if self._current and dlen(rendered) > self.room():
            self.flush()
        self._used += dlen(rendered) + (1 if self._current else 0)
        self._current.append(rendered)

    def add_raw(self, line: str) -> None:
        while not self._fits(line, self.budget):
            if self._current and self.room() < self.budget // 4:
                self.flush()
            head, line = cut_raw(line, self.room())
            self.add(escape(head))
            self.flush()
        self.add(escape(line))

    def flush(self) -> None:
        if self._current:
            self.parts.append(self._current)
        self._current, self._used = [], 0

    def finish(self) -> list[list[str]]:
        self.flush()
        return self.parts

    @staticmethod
    def _fits(line: str, room: int) -> bool:
        # Escaping at most doubles a text (one backslash per character, "<>" per URL),
        # and never shortens it: most lines need no measuring, long ones stay cheap.
        if 2 * dlen(line) + 2 <= room:
            return True
        return dlen(line) <= room and dlen(escape(line)) <= room


def _pack(
    head: Sequence[str], raw: Sequence[str], tail: Sequence[str], budget: int
) -> list[list[str]]:
    """Our rendered ``head`` lines, the email's ``raw`` lines, our ``tail``: in chunks."""
    packer = _Packer(budget)
    for line in head:
        packer.add(line)
    for line in raw:
        packer.add_raw(line)
    for line in tail:
        packer.add(line)
    return packer.finish()


def _label(heading: str, parts: Sequence[Sequence[str]]) -> list[OutMessage]:
    if len(parts) == 1:
        return [OutMessage(f"{heading}\n" + "\n".join(parts[0]))]
    total = len(parts)
    return [
        OutMessage(f"{heading} (part {index}/{total})\n" + "\n".join(part))
        for index, part in enumerate(parts, start=1)
    ]


def _with_text_file(
    article: ArticleView,
    number: str,
    heading: str,
    intro: Sequence[str],
    body: Sequence[str],
    tail: Sequence[str],
) -> OutMessage:
    """A long article: an excerpt in the message, the whole text as an attached .txt file.

    A text file is shown as plain text by Discord: no markdown, no mentions, no
    previews, so it carries the raw (cleaned) text.
    """
    text = "\n".join(body)
    note = f"*… {len(text):,} characters in all: the full text is in the attached file.*"
    budget = _line_budget(heading) - sum(dlen(x) + 1 for x in (*intro, "", note, *tail))
    room = max(min(budget, EXCERPT_CHARS), 1)
    excerpt = (_pack((), _first_lines(body, room), (), room) or [[]])[0]
    content = "\n".join([heading, *intro, "", *excerpt, note, *tail])
    header = [one_line(article.heading), _meta_line(article).removeprefix("-# ")]
    if article.subject:
        header.append(f"Subject: {one_line(article.subject)}")
    data = "\n".join([*header, "", text, ""]).encode("utf-8")
    if len(data) > UPLOAD_LIMIT:
        data = data[: UPLOAD_LIMIT - 100].decode("utf-8", "ignore").encode("utf-8")
        data += b"\n[... cut: the text is longer than Discord accepts in one file]\n"
    name = f"ticket-{number}-{article.kind}.txt" if number else f"{article.kind}.txt"
    return OutMessage(content, (Upload(safe_filename(name), data),))


def _attachments(article: ArticleView) -> tuple[list[Upload], list[str]]:
    """Which files are uploaded, and which are only listed by name (too large, or no bytes)."""
    if not article.files:
        return [], [one_line(name) for name in article.attachments]
    uploads: list[Upload] = []
    listed: list[str] = []
    for file in article.files:
        if len(file.data) <= UPLOAD_LIMIT:
            uploads.append(Upload(safe_filename(file.filename), file.data))
        else:
            listed.append(_too_large(file))
    return uploads, listed


def _too_large(file: AttachmentData) -> str:
    return f"{one_line(file.filename)} ({file.content_type}, {len(file.data):,} bytes: too large)"


def _attachment_lines(
    article: ArticleView, uploads: Sequence[Upload], listed: Sequence[str]
) -> list[str]:
    if not uploads and not listed:
        return []
    lines = [""]
    if uploads:
        lines.append(f"📎 {len(uploads)} attachment(s) uploaded with this message.")
    if listed:
        lines.append("📎 **Attachments not shown here:**" if uploads else "📎 **Attachments:**")
        lines += [f"• {fit(name, HEADER_CHARS)}" for name in listed[:ATTACHMENTS_LISTED]]
        if len(listed) > ATTACHMENTS_LISTED:
            lines.append(f"… and {len(listed) - ATTACHMENTS_LISTED} more")
    return lines


def _attach(messages: list[OutMessage], uploads: Sequence[Upload]) -> list[OutMessage]:
    """Put the uploads on the last message, and on extra messages when they do not fit."""
    groups = _file_groups(uploads)
    if not groups:
        return messages
    last = messages[-1]
    result = [*messages[:-1], OutMessage(last.content, tuple(groups[0]))]
    for index, group in enumerate(groups[1:], start=2):
        result.append(OutMessage(f"📎 Attachments, continued ({index}/{len(groups)})", group))
    return result


def _file_groups(uploads: Sequence[Upload]) -> list[tuple[Upload, ...]]:
    groups: list[tuple[Upload, ...]] = []
    current: list[Upload] = []
    size = 0
    for upload in uploads:
        if current and (
            len(current) >= FILES_PER_MESSAGE or size + len(upload.data) > UPLOAD_LIMIT
        ):
            groups.append(tuple(current))
            current, size = [], 0
        current.append(upload)
        size += len(upload.data)
    if current:
        groups.append(tuple(current))
    return groups


_UNSAFE_NAME = re.compile(r"[^\w.\- ()+,=@]+")


def safe_filename(name: str) -> str:
    """A file name Discord shows as is: no path, no markup, not a hidden spoiler.

    Discord blurs files whose name starts with ``SPOILER_``; an email must not be
    able to hide an attachment that way.
    """
    name = one_line(name).replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE_NAME.sub("_", name).strip(" .")
    while name.upper().startswith("SPOILER_"):
        name = name[len("SPOILER_") :]
    if len(name) > 100:
        stem, dot, ext = name.rpartition(".")
        name = f"{stem[: 95 - len(ext)]}{dot}{ext}" if dot and len(ext) <= 10 else name[:100]
    return name or "attachment"
