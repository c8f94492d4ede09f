"""A seeded, varied set of raw emails for the intake benchmark.

The same ``(count, seed)`` always gives the same bytes (the MIME boundaries are set
here, not drawn by the email package), so figures from different machines or
commits are measured on identical mail. The mix is meant to look like a help desk's
inbox, not like a parser torture test:

* plain text in six languages, as UTF-8 (8bit, quoted-printable or base64) and, for
  the Latin-script ones, ISO-8859-1;
* HTML-only mail, multipart/alternative (text and HTML), and multipart/mixed with one
  to three small attachments of random bytes (1 to 8 KB each);
* about a fifth of the messages are follow-ups: ``Re:`` subject, ``In-Reply-To`` and
  ``References`` pointing at an earlier message of the set, same sender and queue
  address, and the earlier text quoted;
* non-ASCII display names and subjects (RFC 2047 encoded words); every message has a
  unique Message-ID.
"""

from __future__ import annotations

import hashlib
import html
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

POLICY = policy.SMTP  # CRLF line endings, as an IMAP server stores and serves them
BASE_DATE = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
DEFAULT_SEED = 20261123
FOLLOW_UP_SHARE = 0.2

# The kinds of message and how often each is drawn.
KINDS: dict[str, int] = {
    "plain-utf8-8bit": 15,
    "plain-utf8-qp": 15,
    "plain-utf8-base64": 10,
    "plain-latin1": 10,
    "html-only": 15,
    "alternative": 20,
    "mixed": 15,
}
LATIN1_LANGUAGES = ("en", "de", "fr", "es")

SENTENCES: dict[str, tuple[str, ...]] = {
    "en": (
        "Hello, I found one of your photos in an article about the old harbour.",
        "May I use it in a school booklet, with credit to the photographer?",
        "The booklet is printed in 300 copies and handed out for free.",
        "I could not find a licence on the page, only the name of the uploader.",
        "Could you tell me whom I should ask for permission?",
        "Our deadline is next Friday, so a short answer would already help.",
        "Thank you very much for your time and for the work you all do.",
        "I tried to write to the address on the website but got no reply.",
        "The picture shows the lighthouse at dusk, taken from the north pier.",
        "If there is a form to fill in, please send me the link.",
    ),
    "de": (
        "Guten Tag, ich bin der Fotograf des Bildes 'Alter Leuchtturm'.",
        "Ich möchte es unter einer freien Lizenz freigeben. Wie gehe ich vor?",
        "Die Aufnahme entstand im Frühjahr bei schönem Wetter an der Küste.",
        "Für eine kurze Rückmeldung wäre ich sehr dankbar.",
        "Gibt es dafür ein Formular, oder genügt eine E-Mail an Sie?",
        "Außerdem habe ich noch Fragen zur Namensnennung in Büchern.",
        "Mit freundlichen Grüßen aus München und bis bald.",
        "Ich habe die Seite über die Stadtgeschichte überarbeitet.",
        "Könnten Sie bitte prüfen, ob die Änderungen übernommen wurden?",
        "Vielen Dank für Ihre Mühe und die schnelle Antwort.",
    ),
    "fr": (
        "Bonjour, je travaille pour un journal régional à Besançon.",
        "Nous aimerions publier une photo de l'église prise en été.",
        "Pourriez-vous nous indiquer la licence exacte et l'auteur ?",
        "L'article paraîtra la semaine prochaine, dans l'édition du samedi.",
        "Je vous remercie d'avance pour votre réponse rapide.",
        "Le cliché montre la façade principale après la rénovation.",
        "Faut-il mentionner le nom du photographe sous l'image ?",
        "Nous avons déjà utilisé une de vos images, avec succès.",
        "Veuillez agréer mes salutations distinguées.",
        "Élodie, rédaction « Vie locale », deuxième étage.",
    ),
    "es": (
        "Hola, escribo desde una asociación cultural de Málaga.",
        "¿Podemos usar la fotografía del castillo en nuestro cartel?",
        "El cartel se imprimirá en tamaño A3 para la fiesta de otoño.",
        "No encontramos información sobre el año en que se tomó.",
        "¡Muchas gracias por vuestra ayuda y por el trabajo que hacéis!",
        "Si hace falta un permiso por escrito, lo enviamos en seguida.",
        "La señora Núñez nos recomendó escribir a esta dirección.",
        "Un saludo cordial desde Andalucía.",
        "Mañana vuelvo a revisar el correo por si falta algún dato.",
        "¿Hay que citar al autor en la parte inferior de la imagen?",
    ),
    "ja": (
        "はじめまして、地域の歴史について調べている者です。",
        "灯台の写真を学校の冊子に使わせていただけないでしょうか。",
        "撮影者のお名前を必ず記載いたします。",
        "冊子は無料で配布する予定で、部数は三百部です。",
        "ご検討のほど、よろしくお願いいたします。",
        "締め切りが来週の金曜日なので、お返事をお待ちしております。",
        "ウェブサイトの記事に誤字を見つけましたのでお知らせします。",
        "二段落目の年号が一九五八年ではなく一九八五年だと思います。",
        "お忙しいところ恐れ入りますが、ご確認ください。",
        "どうぞよろしくお願いいたします。",
    ),
    "ru": (
        "Здравствуйте, я пишу по поводу фотографии старого моста.",
        "Можно ли использовать её в нашей газете с указанием автора?",
        "Статья выйдет в следующем номере, тираж небольшой.",
        "Заранее благодарю за ответ и за вашу работу.",
        "Если нужно официальное письмо, мы его пришлём.",
        "На снимке видна набережная зимой, вечером.",
        "Я не нашёл на странице сведений о лицензии.",
        "Подскажите, пожалуйста, к кому обратиться.",
        "С уважением, редакция районной газеты.",
        "Спасибо, что помогаете людям разобраться в правах.",
    ),
}
SUBJECTS: dict[str, tuple[str, ...]] = {
    "en": ("Photo for a school booklet", "Question about a licence", "Permission request"),
    "de": ("Freigabe für mein Foto", "Frage zur Namensnennung", "Änderungen an der Seite"),
    "fr": ("Demande d'autorisation", "Photo de l'église", "Question sur la licence"),
    "es": ("Permiso para un cartel", "Pregunta sobre la fotografía", "Consulta de la señora"),
    "ja": ("写真の使用について", "記事の誤字について", "お問い合わせ"),
    "ru": ("Вопрос о фотографии", "Разрешение на публикацию", "Лицензия снимка"),
}
NAMES: dict[str, tuple[tuple[str, str], ...]] = {
    "en": (("Maria", "Lopez"), ("John", "Smith"), ("Aisha", "Khan")),
    "de": (("Jürgen", "Müller"), ("Anna", "Schäfer"), ("Lars", "Weiß")),
    "fr": (("Élodie", "Dupré"), ("François", "Lefèvre"), ("Chloé", "Martin")),
    "es": (("Lucía", "Núñez"), ("José", "García"), ("Pilar", "Ortega")),
    "ja": (("太郎", "山田"), ("花子", "佐藤"), ("健", "鈴木")),
    "ru": (("Ольга", "Иванова"), ("Дмитрий", "Петров"), ("Анна", "Смирнова")),
}
ASCII_NAMES = ("maria", "john", "aisha", "juergen", "anna", "lars", "elodie", "francois")
QUEUE_ADDRESSES = (
    ("info@example.org", 6),
    ("press@example.org", 2),
    ("permissions@example.org", 2),
)
ATTACHMENT_TYPES = (
    ("image", "jpeg", "photo-{n}.jpg"),
    ("image", "png", "screenshot-{n}.png"),
    ("application", "pdf", "scan-{n}.pdf"),
    ("application", "octet-stream", "data-{n}.bin"),
)
MAILERS = ("Thunderbird 128.4", "Apple Mail (2.3826)", "Roundcube 1.6", "Outlook 16.0")


