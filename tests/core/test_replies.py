"""The text of replies: language choice, variables, templates, composing, quoted history."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config import TEMPLATE_VARIABLES, ConfigError, QueueConfig, check_template, parse_config
from bot.domain import Article, ArticleKind, Ticket, TicketError
from bot.replies import (
    QUOTE_MAX_LINES,
    Variables,
    acknowledgement,
    compose_reply,
    describe_templates,
    pick_text,
    render,
    strip_quoted,
    team_name,
    template_names,
    template_text,
)

MARIA = Variables(
    requester_name="Maria",
    requester_email="maria@example.net",
    ticket_number="2026112310000001",
    volunteer_name="Alice",
    queue="info",
    subject="Photo question",
)
WHEN = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def queue(**changes: object) -> QueueConfig:
    base = QueueConfig(name="info", addresses=("info@example.org",), sender_name="Info Team")
    return replace(base, **changes)  # type: ignore[arg-type]


def inbound(body: str, **changes: object) -> Article:
    article = Article(
        id=1,
        ticket_id=1,
        kind=ArticleKind.INBOUND,
        author="maria@example.net",
        author_name="Maria",
        subject="Photo question",
        body=body,
        created_at=WHEN,
    )
    return replace(article, **changes)  # type: ignore[arg-type]


# --- pick_text -------------------------------------------------------------------------------


TEXTS = {"en": "Hello", "DE": "Hallo", "pt": "Olá", "fr-CA": "Allô", "*": "Hi"}


@pytest.mark.parametrize(
    ("language", "fallback", "expected"),
    [
        ("en", "de", "Hello"),
        ("de", "en", "Hallo"),  # keys match case-insensitively
        ("De", "en", "Hallo"),
        ("pt-br", "en", "Olá"),  # the base language serves a regional variant
        ("pt_BR", "en", "Olá"),
        ("fr", "en", "Allô"),  # a sibling variant beats another language
        ("ja", "de", "Hallo"),  # the queue's language next
        ("ja", "ko", "Hi"),  # then "*"
        ("", "en", "Hello"),  # unknown ticket language
    ],
)
def test_pick_text_by_language_then_queue_language_then_any(
    language: str, fallback: str, expected: str
) -> None:
    assert pick_text(TEXTS, language, fallback) == expected


def test_pick_text_is_none_when_nothing_fits() -> None:
    assert pick_text({"de": "Hallo"}, "ja", "en") is None
    assert pick_text({}, "en", "en") is None


def test_pick_text_returns_a_deliberately_empty_text() -> None:
    assert pick_text({"en": "Hello", "ja": ""}, "ja", "en") == ""


# --- Variables and render --------------------------------------------------------------------


def test_variables_cover_exactly_the_configurable_names() -> None:
    assert set(MARIA.as_dict()) == TEMPLATE_VARIABLES
    assert MARIA.as_dict()["ticket_number"] == "2026112310000001"


def test_variables_for_a_ticket() -> None:
    ticket = Ticket(
        id=1,
        number="2026112310000001",
        queue="info",
        subject="Photo question",
        requester_email="maria@example.net",
        requester_name="Maria",
        created_at=WHEN,
        updated_at=WHEN,
    )
    assert Variables.for_ticket(ticket, volunteer_name="Alice") == MARIA


def test_render_fills_every_variable() -> None:
    text = "{requester_name} <{requester_email}> {ticket_number} {volunteer_name} {queue} {subject}"
    assert render(text, MARIA) == (
        "Maria <maria@example.net> 2026112310000001 Alice info Photo question"
    )
    assert render(text, MARIA) == text.format_map(MARIA.as_dict())


def test_render_inserts_values_literally_in_one_pass() -> None:
    sneaky = replace(MARIA, requester_name="{subject}", subject="{0} {__class__} {{x}}")
    assert render("Dear {requester_name}: {subject}", sneaky) == (
        "Dear {subject}: {0} {__class__} {{x}}"
    )
    # the same as str.format_map, which also makes a single pass
    assert render("Dear {requester_name}", sneaky) == "Dear {requester_name}".format_map(
        sneaky.as_dict()
    )


def test_render_keeps_doubled_braces_as_literal_braces() -> None:
    assert render("{{requester_name}} is {requester_name}", MARIA) == "{requester_name} is Maria"


def test_render_tidies_the_space_an_empty_name_leaves() -> None:
    nameless = replace(MARIA, requester_name="")
    assert render("Hello {requester_name},", nameless) == "Hello,"
    assert render("Dear {requester_name}\nthanks", nameless) == "Dear\nthanks"
    assert render("Bonjour {requester_name} !", nameless) == "Bonjour !"
    assert render("Hi {requester_name} and welcome", nameless) == "Hi and welcome"
    assert render("{requester_name}: welcome", nameless) == ": welcome"


def test_render_keeps_values_on_one_line() -> None:
    hostile = replace(MARIA, requester_name="Maria\n\n> fake quote\r\nBcc: x")
    assert render("Hello {requester_name},", hostile) == "Hello Maria > fake quote Bcc: x,"


def test_render_never_raises() -> None:
    assert render("{subject:d} {ticket_number:>20}", MARIA) == (
        "Photo question     2026112310000001"
    )
    assert render("{subject!r}", MARIA) == "'Photo question'"
    assert render("{unknown} {other!r:>3}", MARIA) == "{unknown} {other!r:>3}"
    assert render("broken {brace", MARIA) == "broken {brace"
    assert render("{subject:{nope}}", MARIA) == "Photo question"
    huge = replace(MARIA, subject="999999999999")
    assert render("{subject:>{subject}}", huge) == "999999999999"
    assert render("{ticket_number:>99999}", MARIA) == "2026112310000001"


_TEMPLATE_PIECES = st.sampled_from(
    [
        *(f"{{{name}}}" for name in TEMPLATE_VARIABLES),
        "{subject:d}",
        "{ticket_number:>{queue}}",
        "{requester_name!r}",
        "{{",
        "}}",
        "{",
        "}",
        "Hello ",
        ",",
        "\n",
        "ü",
        ":",
        "!",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_TEMPLATE_PIECES, max_size=12), st.text(max_size=20), st.text(max_size=20))
def test_render_never_raises_for_text_the_config_accepts(
    pieces: list[str], name: str, subject: str
) -> None:
    text = "".join(pieces)
    try:
        check_template(text, "t")
    except ConfigError:
        return
    rendered = render(text, replace(MARIA, requester_name=name, subject=subject))
    assert isinstance(rendered, str)


# --- templates -------------------------------------------------------------------------------


TEMPLATES = {
    "thanks": {
        "en": "Thank you for your message, we will get back to you within two working days.",
        "de": "Danke für Ihre Nachricht!",
        "fr": "Merci pour votre message.",
    },
    "Photo-rights": {"*": "Please name the photographer: {subject}."},
    "welcome": {"de": "\n\nWillkommen, {requester_name}!\nZweite Zeile"},
}


def test_template_names_are_sorted() -> None:
    assert template_names(TEMPLATES) == ["Photo-rights", "thanks", "welcome"]
    assert template_names({}) == []


def test_describe_templates_lists_languages_and_a_short_preview() -> None:
    listing = describe_templates(TEMPLATES, "en").splitlines()
    assert listing == [
        "Photo-rights (any) — Please name the photographer: {subject}.",
        "thanks (en, de, fr) — Thank you for your message, we will get back to you within …",
        "welcome (de) — Willkommen, {requester_name}!",
    ]
    assert all(len(line.partition(" — ")[2]) <= 62 for line in listing)


def test_describe_templates_previews_the_queue_language() -> None:
    assert "thanks (en, de, fr) — Danke für Ihre Nachricht!" in describe_templates(TEMPLATES, "de")
    assert describe_templates({}, "en") == "No templates are configured."


def test_template_text_by_language_and_fallback() -> None:
    assert template_text(TEMPLATES, "thanks", "de", "en") == "Danke für Ihre Nachricht!"
    assert template_text(TEMPLATES, "thanks", "ja", "fr") == "Merci pour votre message."
    assert template_text(TEMPLATES, "THANKS", "en", "en").startswith("Thank you")
    assert template_text(TEMPLATES, "photo-rights", "ja", "ja").startswith("Please name")


def test_template_text_unknown_name_lists_the_names() -> None:
    with pytest.raises(TicketError) as err:
        template_text(TEMPLATES, "thnaks", "en", "en")
    message = str(err.value)
    assert "'thnaks'" in message
    assert "Did you mean thanks?" in message
    assert "Photo-rights, thanks, welcome" in message
    with pytest.raises(TicketError, match="no templates"):
        template_text({}, "thanks", "en", "en")


def test_template_text_without_a_usable_language_says_which_exist() -> None:
    with pytest.raises(TicketError) as err:
        template_text(TEMPLATES, "welcome", "ja", "en")
    assert str(err.value) == "Template welcome has no text in ja or en; it has: de."
    with pytest.raises(TicketError, match="it has: none"):
        template_text({"blank": {"en": "  "}}, "blank", "en", "en")


# --- compose_reply ---------------------------------------------------------------------------


def test_reply_with_salutation_body_default_signature_and_quote() -> None:
    text = compose_reply(
        "Yes, you may use it.",
        queue=queue(salutation={"en": "Hello {requester_name},"}),
        variables=MARIA,
        language="en",
        previous=inbound("Hello,\nmay I use the photo?\n\nMaria\n"),
    )
    assert text == (
        "Hello Maria,\n"
        "\n"
        "Yes, you may use it.\n"
        "\n"
        "-- \n"
        "Alice\n"
        "Info Team\n"
        "\n"
        "On 2026-11-23 10:00 UTC, Maria <maria@example.net> wrote:\n"
        "> Hello,\n"
        "> may I use the photo?\n"
        ">\n"
        "> Maria"
    )


def test_reply_in_the_requesters_language() -> None:
    q = queue(
        salutation={"en": "Hello {requester_name},", "de": "Hallo {requester_name},"},
        signature={"en": "Kind regards\n{volunteer_name}", "de": "Viele Grüße\n{volunteer_name}"},
    )
    text = compose_reply("Ja.", queue=q, variables=MARIA, language="de", previous=inbound("Hi"))
    assert text.startswith("Hallo Maria,\n\nJa.\n\nViele Grüße\nAlice\n\n")
    assert "Am 2026-11-23 10:00 UTC schrieb Maria <maria@example.net>:\n> Hi" in text
    assert "-- " not in text  # a configured signature replaces the default one


def test_reply_in_french_and_japanese() -> None:
    q = queue(
        language="fr",
        salutation={"fr": "Bonjour {requester_name},", "ja": "{requester_name} 様"},
        signature={"*": "{volunteer_name}\n{queue}"},
    )
    french = compose_reply("Oui.", queue=q, variables=MARIA, language="fr", previous=inbound("?"))
    assert french.startswith("Bonjour Maria,\n\nOui.\n\nAlice\ninfo\n\nLe 2026-11-23")
    assert "Maria <maria@example.net> a écrit :\n> ?" in french
    japanese = compose_reply(
        "承知しました。", queue=q, variables=MARIA, language="ja", previous=inbound("質問")
    )
    assert japanese.startswith("Maria 様\n\n承知しました。\n\nAlice\ninfo\n\n")
    assert "On 2026-11-23 10:00 UTC, Maria <maria@example.net> wrote:\n> 質問" in japanese
    unknown = compose_reply("Oui.", queue=q, variables=MARIA, language="", previous=None)
    assert unknown.startswith("Bonjour Maria,")


def test_anonymous_reply_signs_with_the_team_only() -> None:
    q = queue(anonymous=True, signature={"*": "Best wishes\n{volunteer_name}"})
    text = compose_reply("Done.", queue=q, variables=MARIA, language="en", previous=None)
    assert text == "Done.\n\nBest wishes\nInfo Team"
    assert "Alice" not in text


def test_anonymous_reply_without_a_signature_adds_none() -> None:
    for q in (queue(anonymous=True), queue(anonymous=True, sender_name="")):
        text = compose_reply("Done.", queue=q, variables=MARIA, language="en", previous=None)
        assert text == "Done."
    salutation = queue(anonymous=True, salutation={"*": "Hi from {volunteer_name}"})
    text = compose_reply("Done.", queue=salutation, variables=MARIA, language="en", previous=None)
    assert text == "Hi from Info Team\n\nDone."


def test_team_name_is_the_sender_name_or_the_queue_name() -> None:
    assert team_name(queue()) == "Info Team"
    assert team_name(queue(sender_name="", name="info::de")) == "info::de"
    text = compose_reply(
        "Done.", queue=queue(sender_name=""), variables=MARIA, language="en", previous=None
    )
    assert text == "Done.\n\n-- \nAlice\ninfo"


def test_missing_pieces_are_left_out() -> None:
    nobody = replace(MARIA, volunteer_name="")
    text = compose_reply("Done.", queue=queue(), variables=nobody, language="en", previous=None)
    assert text == "Done.\n\n-- \nInfo Team"
    q = queue(salutation={"de": "Hallo"}, signature={"de": "Grüße"})
    assert compose_reply("Done.", queue=q, variables=MARIA, language="en", previous=None) == (
        "Done.\n\n-- \nAlice\nInfo Team"
    )


def test_an_empty_requester_name_leaves_a_neutral_salutation() -> None:
    nameless = replace(MARIA, requester_name="")
    q = queue(salutation={"*": "Hello {requester_name},"})
    text = compose_reply("Done.", queue=q, variables=nameless, language="en", previous=None)
    assert text.startswith("Hello,\n\nDone.")


@pytest.mark.parametrize(
    "body",
    [
        "Hello Maria,\n\nYes.",
        "hello maria\nYes.",
        "\n  Hello  Maria!\nYes.",
        "Hello Maria, yes you may.",
    ],
)
def test_a_greeting_typed_by_the_volunteer_is_not_doubled(body: str) -> None:
    q = queue(salutation={"*": "Hello {requester_name},"})
    text = compose_reply(body, queue=q, variables=MARIA, language="en", previous=None)
    assert text.casefold().count("hello") == 1
    assert text.lstrip().startswith(body.strip())


def test_a_different_greeting_still_gets_the_salutation() -> None:
    q = queue(salutation={"*": "Hello {requester_name},"})
    text = compose_reply(
        "Hello Mariana? No, Maria.", queue=q, variables=MARIA, language="en", previous=None
    )
    assert text.startswith("Hello Maria,\n\nHello Mariana?")


def test_the_body_is_taken_literally() -> None:
    text = compose_reply(
        "Use {requester_name} or {x:d} in code", queue=queue(), variables=MARIA, language="en",
        previous=None,
    )  # fmt: skip
    assert text.startswith("Use {requester_name} or {x:d} in code\n\n")


def test_the_quote_leaves_out_the_requesters_own_history() -> None:
    body = (
        "Thanks, and one more question.\n\n"
        "On Mon, Nov 23, 2026 at 9:00 AM Info Team <info@example.org> wrote:\n"
        "> Yes, you may.\n"
    )
    text = compose_reply(
        "Sure.", queue=queue(), variables=MARIA, language="en", previous=inbound(body)
    )
    quote = text.split("\n\n")[-1]
    assert quote == (
        "On 2026-11-23 10:00 UTC, Maria <maria@example.net> wrote:\n"
        "> Thanks, and one more question."
    )


def test_a_long_previous_message_is_cut() -> None:
    body = "\n".join(f"line {n}" for n in range(200))
    text = compose_reply(
        "Ok.", queue=queue(), variables=MARIA, language="en", previous=inbound(body)
    )
    quoted = [line for line in text.splitlines() if line.startswith(">")]
    assert len(quoted) == QUOTE_MAX_LINES + 1
    assert quoted[0] == "> line 0" and quoted[-2] == f"> line {QUOTE_MAX_LINES - 1}"
    assert quoted[-1] == "> [...]"


def test_quote_time_is_utc_and_the_name_optional() -> None:
    cet = timezone(timedelta(hours=1))
    previous = inbound("Hi", created_at=datetime(2026, 11, 23, 11, 0, tzinfo=cet), author_name="")
    text = compose_reply("Ok.", queue=queue(), variables=MARIA, language="en", previous=previous)
    assert "On 2026-11-23 10:00 UTC, maria@example.net wrote:\n> Hi" in text
    naive = inbound("Hi", created_at=datetime(2026, 11, 23, 10, 0))
    text = compose_reply("Ok.", queue=queue(), variables=MARIA, language="en", previous=naive)
    assert "On 2026-11-23 10:00 UTC, Maria" in text


@pytest.mark.parametrize(
    "previous",
    [
        None,
        inbound("internal: she is a troll", kind=ArticleKind.NOTE),
        inbound("Our earlier answer", kind=ArticleKind.REPLY),
        inbound("Mail from a stranger", held=True),
        inbound("  \n\n"),
    ],
)
def test_only_a_real_inbound_mail_is_quoted(previous: Article | None) -> None:
    text = compose_reply("Ok.", queue=queue(), variables=MARIA, language="en", previous=previous)
    assert text == "Ok.\n\n-- \nAlice\nInfo Team"


def test_compose_from_a_parsed_config(tmp_path: Path) -> None:
    data = {
        "mail": {"maildir": {"path": "mail"}, "files": {"path": "out"}},
        "console": {},
        "queue": [
            {
                "name": "info",
                "addresses": ["info@example.org"],
                "default": True,
                "language": "DE",
                "salutation": {"de": "Hallo {requester_name},", "en": "Hello {requester_name},"},
                "signature": "Ihr Team {queue}",
                "anonymous": True,
            },
            {"name": "info::fr", "language": "fr", "salutation": "Bonjour {requester_name},"},
        ],
    }
    config = parse_config(data, tmp_path / "bot.toml", {})
    info, french = config.queue("info"), config.queue("info::fr")
    text = compose_reply("Ok.", queue=info, variables=MARIA, language="", previous=None)
    assert text == "Hallo Maria,\n\nOk.\n\nIhr Team info"
    text = compose_reply("Ok.", queue=french, variables=MARIA, language="", previous=None)
    assert text == "Bonjour Maria,\n\nOk.\n\nIhr Team info"


def test_a_reply_quoting_our_reply_is_stripped_back() -> None:
    """What we send comes back quoted in the requester's answer: chat shows only the answer."""
    for language in ("en", "de", "fr", "es", "nl", "it", "pt"):
        sent = compose_reply(
            "Yes.", queue=queue(), variables=MARIA, language=language, previous=inbound("Q?")
        )
        answer = "Thanks!\n\n" + "On 23 Nov 2026, at 10:05, Info Team <info@example.org> wrote:\n"
        answer += "\n".join("> " + line if line else ">" for line in sent.splitlines())
        assert strip_quoted(answer) == "Thanks!", language
        # and our own attribution line (now quoted once more) introduces a block itself
        nested = "Thanks!\n\n" + sent.split("\n\n")[-1]
        assert strip_quoted(nested) == "Thanks!", language


