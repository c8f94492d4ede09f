"""Routing rules: read and checked from [[rule]], applied first-match-wins, explained."""

from __future__ import annotations

import time
import tomllib
from typing import Any

import pytest

from bot.config import ConfigError
from bot.mail import Address, InboundEmail
from bot.rules import (
    MAX_HEADERS,
    MAX_LINE_CHARS,
    MAX_MATCH_CHARS,
    Decision,
    Rule,
    RuleInput,
    decide,
    explain,
    parse_rules,
)

QUEUES = {"info", "info::de", "press"}
JUERGEN = Address("jm@example.com", "Jürgen")
INFO = Address("info@example.org")

RAW = (
    b"From: =?utf-8?q?J=C3=BCrgen?= <jm@example.com>\r\n"
    b"To: info@example.org\r\n"
    b"Subject: Presse-Anfrage\r\n"
    b"X-Mailer: Microsoft Outlook 16.0\r\n"
    b"X-Campaign: =?utf-8?b?R3LDvMOfZSBhdXMgTcO8bmNoZW4=?=\r\n"
    b"X-Campaign: second\r\n"
    b"X-Folded: first part\r\n  second part\r\n"
    b"\r\n"
    b"X-Not-A-Header: in the body\r\n"
)


def mail(
    *,
    subject: str = "Presse-Anfrage",
    text: str = "Guten Tag, wir möchten ein Interview führen.",
    sender: Address = JUERGEN,
    to: tuple[Address, ...] = (INFO,),
    cc: tuple[Address, ...] = (),
    raw: bytes = RAW,
) -> InboundEmail:
    return InboundEmail(
        raw=raw, message_id="<a@x>", subject=subject, sender=sender, to=to, cc=cc, text=text
    )


def item(language: str = "de", marks: frozenset[str] = frozenset(), **kw: Any) -> RuleInput:
    return RuleInput(email=mail(**kw), language=language, sender_marks=marks)


def rules(toml: str) -> tuple[Rule, ...]:
    return parse_rules(tomllib.loads(toml).get("rule", []), QUEUES)