@dataclass
class Corpus:
    """The generated messages, in delivery order, and what they are made of."""

    messages: list[bytes]
    message_ids: list[str]
    seed: int
    kinds: Counter[str] = field(default_factory=Counter)
    languages: Counter[str] = field(default_factory=Counter)
    follow_ups: int = 0
    attachments: int = 0

    @property
    def total_bytes(self) -> int:
        return sum(len(raw) for raw in self.messages)

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        for raw in self.messages:
            digest.update(len(raw).to_bytes(8, "big"))
            digest.update(raw)
        return digest.hexdigest()

    def summary(self) -> dict[str, object]:
        sizes = sorted(len(raw) for raw in self.messages)
        return {
            "count": len(self.messages),
            "seed": self.seed,
            "sha256": self.sha256,
            "total_bytes": self.total_bytes,
            "median_bytes": sizes[len(sizes) // 2] if sizes else 0,
            "max_bytes": sizes[-1] if sizes else 0,
            "kinds": dict(sorted(self.kinds.items())),
            "languages": dict(sorted(self.languages.items())),
            "follow_ups": self.follow_ups,
            "attachments": self.attachments,
        }


@dataclass(frozen=True)
class _Sent:
    """What a follow-up needs to know about the message it answers."""

    message_id: str
    references: tuple[str, ...]
    subject: str
    sender: Address
    to: str
    language: str
    text: str


def generate(count: int, seed: int = DEFAULT_SEED) -> Corpus:
    """``count`` raw messages (CRLF, as served by IMAP), the same for the same seed."""
    rng = random.Random(seed)
    corpus = Corpus(messages=[], message_ids=[], seed=seed)
    sent: list[_Sent] = []
    kinds = list(KINDS)
    weights = list(KINDS.values())
    addresses = [a for a, _ in QUEUE_ADDRESSES]
    address_weights = [w for _, w in QUEUE_ADDRESSES]
    for index in range(count):
        kind = rng.choices(kinds, weights)[0]
        original = (
            sent[rng.randrange(len(sent))] if sent and rng.random() < FOLLOW_UP_SHARE else None
        )
        if original is not None and (
            kind != "plain-latin1" or original.language in LATIN1_LANGUAGES
        ):
            language = original.language
        else:
            original = None
            languages = LATIN1_LANGUAGES if kind == "plain-latin1" else tuple(SENTENCES)
            language = rng.choice(languages)
        message_id = f"<bench.{seed}.{index:06d}@example.net>"
        text = _paragraphs(rng, language)
        msg = EmailMessage(policy=POLICY)
        if original is None:
            first, last = rng.choice(NAMES[language])
            local = f"{rng.choice(ASCII_NAMES)}.{index}"
            sender = Address(display_name=f"{first} {last}", addr_spec=f"{local}@example.net")
            to = rng.choices(addresses, address_weights)[0]
            subject = rng.choice(SUBJECTS[language])
            references: tuple[str, ...] = ()
        else:
            sender, to = original.sender, original.to
            subject = f"Re: {original.subject}"
            references = (*original.references[-9:], original.message_id)
            quoted = "\n".join(f"> {line}" for line in original.text.splitlines()[:6])
            text = f"{text}\n\n{quoted}"
            msg["In-Reply-To"] = original.message_id
            msg["References"] = " ".join(references)
            corpus.follow_ups += 1
        msg["From"] = sender
        msg["To"] = to
        if rng.random() < 0.1:
            msg["Cc"] = f"colleague.{index}@example.net"
        msg["Subject"] = subject
        msg["Message-ID"] = message_id
        when = BASE_DATE + timedelta(seconds=37 * index)
        zone = timezone(timedelta(hours=rng.choice((-5, 0, 1, 2, 9))))
        msg["Date"] = format_datetime(when.astimezone(zone))
        msg["X-Mailer"] = rng.choice(MAILERS)
        corpus.attachments += _body(msg, rng, kind, text, index)
        for number, part in enumerate(p for p in msg.walk() if p.is_multipart()):
            part.set_boundary(f"=_bench_{seed}_{index}_{number}")
        corpus.messages.append(msg.as_bytes(policy=POLICY))
        corpus.message_ids.append(message_id)
        corpus.kinds[kind] += 1
        corpus.languages[language] += 1
        sent.append(_Sent(message_id, references, subject, sender, to, language, text))
    return corpus


def _paragraphs(rng: random.Random, language: str) -> str:
    sentences = SENTENCES[language]
    paragraphs = []
    for _ in range(rng.randint(2, 6)):
        paragraphs.append(" ".join(rng.choice(sentences) for _ in range(rng.randint(1, 4))))
    return "\n\n".join(paragraphs)


def _html(text: str) -> str:
    paragraphs = "".join(
        f'<p style="margin:0 0 1em 0">{html.escape(p).replace(chr(10), "<br>")}</p>\n'
        for p in text.split("\n\n")
    )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><style>p{font-family:sans-serif}'
        "</style></head>\n<body>\n"
        f"{paragraphs}"
        '<p>--<br><b>Sent</b> from <a href="https://example.net/">my desk</a> &amp; co.</p>\n'
        "</body></html>\n"
    )