# --- acknowledgement -------------------------------------------------------------------------


ACK = queue(
    autoresponse_new={
        "en": "Thank you, {requester_name}. Your ticket is {ticket_number}.",
        "de": "Danke, {requester_name}. Ihr Ticket ist {ticket_number}.",
    },
    autoresponse_reopen={"*": "Ticket {ticket_number} is open again."},
    signature={"*": "-- \n{volunteer_name}"},
)


def test_acknowledgement_new_and_reopen_by_language() -> None:
    assert acknowledgement(ACK, "new", "de", MARIA) == (
        "Danke, Maria. Ihr Ticket ist 2026112310000001.\n\n-- \nAlice"
    )
    assert acknowledgement(ACK, "new", "ja", MARIA) == (
        "Thank you, Maria. Your ticket is 2026112310000001.\n\n-- \nAlice"
    )
    assert acknowledgement(ACK, "reopen", "fr", MARIA) == (
        "Ticket 2026112310000001 is open again.\n\n-- \nAlice"
    )


def test_acknowledgement_signs_with_the_team_without_a_volunteer_or_when_anonymous() -> None:
    bot = replace(MARIA, volunteer_name="")
    assert acknowledgement(ACK, "reopen", "en", bot) == (
        "Ticket 2026112310000001 is open again.\n\n-- \nInfo Team"
    )
    anonymous = replace(ACK, anonymous=True)
    assert acknowledgement(anonymous, "reopen", "en", MARIA) == (
        "Ticket 2026112310000001 is open again.\n\n-- \nInfo Team"
    )


