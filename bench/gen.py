"""A large, realistic help desk database, generated fast through the real schema.

    python -m bench.gen --tickets 100000 --backend sqlite      # build (or reuse) one

Used by :mod:`bench.largedb` (1M tickets) and :mod:`bench.growth` (1k, 10k, 100k).

The schema is the project's own: an empty database is migrated by
:func:`storage.migrations.migrate`, exactly as the bot does at its first start. The rows
are then bulk loaded around the ORM (``executemany`` on SQLite, ``COPY`` on PostgreSQL),
in big transactions. To load fast, the secondary indexes of the big tables (and on
SQLite the full-text trigger) are dropped first and made again afterwards **from the
SQL the migration created them with** (``sqlite_master.sql`` / ``pg_indexes.indexdef``),
so the schema at the end is the migrated one, object for object; the SQLite full-text
index is then filled with FTS5's ``'rebuild'``. PostgreSQL gets ``VACUUM ANALYZE``, which
autovacuum would do on a real server after such a load; SQLite gets no ``ANALYZE``,
because the bot never runs it.

What a generated desk looks like (a fixed seed: the same size always gives the same rows):

* 8 queues, 4 of them sub-queues (``info::de`` ...), of different sizes; each has its
  volunteers (a pool of 120, some in several queues).
* Tickets created over 3 years up to :data:`END` (the desk grows: the rate rises from
  0.6 to 1.4 of the average; office hours busier than nights), numbered as the bot
  numbers them (``YYYYMMDD`` + system id 10 + the day's counter, kept in
  ``ticket_counter``).
* States: older than 30 days almost all closed (0.5 % left open, pending or new, as
  stale tickets are); of the last 30 days about 45 % still new, open or pending.
  Closed ones: 88 % successful, 5 % unsuccessful, 5 % spam, 2 % merged.
* About 3 articles a ticket: the requester's mail, often an acknowledgement, a reply,
  often a follow-up and a second reply, sometimes a note, a reopening mail.
  Six languages (en, de, fr, es, ru, ja), the text made of the intake benchmark's
  sentences (:mod:`bench.corpus`) plus "topic words" drawn from a Zipf distribution
  over 300,000 made-up words (names, places, references), so a search word can have
  millions of hits, thousands, or two.
* Requesters from a pool of a third as many addresses as tickets, a few writing often.
* The audit log as the bot writes it: ``ticket.created``, ``ticket.claim``,
  ``ticket.reply``, ``ticket.close`` / ``ticket.spam`` / ``ticket.merge`` /
  ``ticket.pending``, ``ticket.reopened`` and ``ticket.autoclosed``, so the ``stats``
  report (received, backlog, first response, time to close) has real work to do.
* Tags on 8 % of the tickets, priorities mostly 3.

Not generated (nothing measured reads them; they would only make the file bigger):
raw messages, attachments, chat posts, intake records, outbox rows.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import csv
import functools
import io
import json
import os
import random
import shutil
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.corpus import SENTENCES, SUBJECTS

#: Bump when the rows change: cached databases of another version are not reused.
GEN_VERSION = 1
DEFAULT_SEED = 20261124
#: The desk's "now": the newest ticket is just before it. Fixed, so files can be cached.
END = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
YEARS = 3
DATA = Path(__file__).resolve().parent / "data"
SYSTEM_ID = 10
CHUNK_TICKETS = 20_000  # tickets per batch (and per progress line)

#: name, share of tickets, language of the queue (None: the desk's mix)
QUEUES: tuple[tuple[str, int, str | None], ...] = (
    ("info", 30, None),
    ("info::de", 10, "de"),
    ("info::fr", 6, "fr"),
    ("permissions", 18, None),
    ("permissions::de", 8, "de"),
    ("press", 12, None),
    ("press::ja", 4, "ja"),
    ("quality", 12, None),
)
QUEUE_NAMES = tuple(q[0] for q in QUEUES)
QUEUE_ADDRESS = {
    "info": "info@example.org",
    "permissions": "permissions@example.org",
    "press": "press@example.org",
    "quality": "quality@example.org",
}
LANGUAGES = (("en", 50), ("de", 14), ("fr", 10), ("es", 10), ("ru", 8), ("ja", 8))
OPEN_STATES = (("new", 25), ("open", 45), ("pending_reminder", 15), ("pending_autoclose", 15))
CLOSED_STATES = (
    ("closed_successful", 88),
    ("closed_unsuccessful", 5),
    ("spam", 5),
    ("merged", 2),
)
PRIORITIES = ((3, 84), (4, 6), (5, 1), (2, 6), (1, 3))
TAGS = ("urgent", "press", "legal", "vip", "follow-up", "photo", "licence", "bug")
DOMAINS = tuple(
    f"{name}.{tld}"
    for name in (
        "example", "mail.example", "post.example", "web.example", "news.example",
        "school.example", "uni.example", "city.example", "museum.example", "club.example",
        "verein.example", "asso.example", "press.example", "radio.example", "library.example",
    )
    for tld in ("net", "com", "de", "fr")
)  # fmt: skip
FIRST = (
    "maria", "john", "aisha", "juergen", "anna", "lars", "elodie", "francois", "lucia",
    "jose", "pilar", "olga", "dmitri", "taro", "hanako", "ken", "chloe", "noah", "emma",
    "lea", "paul", "sofia", "ivan", "yuki", "omar", "nina", "tom", "ines", "karl", "mei",
)  # fmt: skip
LAST = (
    "lopez", "smith", "khan", "mueller", "schaefer", "weiss", "dupre", "lefevre", "martin",
    "nunez", "garcia", "ortega", "ivanova", "petrov", "yamada", "sato", "suzuki", "brown",
    "rossi", "novak", "berg", "costa", "silva", "meyer", "fischer", "moreau", "tanaka",
)  # fmt: skip
SYLLABLES = (
    "ka", "lo", "mir", "ves", "tran", "dor", "el", "sa", "ber", "un", "ta", "ni", "gor",
    "fel", "ri", "os", "mun", "del", "ar", "ix", "po", "len", "qua", "zet", "bra", "hol",
    "im", "ste", "vu", "kor", "na", "pel", "tis", "ro", "wen", "dal", "fi", "gra", "sol",
    "mek",
)  # fmt: skip
VOCABULARY_SIZE = 300_000
ZIPF_S = 1.07

REPLIES: dict[str, tuple[str, ...]] = {
    "en": (
        "Thank you for writing to us.",
        "Yes, you may use the photo, with credit to the photographer and the licence.",
        "We have forwarded your question to the author of the picture.",
        "Please send us the link to the page you mean.",
        "The licence is shown below the image on the description page.",
        "We will get back to you as soon as we hear from them.",
    ),
    "de": (
        "Vielen Dank für Ihre Nachricht.",
        "Ja, Sie dürfen das Foto mit Namensnennung und Lizenz verwenden.",
        "Wir haben Ihre Frage an den Fotografen weitergeleitet.",
        "Bitte schicken Sie uns den Link zu der Seite.",
        "Die Lizenz steht auf der Beschreibungsseite unter dem Bild.",
    ),
    "fr": (
        "Merci de nous avoir écrit.",
        "Oui, vous pouvez utiliser la photo en citant l'auteur et la licence.",
        "Nous avons transmis votre question au photographe.",
        "Pourriez-vous nous envoyer le lien vers la page ?",
    ),
    "es": (
        "Gracias por escribirnos.",
        "Sí, puede usar la fotografía citando al autor y la licencia.",
        "Hemos enviado su pregunta al autor de la imagen.",
        "¿Puede enviarnos el enlace a la página?",
    ),
    "ru": (
        "Спасибо за ваше письмо.",
        "Да, вы можете использовать фотографию с указанием автора и лицензии.",
        "Мы переслали ваш вопрос автору снимка.",
    ),
    "ja": (
        "お問い合わせありがとうございます。",
        "撮影者名とライセンスを記載していただければ、写真をご利用いただけます。",
        "撮影者に確認いたします。",
    ),
}
TOPIC_LINES: dict[str, tuple[str, ...]] = {
    "en": (
        "It is about {} and {}, see {}.",
        "Reference: {} {} {}.",
        "The file is {}, from {} ({}).",
    ),
    "de": (
        "Es geht um {} und {}, siehe {}.",
        "Betreff: {} {} {}.",
        "Die Datei heißt {}, aus {} ({}).",
    ),
    "fr": (
        "Il s'agit de {} et {}, voir {}.",
        "Référence : {} {} {}.",
        "Le fichier est {}, de {} ({}).",
    ),
    "es": (
        "Se trata de {} y {}, ver {}.",
        "Referencia: {} {} {}.",
        "El archivo es {}, de {} ({}).",
    ),
    "ru": (
        "Речь идёт о {} и {}, см. {}.",
        "Ссылка: {} {} {}.",
        "Файл {}, из {} ({}).",
    ),
    "ja": (
        "{}と{}について（{}）。",
        "参照：{} {} {}。",
        "ファイル名は{}、{}（{}）。",
    ),
}
SALUTE = {
    "en": "Hello", "de": "Guten Tag", "fr": "Bonjour", "es": "Hola", "ru": "Здравствуйте",
    "ja": "様",
}  # fmt: skip

# --- the schema's columns, in the order the rows are made ------------------------------------

TICKET_COLUMNS = (
    "id", "number", "queue_id", "state", "owner", "owner_name", "subject", "requester_email",
    "requester_name", "created_at", "updated_at", "version", "priority", "language",
    "pending_until", "merged_into_id", "linked_to_id", "owner_active_at", "reminded_at",
)  # fmt: skip
ARTICLE_COLUMNS = (
    "id", "ticket_id", "kind", "author", "author_name", "subject", "body", "message_id",
    "in_reply_to", "references", "to_addrs", "cc_addrs", "auto_kind", "raw_id", "send_state",
    "send_attempts", "sent_at", "last_error", "created_at", "held",
)  # fmt: skip
AUDIT_COLUMNS = (
    "id", "at", "actor_platform", "actor_id", "actor_name", "action", "ticket_id", "detail",
    "before", "after",
)  # fmt: skip
TAG_COLUMNS = ("id", "ticket_id", "name")
COUNTER_COLUMNS = ("id", "day", "value")
QUEUE_COLUMNS = ("id", "name", "created_at")
#: table -> columns; the order they are loaded in (foreign keys point backwards)
TABLES: dict[str, tuple[str, ...]] = {
    "queue": QUEUE_COLUMNS,
    "ticket": TICKET_COLUMNS,
    "article": ARTICLE_COLUMNS,
    "audit_log": AUDIT_COLUMNS,
    "ticket_tag": TAG_COLUMNS,
    "ticket_counter": COUNTER_COLUMNS,
}
#: text columns that may be NULL (never '' in the generated rows): for PostgreSQL's CSV COPY
NULLABLE = {
    "ticket": {
        "owner", "owner_name", "pending_until", "merged_into_id", "linked_to_id",
        "owner_active_at", "reminded_at",
    },
    "article": {"message_id", "raw_id", "send_state", "sent_at"},
    "audit_log": {"ticket_id"},
}  # fmt: skip


def _ts(micros: int) -> str:
    """A timestamp as :class:`storage.fields.UtcDateTimeField` stores it (naive UTC text)."""
    return str(_EPOCH + timedelta(microseconds=micros))


_EPOCH = datetime(1970, 1, 1)
HOUR = 3_600_000_000
DAY = 24 * HOUR
MINUTE = 60_000_000


def _weighted(pairs: Sequence[tuple[Any, int]]) -> tuple[list[Any], list[float]]:
    values = [v for v, _ in pairs]
    cum: list[float] = []
    total = 0.0
    for _, w in pairs:
        total += w
        cum.append(total)
    return values, cum


def vocabulary_word(rank: int) -> str:
    """The made-up word of a Zipf rank (0 is the most frequent): 2 to 4 syllables, unique."""
    n = len(SYLLABLES)
    if rank < n * n:
        digits, width = rank, 2
    elif rank < n * n + n**3:
        digits, width = rank - n * n, 3
    else:
        digits, width = rank - n * n - n**3, 4
    parts = []
    for _ in range(width):
        digits, d = divmod(digits, n)
        parts.append(SYLLABLES[d])
    return "".join(parts)


@functools.cache
def zipf_vocabulary() -> tuple[list[str], list[float]]:
    """The made-up words by rank, and their cumulative Zipf weights (made on first use, so a
    process that only needs the search texts, like the memory probe, does not carry them)."""
    words = [vocabulary_word(r) for r in range(VOCABULARY_SIZE)]
    cum: list[float] = []
    total = 0.0
    for rank in range(VOCABULARY_SIZE):
        total += 1.0 / (rank + 1) ** ZIPF_S
        cum.append(total)
    return words, cum


@dataclass
class Batch:
    """The rows made for a run of tickets, per table, ready to load."""

    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=lambda: {t: [] for t in TABLES})
    tickets: int = 0


@dataclass
class Counts:
    tickets: int = 0
    articles: int = 0
    audit: int = 0
    tags: int = 0
    states: dict[str, int] = field(default_factory=dict)
    queues: dict[str, int] = field(default_factory=dict)
    languages: dict[str, int] = field(default_factory=dict)
    body_chars: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "tickets": self.tickets,
            "articles": self.articles,
            "audit_rows": self.audit,
            "tags": self.tags,
            "articles_per_ticket": round(self.articles / max(1, self.tickets), 3),
            "mean_article_chars": round(self.body_chars / max(1, self.articles), 1),
            "states": dict(sorted(self.states.items())),
            "queues": dict(sorted(self.queues.items())),
            "languages": dict(sorted(self.languages.items())),
        }


class Generator:
    """Makes the desk's rows, ticket by ticket in order of creation, in batches."""

    def __init__(self, tickets: int, seed: int = DEFAULT_SEED) -> None:
        self.total = tickets
        self.seed = seed
        self.rng = random.Random(seed)
        self.counts = Counts()
        self._article_id = 0
        self._audit_id = 0
        self._tag_id = 0
        self._day_counter: dict[str, int] = {}
        self.volunteers = [
            (f"@{FIRST[i % len(FIRST)]}.{LAST[(i * 7) % len(LAST)]}{i}:example.org",
             f"{FIRST[i % len(FIRST)].title()} {LAST[(i * 7) % len(LAST)].title()}")
            for i in range(120)
        ]  # fmt: skip
        # each queue: 25 volunteers, overlapping
        self.queue_volunteers = {
            name: [self.volunteers[(i * 13 + k) % 120] for k in range(25)]
            for i, (name, _, _) in enumerate(QUEUES)
        }
        self.requesters = max(50, tickets // 3)
        self._queue_values, self._queue_cum = _weighted([(q, w) for q, w, _ in QUEUES])
        self._lang_values, self._lang_cum = _weighted(LANGUAGES)
        self._open_values, self._open_cum = _weighted(OPEN_STATES)
        self._closed_values, self._closed_cum = _weighted(CLOSED_STATES)
        self._prio_values, self._prio_cum = _weighted(PRIORITIES)
        self._queue_lang = {q: lang for q, _, lang in QUEUES}
        self._queue_id = {q: i + 1 for i, q in enumerate(QUEUE_NAMES)}

    # --- times ----------------------------------------------------------------------------

    def creation_times(self) -> list[int]:
        """Sorted creation times (µs since the epoch), the rate rising over the years."""
        rng = self.rng
        end = int((END - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 1_000_000
        span_days = YEARS * 365
        start = end - span_days * DAY
        a, b = 0.6, 0.8  # density a + b*x on [0, 1]: integrates to 1
        hours, hour_cum = _weighted(
            [(h, 3 if 8 <= h < 18 else (2 if 18 <= h < 22 else 1)) for h in range(24)]
        )
        times: list[int] = []
        for _ in range(self.total):
            u = rng.random()
            x = (-a + (a * a + 2 * b * u) ** 0.5) / b  # inverse of a*x + b*x^2/2
            day = min(span_days - 1, int(x * span_days))
            hour = hours[bisect.bisect(hour_cum, rng.random() * hour_cum[-1])]
            micros = start + day * DAY + hour * HOUR + rng.randrange(HOUR)
            times.append(min(micros, end - 1_000_000))
        times.sort()
        return times

    # --- text -----------------------------------------------------------------------------

    def topic_words(self, k: int) -> list[str]:
        words, cum = zipf_vocabulary()
        top = cum[-1]
        rng = self.rng.random
        return [words[bisect.bisect(cum, rng() * top)] for _ in range(k)]

    def topic_line(self, lang: str) -> str:
        template = self.rng.choice(TOPIC_LINES[lang])
        return template.format(*self.topic_words(3))

    def inbound_body(self, lang: str, name: str) -> str:
        rng = self.rng
        sentences = SENTENCES[lang]
        paragraphs = [" ".join(rng.choices(sentences, k=rng.randint(2, 4)))]
        paragraphs.append(self.topic_line(lang) + " " + self.topic_line(lang))
        if rng.random() < 0.7:
            paragraphs.append(" ".join(rng.choices(sentences, k=rng.randint(1, 4))))
        if rng.random() < 0.3:
            paragraphs.append(" ".join(self.topic_words(rng.randint(2, 5))))
        paragraphs.append(f"{name}\n{rng.choice(sentences)}")
        return "\n\n".join(paragraphs)

    def reply_body(self, lang: str, name: str, volunteer: str, queue: str, quoted: str) -> str:
        """A volunteer's answer, quoting the start of the mail it answers (as mail does)."""
        rng = self.rng
        lines = REPLIES[lang]
        greeting = f"{name}{SALUTE[lang]}" if lang == "ja" else f"{SALUTE[lang]} {name},"
        text = " ".join(rng.choices(lines, k=rng.randint(1, 3)))
        quote = "\n".join(f"> {line}" for line in quoted.split("\n\n", 2)[:2])
        return f"{greeting}\n\n{text} {self.topic_line(lang)}\n\n{volunteer}\n{queue}\n\n{quote}"

    # --- rows -----------------------------------------------------------------------------

    def batches(self) -> Iterator[Batch]:
        times = self.creation_times()
        end = times[-1] + 1_000_000 if times else 0
        batch = Batch()
        batch.rows["queue"] = [
            (self._queue_id[q], q, _ts(times[0] - DAY if times else 0)) for q in QUEUE_NAMES
        ]
        for index, created in enumerate(times):
            self._ticket(batch, index + 1, created, end)
            batch.tickets += 1
            if batch.tickets >= CHUNK_TICKETS:
                yield batch
                batch = Batch()
        batch.rows["ticket_counter"] = [
            (i + 1, day, value) for i, (day, value) in enumerate(sorted(self._day_counter.items()))
        ]
        yield batch

    def _audit(
        self, batch: Batch, at: int, actor: tuple[str, str, str], action: str, ticket: int,
        detail: str,
    ) -> None:  # fmt: skip
        self._audit_id += 1
        batch.rows["audit_log"].append(
            (self._audit_id, _ts(at), actor[0], actor[1], actor[2], action, ticket, detail, "", "")
        )

    def _article(
        self, batch: Batch, ticket: int, kind: str, author: str, author_name: str, subject: str,
        body: str, message_id: str | None, at: int, send_state: str | None = None,
        to: str = "[]", in_reply_to: str = "", references: str = "[]",
    ) -> None:  # fmt: skip
        self._article_id += 1
        sent_at = _ts(at + 10_000_000) if send_state == "sent" else None
        batch.rows["article"].append(
            (
                self._article_id, ticket, kind, author, author_name, subject, body, message_id,
                in_reply_to, references, to, "[]", "", None, send_state,
                1 if send_state else 0, sent_at, "", _ts(at), 0,
            )
        )  # fmt: skip
        self.counts.articles += 1
        self.counts.body_chars += len(body)

    def _ticket(self, batch: Batch, ticket_id: int, created: int, end: int) -> None:
        rng = self.rng
        counts = self.counts
        queue = self._queue_values[bisect.bisect(self._queue_cum, rng.random() * 100)]
        lang = self._queue_lang[queue]
        if lang is None or rng.random() < 0.1:
            lang = self._lang_values[bisect.bisect(self._lang_cum, rng.random() * 100)]
        day = _ts(created)[:10]
        counter = self._day_counter.get(day, 0) + 1
        self._day_counter[day] = counter
        number = f"{day.replace('-', '')}{SYSTEM_ID:02d}{counter:06d}"
        # requesters: a few write often (a power law over the pool)
        who = int(self.requesters * rng.random() ** 2.5)
        first, last = FIRST[who % len(FIRST)], LAST[(who // 7) % len(LAST)]
        email = f"{first}.{last}{who}@{DOMAINS[who % len(DOMAINS)]}"
        name = f"{first.title()} {last.title()}"
        subject = rng.choice(SUBJECTS[lang])
        if rng.random() < 0.5:
            subject = f"{subject}: {self.topic_words(1)[0]}"
        age = end - created
        # the last 30 days: up to 45 % still being worked on; older: 0.5 % left behind
        still_open = 0.45 * (1 - age / (45 * DAY)) if age < 30 * DAY else 0.005
        if rng.random() < still_open:
            state = self._open_values[bisect.bisect(self._open_cum, rng.random() * 100)]
        else:
            state = self._closed_values[bisect.bisect(self._closed_cum, rng.random() * 100)]
        counts.states[state] = counts.states.get(state, 0) + 1
        counts.queues[queue] = counts.queues.get(queue, 0) + 1
        counts.languages[lang] = counts.languages.get(lang, 0) + 1
        base = queue.split("::")[0]
        address = QUEUE_ADDRESS[base]
        to = f'["{address}"]'
        system = ("system", "ticketbot", "ticketbot")
        volunteer = rng.choice(self.queue_volunteers[queue])
        actor = ("matrix", volunteer[0], volunteer[1])
        latest = end - 1_000_000

        def clamp(t: int) -> int:
            return min(t, latest)

        t = created
        mid = f"<{ticket_id}.{rng.getrandbits(40):010x}@{email.split('@')[1]}>"
        last_mail = self.inbound_body(lang, name)
        self._article(batch, ticket_id, "inbound", email, name, subject, last_mail, mid, t, to=to)
        self._audit(batch, t, system, "ticket.created", ticket_id, f"from {email}")
        if rng.random() < 0.35:
            self._article(
                batch, ticket_id, "auto_reply", address, "", f"[Ticket#{number}] {subject}",
                f"We have received your message; your ticket number is {number}.",
                f"<ticketbot.{number}.ack@example.org>", t + 2_000_000, "sent",
                to=f'["{email}"]',
            )  # fmt: skip
        owner = owner_name = owner_active = None
        pending_until = merged_into = None
        replies = 0
        reply_subject = f"Re: [Ticket#{number}] {subject}"
        if state != "new" and not (state == "spam" and rng.random() < 0.7):
            # claimed after a while (minutes to days), answered soon after
            t = clamp(t + int(rng.lognormvariate(1.0, 1.3) * HOUR))
            owner, owner_name, owner_active = volunteer[0], volunteer[1], t
            self._audit(batch, t, actor, "ticket.claim", ticket_id, f"new/-/p3 -> open/{owner}/p3")
            rounds = 1 + (rng.random() < 0.3) + (rng.random() < 0.05)
            for round_no in range(rounds):
                if state == "spam":
                    break
                if round_no:
                    t = clamp(t + int(rng.lognormvariate(2.5, 1.2) * HOUR))
                    last_mail = self.inbound_body(lang, name)
                    self._article(
                        batch, ticket_id, "inbound", email, name, f"Re: {subject}", last_mail,
                        f"<{ticket_id}.{round_no}.{rng.getrandbits(40):010x}@{email.split('@')[1]}>",
                        t, to=to,
                    )  # fmt: skip
                if rng.random() < 0.9 or round_no:
                    t = clamp(t + int(rng.expovariate(1 / 20) * MINUTE))
                    self._article(
                        batch, ticket_id, "reply", volunteer[0], volunteer[1], reply_subject,
                        self.reply_body(lang, name, volunteer[1], queue, last_mail),
                        f"<ticketbot.{number}.{round_no}@example.org>", t, "sent",
                        to=f'["{email}"]',
                    )  # fmt: skip
                    self._audit(
                        batch, t, actor, "ticket.reply", ticket_id, f"article {self._article_id}"
                    )
                    replies += 1
            if rng.random() < 0.12:
                t = clamp(t + int(rng.expovariate(1 / 30) * MINUTE))
                self._article(
                    batch, ticket_id, "note", volunteer[0], volunteer[1], "",
                    f"{self.topic_line(lang)} {' '.join(self.topic_words(2))}", None, t,
                )  # fmt: skip
                self._audit(
                    batch, t, actor, "ticket.note", ticket_id, f"article {self._article_id}"
                )
        if state in ("pending_reminder", "pending_autoclose"):
            t = clamp(t + int(rng.expovariate(1 / 60) * MINUTE))
            pending_until = end + int(rng.uniform(-2, 14) * DAY)
            self._audit(batch, t, actor, "ticket.pending", ticket_id, f"open -> {state}")
        elif state in ("closed_successful", "closed_unsuccessful"):
            t = clamp(t + int(rng.lognormvariate(2.0, 1.5) * HOUR))
            successful = state == "closed_successful"
            auto = successful and rng.random() < 0.04
            if auto:
                self._audit(
                    batch, t, system, "ticket.autoclosed", ticket_id, "pending date reached"
                )
            else:
                self._audit(batch, t, actor, "ticket.close", ticket_id, f"open -> {state}")
            if rng.random() < 0.05 and t < latest - 3 * DAY:  # a reopening mail, answered
                t = clamp(t + int(rng.lognormvariate(3.0, 1.0) * HOUR))
                self._article(
                    batch, ticket_id, "inbound", email, name, f"Re: {reply_subject}",
                    self.inbound_body(lang, name),
                    f"<{ticket_id}.r.{rng.getrandbits(40):010x}@{email.split('@')[1]}>", t, to=to,
                )  # fmt: skip
                self._audit(batch, t, system, "ticket.reopened", ticket_id, "follow-up email")
                t = clamp(t + int(rng.lognormvariate(1.0, 1.0) * HOUR))
                self._audit(batch, t, actor, "ticket.close", ticket_id, f"open -> {state}")
        elif state == "spam":
            t = clamp(t + int(rng.lognormvariate(0.5, 1.0) * HOUR))
            self._audit(batch, t, actor, "ticket.spam", ticket_id, "spam")
            owner = owner_name = None
        elif state == "merged":
            t = clamp(t + int(rng.lognormvariate(1.0, 1.0) * HOUR))
            merged_into = rng.randint(1, ticket_id - 1) if ticket_id > 1 else None
            self._audit(batch, t, actor, "ticket.merge", ticket_id, f"merged into {merged_into}")
        priority = self._prio_values[bisect.bisect(self._prio_cum, rng.random() * 100)]
        batch.rows["ticket"].append(
            (
                ticket_id, number, self._queue_id[queue], state, owner, owner_name, subject,
                email, name, _ts(created), _ts(t), 2 + 2 * replies, priority, lang,
                None if pending_until is None else _ts(pending_until), merged_into, None,
                None if owner_active is None else _ts(owner_active), None,
            )
        )  # fmt: skip
        counts.tickets += 1
        if rng.random() < 0.08:
            for tag in sorted(set(rng.choices(TAGS, k=rng.randint(1, 2)))):
                self._tag_id += 1
                batch.rows["ticket_tag"].append((self._tag_id, ticket_id, tag))
                counts.tags += 1
        counts.audit = self._audit_id


# --- loading ---------------------------------------------------------------------------------

Progress = Callable[[str], None]


def _say(message: str) -> None:
    print(message, flush=True)


@dataclass
class Built:
    """A generated database, ready to use."""

    backend: str
    url: str
    tickets: int
    meta: dict[str, Any]


def _progress_line(done: int, total: int, started: float, counts: Counts) -> str:
    elapsed = time.perf_counter() - started
    rate = done / elapsed if elapsed else 0.0
    left = (total - done) / rate if rate else 0.0
    return (
        f"  {done:>9,}/{total:,} tickets  {counts.articles:>10,} articles  "
        f"{counts.audit:>10,} audit rows  {elapsed:6.0f} s  ~{left:4.0f} s left"
    )


def load_sqlite(path: Path, tickets: int, seed: int, say: Progress = _say) -> dict[str, Any]:
    """Migrate a new SQLite file with the project's migrations, then bulk load the rows."""
    from storage.database import open_database
    from storage.migrations import migrate

    if path.exists():
        path.unlink()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    db = open_database(f"sqlite:///{path}")
    db.connect()
    migrate(db)
    db.close()
    timings["migrate"] = time.perf_counter() - started

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-1000000")  # 1 GB while loading
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute("PRAGMA threads=2")
    big = tuple(t for t in TABLES if t != "queue")
    saved = conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') "
        f"AND sql IS NOT NULL AND tbl_name IN ({', '.join('?' * len(big))}) ORDER BY rowid",
        big,
    ).fetchall()
    for kind, name, _sql in saved:
        conn.execute(f'DROP {kind.upper()} "{name}"')
    say(f"  schema migrated; {len(saved)} indexes/triggers dropped for the load")
    statements = {}
    for table, cols in TABLES.items():
        names = ", ".join(f'"{c}"' for c in cols)
        marks = ", ".join("?" * len(cols))
        statements[table] = f'INSERT INTO "{table}" ({names}) VALUES ({marks})'
    gen = Generator(tickets, seed)
    t0 = time.perf_counter()
    done = 0
    conn.execute("BEGIN")
    for batch in gen.batches():
        for table, rows in batch.rows.items():
            if rows:
                conn.executemany(statements[table], rows)
        done += batch.tickets
        if batch.tickets:
            say(_progress_line(done, tickets, t0, gen.counts))
    conn.execute("COMMIT")
    timings["rows"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    for kind, name, sql in saved:
        step = time.perf_counter()
        conn.execute(sql)
        if kind == "index":
            say(f"  index {name} made again ({time.perf_counter() - step:.1f} s)")
    timings["indexes"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    say("  filling the full-text index (FTS5 'rebuild') ...")
    conn.execute('INSERT INTO "article_fts"("article_fts") VALUES (\'rebuild\')')
    timings["fts_rebuild"] = time.perf_counter() - t2
    say(f"  full-text index filled ({timings['fts_rebuild']:.0f} s)")
    after = conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') "
        "AND sql IS NOT NULL ORDER BY name"
    ).fetchall()
    if not set(saved) <= set(after):
        raise RuntimeError("the schema was not restored as migrated")
    conn.execute("PRAGMA journal_mode=WAL")  # as storage/database.py leaves it
    conn.close()
    timings["total"] = time.perf_counter() - started
    return {
        "counts": gen.counts.as_dict(),
        "timings": {k: round(v, 1) for k, v in timings.items()},
        "bytes": path.stat().st_size,
    }


def _copy_csv(cur: Any, table: str, rows: list[tuple[Any, ...]]) -> None:
    """COPY rows in CSV: NULL is an unquoted empty field, so NOT NULL text is forced to ''."""
    columns = TABLES[table]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    buffer.seek(0)
    not_null = [c for c in columns if c not in NULLABLE.get(table, set())]
    cols = ", ".join(f'"{c}"' for c in columns)
    force = ", ".join(f'"{c}"' for c in not_null)
    cur.copy_expert(
        f'COPY "{table}" ({cols}) FROM STDIN WITH (FORMAT csv, FORCE_NOT_NULL ({force}))', buffer
    )


def load_postgres(url: str, tickets: int, seed: int, say: Progress = _say) -> dict[str, Any]:
    """Migrate an empty PostgreSQL database with the project's migrations, then COPY the rows."""
    from storage.database import open_database
    from storage.migrations import migrate
    from tests.servers.postgres import connect

    timings: dict[str, float] = {}
    started = time.perf_counter()
    db = open_database(url)
    db.connect()
    migrate(db)
    db.close()
    timings["migrate"] = time.perf_counter() - started
    conn = connect(url)
    conn.autocommit = False
    cur = conn.cursor()
    cur.execute("SET maintenance_work_mem = '1GB'")
    cur.execute("SET synchronous_commit = off")
    big = [t for t in TABLES if t != "queue"]
    cur.execute(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i "
        "LEFT JOIN pg_constraint c ON c.conname = i.indexname "
        "WHERE i.schemaname = 'public' AND i.tablename = ANY(%s) AND c.conname IS NULL "
        "ORDER BY i.indexname",
        (big,),
    )
    saved = cur.fetchall()
    for name, _sql in saved:
        cur.execute(f'DROP INDEX "{name}"')
    conn.commit()
    say(f"  schema migrated; {len(saved)} indexes dropped for the load")
    gen = Generator(tickets, seed)
    t0 = time.perf_counter()
    done = 0
    for batch in gen.batches():
        for table in TABLES:  # queues first: the other tables' foreign keys point at them
            if batch.rows[table]:
                _copy_csv(cur, table, batch.rows[table])
        done += batch.tickets
        if batch.tickets:
            say(_progress_line(done, tickets, t0, gen.counts))
    conn.commit()
    timings["rows"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    for name, sql in saved:
        step = time.perf_counter()
        cur.execute(sql)
        conn.commit()
        say(f"  index {name} made again ({time.perf_counter() - step:.1f} s)")
    timings["indexes"] = time.perf_counter() - t1
    for table in TABLES:
        cur.execute(
            f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), "
            f'(SELECT COALESCE(MAX("id"), 0) + 1 FROM "{table}"), false)'
        )
    conn.commit()
    conn.autocommit = True
    t2 = time.perf_counter()
    say("  VACUUM ANALYZE ...")
    cur.execute("VACUUM ANALYZE")
    timings["vacuum_analyze"] = time.perf_counter() - t2
    cur.execute("SELECT pg_database_size(current_database())")
    size = int(cur.fetchone()[0])
    conn.close()
    timings["total"] = time.perf_counter() - started
    return {
        "counts": gen.counts.as_dict(),
        "timings": {k: round(v, 1) for k, v in timings.items()},
        "bytes": size,
    }


# --- the cache -------------------------------------------------------------------------------


def stem(tickets: int, seed: int) -> str:
    return f"desk-{tickets}-s{seed}-v{GEN_VERSION}"


def sqlite_database(
    tickets: int, seed: int = DEFAULT_SEED, data: Path = DATA, say: Progress = _say,
    regenerate: bool = False,
) -> Built:  # fmt: skip
    """The generated SQLite file for this size, made if it is not in ``data`` already."""
    data.mkdir(parents=True, exist_ok=True)
    path = data / f"{stem(tickets, seed)}.db"
    meta_path = data / f"{stem(tickets, seed)}.sqlite.json"
    if not regenerate and path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        say(f"reusing {path} ({meta['counts']['tickets']:,} tickets, made in "
            f"{meta['timings']['total']:.0f} s)")  # fmt: skip
        return Built("sqlite", f"sqlite:///{path}", tickets, meta)
    meta_path.unlink(missing_ok=True)
    say(f"generating {tickets:,} tickets into {path} (SQLite) ...")
    meta = load_sqlite(path, tickets, seed, say)
    meta.update(generated_at=datetime.now(UTC).isoformat(timespec="seconds"), seed=seed,
                gen_version=GEN_VERSION, sqlite=sqlite3.sqlite_version)  # fmt: skip
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    say(f"generated in {meta['timings']['total']:.0f} s: {meta['bytes'] / 1e9:.2f} GB")
    return Built("sqlite", f"sqlite:///{path}", tickets, meta)


@contextlib.contextmanager
def postgres_cluster(data: Path = DATA, say: Progress = _say) -> Iterator[str]:
    """A PostgreSQL cluster kept in ``data/pg`` (made once with the tests' helper), started
    on a free loopback port with the tests' settings; yields the URL of its ``postgres``
    database. Stopped afterwards; the files stay, so generated databases are reused."""
    import pytest

    from tests.servers import postgres as pg

    base = data / "pg"
    bindir = pg.find_pg_bindir()
    if bindir is None:
        raise RuntimeError(pg.INSTALL_HINT)
    owner = None
    if os.geteuid() == 0:
        import pwd

        owner = pwd.getpwnam(pg.SYSTEM_USER)
    cluster = pg.PostgresCluster(bindir=bindir, basedir=base, port=pg.free_port(), owner=owner)
    try:
        if not (cluster.datadir / "PG_VERSION").exists():
            if base.exists():
                shutil.rmtree(base)
            base.mkdir(parents=True)
            cluster.init()
            say(f"made a PostgreSQL cluster in {base}")
        elif owner is not None:
            os.chown(base, owner.pw_uid, owner.pw_gid)
        cluster.sockdir.mkdir(exist_ok=True)
        if owner is not None:
            os.chown(cluster.sockdir, owner.pw_uid, owner.pw_gid)
        started = time.perf_counter()
        cluster.start()
        url = cluster.url.rsplit("/", 1)[0] + "/postgres"
        pg.wait_until_ready(url, pg.STARTUP_TIMEOUT, cluster)
        say(f"PostgreSQL {bindir.parent.name} on port {cluster.port} "
            f"(started in {time.perf_counter() - started:.1f} s)")  # fmt: skip
    except pytest.fail.Exception as exc:
        raise RuntimeError(str(exc)) from None
    try:
        yield url
    finally:
        cluster.stop()


def postgres_database(
    server_url: str, tickets: int, seed: int = DEFAULT_SEED, data: Path = DATA,
    say: Progress = _say, regenerate: bool = False,
) -> Built:  # fmt: skip
    """The generated database for this size on the cluster of ``server_url``."""
    from psycopg2 import sql

    from tests.servers.postgres import _drop_database, connect

    name = stem(tickets, seed).replace("-", "_")
    url = server_url.rsplit("/", 1)[0] + f"/{name}"
    meta_path = data / "pg" / f"{name}.json"
    conn = connect(server_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            exists = cur.fetchone() is not None
        if not regenerate and exists and meta_path.exists():
            meta = json.loads(meta_path.read_text())
            say(f"reusing database {name} ({meta['counts']['tickets']:,} tickets, made in "
                f"{meta['timings']['total']:.0f} s)")  # fmt: skip
            return Built("postgresql", url, tickets, meta)
        meta_path.unlink(missing_ok=True)
        if exists:
            _drop_database(conn, name)
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        conn.close()
    say(f"generating {tickets:,} tickets into database {name} (PostgreSQL) ...")
    meta = load_postgres(url, tickets, seed, say)
    meta.update(generated_at=datetime.now(UTC).isoformat(timespec="seconds"), seed=seed,
                gen_version=GEN_VERSION)  # fmt: skip
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    say(f"generated in {meta['timings']['total']:.0f} s: {meta['bytes'] / 1e9:.2f} GB")
    return Built("postgresql", url, tickets, meta)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=10_000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--keep", type=Path, default=DATA, help="where databases are kept")
    parser.add_argument("--regenerate", action="store_true")
    args = parser.parse_args(argv)
    if args.backend == "sqlite":
        built = sqlite_database(args.tickets, args.seed, args.keep, regenerate=args.regenerate)
        print(json.dumps(built.meta, indent=2))
    else:
        with postgres_cluster(args.keep) as server:
            built = postgres_database(
                server, args.tickets, args.seed, args.keep, regenerate=args.regenerate
            )
            print(json.dumps(built.meta, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