def _body(msg: EmailMessage, rng: random.Random, kind: str, text: str, index: int) -> int:
    """Give ``msg`` its body for ``kind``; return how many attachments it got."""
    if kind == "plain-utf8-8bit":
        msg.set_content(text, cte="8bit")
    elif kind == "plain-utf8-qp":
        msg.set_content(text, cte="quoted-printable")
    elif kind == "plain-utf8-base64":
        msg.set_content(text, cte="base64")
    elif kind == "plain-latin1":
        cte = rng.choice(("quoted-printable", "8bit"))
        msg.set_content(text, charset="iso-8859-1", cte=cte)
    elif kind == "html-only":
        msg.set_content(_html(text), subtype="html", cte="quoted-printable")
    elif kind == "alternative":
        msg.set_content(text, cte="quoted-printable")
        msg.add_alternative(_html(text), subtype="html", cte="quoted-printable")
    elif kind == "mixed":
        msg.set_content(text, cte=rng.choice(("8bit", "quoted-printable")))
        if rng.random() < 0.4:
            msg.add_alternative(_html(text), subtype="html", cte="quoted-printable")
        attachments = rng.randint(1, 3)
        for number in range(attachments):
            maintype, subtype, name = rng.choice(ATTACHMENT_TYPES)
            data = rng.randbytes(rng.randint(1024, 8 * 1024))
            filename = name.format(n=f"{index}-{number}")
            msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
        return attachments
    else:  # pragma: no cover - KINDS and this function are kept in step
        raise ValueError(kind)
    return 0