def test_acknowledgement_without_signature() -> None:
    plain = replace(ACK, signature={})
    assert acknowledgement(plain, "reopen", "en", MARIA) == "Ticket 2026112310000001 is open again."


def test_no_acknowledgement_when_the_queue_has_none() -> None:
    assert acknowledgement(queue(), "new", "en", MARIA) is None
    assert acknowledgement(replace(ACK, autoresponse_reopen={}), "reopen", "en", MARIA) is None
    assert acknowledgement(queue(autoresponse_new={"de": "Danke"}), "new", "en", MARIA) is None
    switched_off = replace(ACK, autoresponse_new={"en": "Thanks", "ja": ""})
    assert acknowledgement(switched_off, "new", "ja", MARIA) is None


# --- strip_quoted ----------------------------------------------------------------------------

GMAIL = """\
Thanks, that worked!

Maria

On Mon, Nov 23, 2026 at 10:00 AM Info Team <info@example.org> wrote:

> Hello Maria,
>
> yes, you may use the photo.
>
> --
> Alice
> Info Team
"""

GMAIL_WRAPPED = """\
Thanks, that worked!

On Mon, Nov 23, 2026 at 10:00 AM Info Team of the Example Organisation <
info@example.org> wrote:

> Hello Maria,
"""

THUNDERBIRD = """\
Thanks, that worked!

On 23.11.26 10:00, Info Team wrote:
> Hello Maria,
>
> yes.
"""