def error(raw: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_rules(raw, QUEUES)
    return info.value


def one(match: dict[str, Any], **action: Any) -> tuple[Rule, ...]:
    return parse_rules([{"match": match, **(action or {"tags": ["t"]})}], QUEUES)


def fires(match: dict[str, Any], subject: RuleInput) -> bool:
    return decide(one(match), subject) is not None


# --- reading ---------------------------------------------------------------------------------


def test_the_documented_shape_is_read() -> None:
    parsed = rules(
        """
        [[rule]]
        name = "German mail to info"
        match = { language = "DE", to = "info@example.org" }
        queue = "info::de"
        [[rule]]
        match = { subject_regex = "(?i)\\\\bpress\\\\b|presse", "header:X-Mailer" = "Outlook" }
        priority = 4
        tags = ["Press", "press"]
        [[rule]]
        match = { sender_mark = "spam" }
        spam = true
        enabled = false
        """
    )
    first, second, third = parsed
    assert (first.number, first.name, first.queue) == (1, "German mail to info", "info::de")
    language, to = first.conditions
    assert (language.field, language.equals, language.contains) == ("language", "de", None)
    assert (to.field, to.contains, to.regex) == ("to", "info@example.org", None)
    assert second.conditions[0].regex == "(?i)\\bpress\\b|presse"
    assert second.conditions[1].field == "header:X-Mailer"
    assert (second.priority, second.tags, second.name) == (4, ("press",), "")
    assert third.spam and not third.enabled and third.number == 3


def test_no_rules_at_all_is_fine() -> None:
    assert parse_rules([], QUEUES) == ()


@pytest.mark.parametrize(
    ("raw", "key", "reason"),
    [
        ({"match": {}}, "rule", "[[rule]] tables"),
        ([{"match": {"subject": "x"}, "tags": ["a"]}, "oops"], "rule", "[[rule]] tables"),
        ([{"tags": ["a"]}], "rule[0].match", "is required"),
        ([{"match": "subject", "tags": ["a"]}], "rule[0].match", "must be a table"),
        ([{"match": {}, "tags": ["a"]}], "rule[0].match", "at least one condition"),
        ([{"match": {"subject": "x"}}], "rule[0]", "does nothing"),
        ([{"match": {"subject": "x"}, "spam": False}], "rule[0]", "does nothing"),
        ([{"match": {"subject": "x"}, "queue": "x"}], "rule[0].queue", "no queue named 'x'"),
        ([{"match": {"subject": "x"}, "queue": 3}], "rule[0].queue", "must be a string"),
        ([{"match": {"subject": "x"}, "priority": 0}], "rule[0].priority", "1 (lowest) to 5"),
        ([{"match": {"subject": "x"}, "priority": 6}], "rule[0].priority", "got 6"),
        ([{"match": {"subject": "x"}, "priority": True}], "rule[0].priority", "got True"),
        ([{"match": {"subject": "x"}, "tags": "a"}], "rule[0].tags", "list of strings"),
        ([{"match": {"subject": "x"}, "tags": ["two words"]}], "rule[0].tags", "not a tag"),
        ([{"match": {"subject": "x"}, "tags": [" "]}], "rule[0].tags", "not a tag"),
        ([{"match": {"subject": "x"}, "spam": "yes"}], "rule[0].spam", "true or false"),
        ([{"match": {"subject": "x"}, "spam": True, "enabled": 1}], "rule[0].enabled", "true"),
        ([{"match": {"subject": "x"}, "spam": True, "name": 1}], "rule[0].name", "string"),
        ([{"match": {"subject": "x"}, "spam": True, "colour": 1}], "rule[0].colour", "unknown"),
        ([{"match": {"subjekt": "x"}, "spam": True}], "rule[0].match.subjekt", "unknown field"),
        ([{"match": {"subject": 1}, "spam": True}], "rule[0].match.subject", "must be a string"),
        ([{"match": {"subject": " "}, "spam": True}], "rule[0].match.subject", "not be empty"),
        ([{"match": {"body_regex": ""}, "spam": True}], "rule[0].match.body_regex", "empty"),
        ([{"match": {"header:": "x"}, "spam": True}], "rule[0].match.header:", "header name"),
        ([{"match": {"header:A B": "x"}, "spam": True}], "rule[0].match.header:A B", "header"),
    ],
)
def test_mistakes_are_refused_naming_the_key(raw: Any, key: str, reason: str) -> None:
    err = error(raw)
    assert err.key == key and reason in err.reason, str(err)


def test_a_broken_regex_names_the_key_of_the_rule_that_holds_it() -> None:
    good = {"match": {"subject": "x"}, "tags": ["a"]}
    err = error([good, good, {"match": {"subject_regex": "(unclosed"}, "tags": ["a"]}])
    assert err.key == "rule[2].match.subject_regex"
    assert err.reason.startswith("not a valid regular expression: ")


def test_unknown_queue_lists_the_queues() -> None:
    err = error([{"match": {"subject": "x"}, "queue": "infos"}])
    assert "info, info::de, press" in err.reason


def test_rules_in_bot_toml_are_read_by_the_config(tmp_path: Any) -> None:
    from bot.config import load_config

    base = (
        '[mail.maildir]\npath = "m"\n[mail.files]\npath = "o"\n[console]\n'
        '[[queue]]\nname = "info"\naddresses = ["info@example.org"]\ndefault = true\n'
        '[[queue]]\nname = "info::de"\n'
    )
    path = tmp_path / "bot.toml"
    path.write_text(base + '[[rule]]\nmatch = { language = "de" }\nqueue = "info::de"\n')
    assert load_config(path, {}).rules[0].queue == "info::de"
    path.write_text(base + '[[rule]]\nmatch = { language = "de" }\nqueue = "nope"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert info.value.key == "rule[0].queue"


# --- fields ----------------------------------------------------------------------------------


def test_subject_contains_ignores_case() -> None:
    assert fires({"subject": "PRESSE"}, item())
    assert not fires({"subject": "invoice"}, item())


def test_body() -> None:
    assert fires({"body": "interview"}, item())
    assert not fires({"body": "rechnung"}, item())


def test_from_matches_name_and_address() -> None:
    assert fires({"from": "jürgen"}, item())
    assert fires({"from": "@example.com"}, item())
    assert not fires({"from": "@example.org"}, item())


def test_to_matches_any_recipient_including_cc() -> None:
    subject = item(to=(Address("a@example.org"),), cc=(Address("press@example.org", "Press"),))
    assert fires({"to": "press@example.org"}, subject)
    assert fires({"to_regex": "^press <"}, subject)
    assert not fires({"to": "info@example.org"}, subject)


def test_language_is_an_exact_comparison() -> None:
    assert fires({"language": "de"}, item(language="de"))
    assert fires({"language": "DE"}, item(language="de"))
    assert not fires({"language": "d"}, item(language="de"))
    assert not fires({"language": "de"}, item(language=""))


def test_sender_mark_is_an_exact_comparison() -> None:
    assert fires({"sender_mark": "spam"}, item(marks=frozenset({"vip", "spam"})))
    assert not fires({"sender_mark": "spa"}, item(marks=frozenset({"spam"})))
    assert not fires({"sender_mark": "spam"}, item())


def test_header_contains_and_missing_header() -> None:
    assert fires({"header:X-Mailer": "outlook"}, item())
    assert fires({"header:x-mailer": "Outlook"}, item())  # header names ignore case
    assert not fires({"header:X-Mailer": "Thunderbird"}, item())
    assert not fires({"header:X-Absent_regex": ".*"}, item())


def test_header_values_are_decoded_unfolded_and_all_occurrences_count() -> None:
    subject = item()
    assert subject.headers["x-campaign"] == ("Grüße aus München", "second")
    assert subject.headers["x-folded"] == ("first part  second part",)
    assert fires({"header:X-Campaign": "grüße"}, subject)
    assert fires({"header:X-Campaign": "second"}, subject)
    assert "x-not-a-header" not in subject.headers  # the body is not read


def test_broken_and_8bit_headers_never_raise() -> None:
    raw = (
        b"X-Bad: =?utf-8?b?!!!?= =?no-such-charset?q?abc?=\r\n"
        b"X-Latin: caf\xe9 \xff\xfe\r\n"
        b"X-Utf8: Gr\xc3\xbc\xc3\x9fe\r\n"
        b"not a header line at all\r\n"
    )
    subject = item(raw=raw)
    assert "abc" in subject.headers["x-bad"][0]
    assert subject.headers["x-utf8"] == ("Grüße",)
    assert subject.headers["x-latin"][0].startswith("caf")
    assert item(raw=b"").headers == {}
    assert item(raw=b"\x00\xff" * 1000).headers is not None


def test_only_the_first_headers_are_read() -> None:
    raw = b"".join(b"X-N: %d\r\n" % i for i in range(MAX_HEADERS + 50)) + b"X-Late: yes\r\n"
    subject = item(raw=raw)
    assert len(subject.headers["x-n"]) == MAX_HEADERS
    assert "x-late" not in subject.headers


# --- regex, AND, order -----------------------------------------------------------------------


def test_regex_ignores_case_and_searches_anywhere() -> None:
    assert fires({"subject_regex": r"\bpresse\b"}, item())
    assert fires({"body_regex": r"inter\w+"}, item())
    assert not fires({"subject_regex": r"^anfrage"}, item())


def test_all_conditions_must_match() -> None:
    assert fires({"language": "de", "subject": "presse"}, item(language="de"))
    assert not fires({"language": "de", "subject": "presse"}, item(language="en"))
    assert not fires({"language": "de", "subject": "invoice"}, item(language="de"))


def test_the_first_matching_rule_wins() -> None:
    parsed = rules(
        """
        [[rule]]
        match = { subject = "invoice" }
        queue = "info"
        [[rule]]
        name = "German"
        match = { language = "de" }
        queue = "info::de"
        [[rule]]
        match = { subject = "presse" }
        queue = "press"
        priority = 5
        """
    )
    decision = decide(parsed, item())
    assert decision is not None and decision.rule is parsed[1]
    assert (decision.queue, decision.priority, decision.tags, decision.spam) == (
        "info::de",
        None,
        (),
        False,
    )
    assert decision.reason == "rule 2 (German): language de"


def test_disabled_rules_are_skipped() -> None:
    parsed = rules(
        """
        [[rule]]
        enabled = false
        match = { language = "de" }
        spam = true
        [[rule]]
        match = { subject = "presse" }
        tags = ["press"]
        """
    )
    decision = decide(parsed, item())
    assert decision is not None and decision.tags == ("press",) and not decision.spam


def test_nothing_matches() -> None:
    assert decide(one({"subject": "invoice"}), item()) is None
    assert decide((), item()) is None


def test_decision_without_rule_has_no_actions() -> None:
    empty = Decision(None, "no rule matched")
    assert (empty.queue, empty.priority, empty.tags, empty.spam) == (None, None, (), False)


def test_reason_values_are_shortened() -> None:
    long = "presse" + "x" * 200
    decision = decide(one({"subject": long}), item(subject=long))
    assert decision is not None
    assert len(decision.reason) < 120 and "…" in decision.reason


# --- explain ---------------------------------------------------------------------------------


def test_explain_lists_every_rule_and_the_verdict() -> None:
    parsed = rules(
        """
        [[rule]]
        match = { subject = "invoice" }
        queue = "info"
        [[rule]]
        enabled = false
        match = { language = "de" }
        spam = true
        [[rule]]
        name = "German press"
        match = { language = "de", subject_regex = "press?e" }
        queue = "press"
        priority = 4
        tags = ["press"]
        [[rule]]
        match = { "header:X-Mailer" = "outlook" }
        tags = ["outlook"]
        [[rule]]
        match = { language = "fr" }
        tags = ["fr"]
        [[rule]]
        match = { sender_mark = "spam" }
        spam = true
        [[rule]]
        match = { "header:X-Spam-Flag" = "YES" }
        spam = true
        [[rule]]
        match = { to = "press@example.org" }
        queue = "press"
        """
    )
    lines = explain(parsed, item())
    assert lines == [
        "rule 1: no — subject does not contain 'invoice'",
        "rule 2: disabled",
        "rule 3 (German press): fires — language de, subject matches /press?e/ at 'Presse'"
        " => queue press, priority 4, tags press",
        "rule 4: would fire — header X-Mailer contains 'outlook' (not used: rule 3 came first)",
        "rule 5: no — language is de, not fr",
        "rule 6: no — the sender has no marks",
        "rule 7: no — header X-Spam-Flag is missing",
        "rule 8: no — no recipient contains 'press@example.org'",
        "verdict: rule 3 (German press) => queue press, priority 4, tags press",
    ]


def test_explain_when_nothing_fires() -> None:
    lines = explain(one({"sender_mark": "vip"}, priority=5), item(marks=frozenset({"spam"})))
    assert lines == ["rule 1: no — no sender mark 'vip' (marks: spam)", "verdict: no rule matched"]
    assert explain((), item()) == ["verdict: no rule matched"]


# --- hostile input ---------------------------------------------------------------------------


def test_huge_texts_are_searched_only_up_to_the_limit() -> None:
    tail = "a" * (MAX_MATCH_CHARS + 10) + "needle"
    assert not fires({"body": "needle"}, item(text=tail))
    assert not fires({"body_regex": "needle"}, item(text=tail))
    assert fires({"body": "needle"}, item(text="needle" + tail))


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        (r"\w+@\w+\.\w+z", "x" * 5_000_000),  # one endless word
        (r".*urgent", "word " * 1_000_000),  # one endless line
        (r"\S+@\S+z", ("y" * 300_000 + "\n") * 10),
    ],
)
def test_quadratic_regexes_on_a_huge_mail_stay_bounded(pattern: str, text: str) -> None:
    # Without the cut and the broken lines, each took minutes; with them, well under 1 s.
    rule = one({"body_regex": pattern, "subject_regex": pattern})
    big = item(text=text, subject=text)
    started = time.perf_counter()
    assert decide(rule, big) is None
    assert time.perf_counter() - started < 5.0


def test_long_lines_are_broken_at_a_space_for_regexes_only() -> None:
    line = "lorem ipsum " * 1000 + "needle"
    subject = item(text=line)
    assert all(len(part) <= MAX_LINE_CHARS for part in subject.regex_values("body")[0].split("\n"))
    assert fires({"body_regex": r"ipsum\s+needle$"}, subject)
    assert fires({"body": "ipsum needle"}, subject)
    assert fires({"body_regex": r"first\s+second"}, item(text="the first\nsecond"))


def test_huge_raw_headers_are_read_quickly() -> None:
    raw = b"Subject: " + b"=?utf-8?q?a?= " * 200_000 + b"\r\nX-Mailer: Outlook\r\n\r\nbody"
    started = time.perf_counter()
    subject = item(raw=raw)
    assert not fires({"header:Subject_regex": "b"}, subject)
    assert not fires({"header:X-Mailer": "x"}, subject)  # beyond the bytes read
    assert time.perf_counter() - started < 2.0