THUNDERBIRD_DE = """\
Danke, das hat geklappt!

Am 23.11.26 um 10:00 schrieb Info Team:
> Hallo Maria,
> ja.
"""

GMAIL_DE = """\
Danke!

Am Mo., 23. Nov. 2026 um 10:00 Uhr schrieb Info Team <info@example.org>:

> Hallo Maria,
"""

APPLE_MAIL = """\
Thanks, that worked!

Sent from my iPhone

> On 23 Nov 2026, at 10:00, Info Team <info@example.org> wrote:
>
> Hello Maria,
"""

APPLE_MAIL_UNQUOTED_ATTRIBUTION = """\
Thanks, that worked!

On 23 Nov 2026, at 10:00, Info Team <info@example.org> wrote:

> Hello Maria,
"""

FRENCH = """\
Merci !

Le lun. 23 nov. 2026 à 10:00, Info Team <info@example.org> a écrit :

> Bonjour Maria,
"""

SPANISH = """\
¡Gracias!

El lun, 23 nov 2026 a las 10:00, Info Team (<info@example.org>) escribió:

> Hola Maria,
"""

DUTCH = """\
Bedankt!

Op ma 23 nov. 2026 om 10:00 schreef Info Team <info@example.org>:

> Hallo Maria,
"""

ITALIAN = """\
Grazie!

Il giorno lun 23 nov 2026 alle ore 10:00 Info Team <info@example.org> ha scritto:

> Ciao Maria,
"""

PORTUGUESE = """\
Obrigada!

Em seg., 23 de nov. de 2026 às 10:00, Info Team <info@example.org> escreveu:

> Olá Maria,
"""

OUTLOOK = """\
Thanks, that worked!

Maria Schmidt

-----Original Message-----
From: Info Team <info@example.org>
Sent: Monday, November 23, 2026 10:00 AM
To: Maria Schmidt <maria@example.net>
Subject: RE: [Ticket#2026112310000001] Photo question

Hello Maria,

yes.
"""

OUTLOOK_DE = """\
Danke!

-----Ursprüngliche Nachricht-----
Von: Info Team <info@example.org>
Gesendet: Montag, 23. November 2026 10:00
An: Maria Schmidt <maria@example.net>
Betreff: AW: Fotofrage

Hallo Maria,
"""

OUTLOOK_RULE = """\
Thanks, that worked!

________________________________
From: Info Team <info@example.org>
Sent: Monday, November 23, 2026 10:00 AM
To: Maria Schmidt <maria@example.net>
Subject: RE: Photo question

Hello Maria,
"""

OUTLOOK_RULE_DE = """\
Danke!

________________________________
Von: Info Team <info@example.org>
Gesendet: Montag, 23. November 2026 10:00

Hallo Maria,
"""

OUTLOOK_HEADER_ONLY = """\
Thanks, that worked!

*From:* Info Team <info@example.org>
*Sent:* Monday, November 23, 2026 10:00 AM
*To:* Maria Schmidt <maria@example.net>

Hello Maria,
"""

FIRST_LINES = {
    "gmail": (GMAIL, "Thanks, that worked!\n\nMaria"),
    "gmail wrapped": (GMAIL_WRAPPED, "Thanks, that worked!"),
    "thunderbird": (THUNDERBIRD, "Thanks, that worked!"),
    "thunderbird de": (THUNDERBIRD_DE, "Danke, das hat geklappt!"),
    "gmail de": (GMAIL_DE, "Danke!"),
    "apple mail": (APPLE_MAIL, "Thanks, that worked!\n\nSent from my iPhone"),
    "apple mail attribution": (APPLE_MAIL_UNQUOTED_ATTRIBUTION, "Thanks, that worked!"),
    "french": (FRENCH, "Merci !"),
    "spanish": (SPANISH, "¡Gracias!"),
    "dutch": (DUTCH, "Bedankt!"),
    "italian": (ITALIAN, "Grazie!"),
    "portuguese": (PORTUGUESE, "Obrigada!"),
    "outlook": (OUTLOOK, "Thanks, that worked!\n\nMaria Schmidt"),
    "outlook de": (OUTLOOK_DE, "Danke!"),
    "outlook rule": (OUTLOOK_RULE, "Thanks, that worked!"),
    "outlook rule de": (OUTLOOK_RULE_DE, "Danke!"),
    "outlook header": (OUTLOOK_HEADER_ONLY, "Thanks, that worked!"),
}


@pytest.mark.parametrize("sample", sorted(FIRST_LINES))
def test_strip_quoted_real_mail(sample: str) -> None:
    text, expected = FIRST_LINES[sample]
    assert strip_quoted(text) == expected
    assert strip_quoted(text.replace("\n", "\r\n")) == expected


def test_unquoted_history_after_an_attribution_with_an_address_is_cut() -> None:
    text = (
        "Thanks!\n\n"
        "On Mon, Nov 23, 2026 at 10:00 AM Info Team <info@example.org> wrote:\n\n"
        "Hello Maria,\nyes.\n"
    )
    assert strip_quoted(text) == "Thanks!"


def test_prose_that_looks_like_an_attribution_is_kept() -> None:
    text = "On Monday the printer wrote:\nERROR 42 paper jam\n\nWhat does it mean?"
    assert strip_quoted(text) == text
    german = "Am Ende schrieb ich Ihnen:\nbitte melden!\n"
    assert strip_quoted(german) == german


def test_interleaved_answers_are_kept() -> None:
    text = (
        "On Mon, Nov 23, 2026 at 10:00 AM Info Team <info@example.org> wrote:\n"
        "> Which photo?\n"
        "The one from the homepage.\n"
        "\n"
        "> Where will you print it?\n"
        "In our newsletter.\n"
        "\n"
        "Maria\n"
    )
    assert strip_quoted(text) == text


def test_bottom_posting_keeps_the_quote_above_the_answer() -> None:
    text = "Info Team wrote:\n> Which photo?\n\nThe one from the homepage.\n"
    assert strip_quoted(text) == text


def test_interleaved_answers_lose_only_the_trailing_rest_of_the_quote() -> None:
    text = (
        "On Mon, Nov 23, 2026 at 10:00 AM Info Team <info@example.org> wrote:\n"
        "> Which photo?\n"
        "The one from the homepage.\n"
        "\n"
        "> Kind regards\n"
        "> Alice\n"
    )
    assert strip_quoted(text) == (
        "On Mon, Nov 23, 2026 at 10:00 AM Info Team <info@example.org> wrote:\n"
        "> Which photo?\n"
        "The one from the homepage."
    )


def test_a_signature_after_the_quote_stays() -> None:
    text = (
        "Thanks!\n\n"
        "On Mon, Nov 23, 2026 at 10:00 AM Info Team <info@example.org> wrote:\n"
        "> Hello Maria,\n"
        "\n"
        "-- \n"
        "Maria Schmidt\n"
        "Example Photo Club\n"
    )
    assert strip_quoted(text) == "Thanks!\n\n-- \nMaria Schmidt\nExample Photo Club"


def test_a_signature_above_the_quote_stays() -> None:
    text = "Thanks!\n-- \nMaria\n\nOn 23.11.26 10:00, Info Team wrote:\n> Hello Maria,\n"
    assert strip_quoted(text) == "Thanks!\n-- \nMaria"


def test_nested_quotes_go_together() -> None:
    text = (
        "Thanks!\n\n"
        "On 23.11.26 11:00, Info Team wrote:\n"
        "> Yes.\n"
        ">\n"
        "> On 23.11.26 10:00, Maria wrote:\n"
        ">> May I?\n"
    )
    assert strip_quoted(text) == "Thanks!"


@pytest.mark.parametrize(
    "text",
    [
        "> only\n> a quote\n",
        "On 23.11.26 10:00, Info Team wrote:\n> Hello\n",
        "-----Original Message-----\nFrom: a@example.org\nSent: today\n\nHello\n",
        "\n\n> quoted\n\n-- \nMaria\n",
        "",
        "   \n",
    ],
)
def test_nothing_new_returns_the_input_unchanged(text: str) -> None:
    assert strip_quoted(text) == text


def test_a_forwarded_mail_is_content() -> None:
    text = (
        "Please see below, is this you?\n\n"
        "---------- Forwarded message ---------\n"
        "From: Someone <someone@example.com>\n"
        "Date: Mon, Nov 23, 2026 at 9:00 AM\n"
        "Subject: Your photo\n"
        "To: <maria@example.net>\n\n"
        "I found your photo on my site.\n"
    )
    assert strip_quoted(text) == text


def test_a_from_and_date_in_the_requesters_own_words_are_content() -> None:
    text = "Our exhibition:\nFrom: 10:00 to 18:00\nDate: Monday, 23 November\n\nMay we use it?"
    assert strip_quoted(text) == text


def test_an_outlook_header_without_address_needs_a_subject() -> None:
    text = (
        "Thanks!\n\nFrom: Info Team\nSent: Monday, November 23, 2026 10:00 AM\n"
        "To: Maria\nSubject: RE: Photo\n\nHello Maria,\n"
    )
    assert strip_quoted(text) == "Thanks!"


def test_unchanged_text_keeps_its_exact_form() -> None:
    text = "Line one\r\n\r\nLine two  \r\n"
    assert strip_quoted(text) == text


def test_pgp_armour_is_not_an_original_message_marker() -> None:
    text = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nHello\n"
    assert strip_quoted(text) == text


def _timed(text: str) -> tuple[str, float]:
    start = time.perf_counter()
    result = strip_quoted(text)
    return result, time.perf_counter() - start


def test_a_megabyte_of_quote_lines_is_fast() -> None:
    text = "> quoted line of an old message\n" * (1_000_000 // 32)
    result, seconds = _timed(text)
    assert result == text
    assert seconds < 1.0
    result, seconds = _timed("Thanks!\n\n" + text)
    assert result == "Thanks!"
    assert seconds < 1.0


#: Shapes that make each line a candidate for some detector, about 200 KB each: a
#: quadratic scan would take minutes on these, a linear one milliseconds.
HOSTILE = {
    "one long line": "x" * 100_000,
    "long attribution": "On " + "x" * 100_000 + " wrote:",
    "many wrote": "On " + " wrote: " * 15_000 + "\n> q",
    "many colons": "From: " + ":" * 100_000,
    "dashes": "-" * 100_000,
    "underscores": "_" * 100_000 + "\nFrom: x",
    "spaces": " " * 100_000 + "On x wrote:",
    "attribution starts": ("On a\n" * 40_000) + "> q",
    "wrapped attributions": ("On a <\nx@y> wrote:\n" * 10_000) + "> q",
    "header starts": ("From: a\nTo: b\n" * 15_000) + "x",
    "header blocks": "From: a\nSent: b\n" * 15_000,
    "interleaved": "Am x schrieb y:\n> q\nanswer\n" * 8_000,
    "quote and blank": (">\n\n" * 70_000) + "x",
    "short quotes": "x\n" + ">\n" * 100_000,
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_input_is_linear(name: str) -> None:
    result, seconds = _timed(HOSTILE[name])
    assert result
    assert seconds < 1.0


_LINES = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "",
            ">",
            "> quoted",
            ">> deeper",
            "-- ",
            "On 23.11.26 10:00, Info Team <info@example.org> wrote:",
            "On Mon, Nov 23, 2026 at 10:00 AM Info <",
            "info@example.org> wrote:",
            "Am 23.11.26 um 10:00 schrieb Info:",
            "-----Original Message-----",
            "________________________________",
            "From: Info <info@example.org>",
            "Sent: Monday",
            "Hello",
        ]
    ),
)


def _has_own_text(text: str) -> bool:
    return any(line.strip() and not line.startswith(">") for line in text.splitlines())


@settings(max_examples=400, deadline=None)
@given(st.lists(_LINES, max_size=15).map("\n".join))
def test_strip_quoted_never_raises_and_never_empties_own_text(text: str) -> None:
    result = strip_quoted(text)
    if _has_own_text(text):
        assert result.strip()
    # it only ever removes lines: each line shown was in the mail
    original = set(text.splitlines())
    assert all(line in original for line in result.splitlines() if line)
