"""``ticketbot route``: where a saved mail would go and why; and the offline language detector."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from adapters.language import MAX_CHARS, Py3LangidDetector, clean_text
from bot.cli import main

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """
[mail.maildir]
path = "mail"
[mail.files]
path = "out"
[console]
[[queue]]
name = "info"
addresses = ["info@example.org"]
default = true
[[queue]]
name = "info::de"
[[queue]]
name = "press"
addresses = ["press@example.org"]

[[rule]]
match = { sender_mark = "spam" }
spam = true

[[rule]]
name = "German mail to info"
match = { language = "de", to = "info@example.org" }
queue = "info::de"

[[rule]]
match = { subject_regex = '\\bpress\\b|presse', "header:X-Mailer" = "Outlook" }
priority = 4
tags = ["press"]

[[rule]]
enabled = false
match = { subject = "x" }
tags = ["x"]
"""

GERMAN = (
    "Sehr geehrte Damen und Herren, ich schreibe für eine Zeitung und würde gerne ein "
    "Interview mit Ihnen führen. Wann hätten Sie Zeit?"
)
ENGLISH = (
    "Hello, I have a question about my order. Unfortunately the parcel has not arrived "
    "yet. Could you please help me?"
)
FRENCH = (
    "Bonjour, j'ai une question concernant ma commande. Malheureusement le colis n'est "
    "pas encore arrivé. Pouvez-vous m'aider ?"
)
JAPANESE = (
    "こんにちは。注文について質問があります。"
    "残念ながら荷物がまだ届いていません。助けていただけますか？"
)


def eml(to: str, subject: str, body: str, mailer: str = "Microsoft Outlook 16.0") -> bytes:
    return (
        "From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <jm@example.com>\r\n"
        f"To: {to}\r\n"
        f"Subject: {subject}\r\n"
        f"X-Mailer: {mailer}\r\n"
        "Message-ID: <route-test@example.com>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        f"{body}\r\n"
    ).encode()


@pytest.fixture
def setup(tmp_path: Path) -> Path:
    (tmp_path / "bot.toml").write_text(CONFIG, encoding="utf-8")
    return tmp_path


def route(
    setup: Path, raw: bytes, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str, str]:
    path = setup / "mail.eml"
    path.write_bytes(raw)
    code = main(["route", str(path), "--config", str(setup / "bot.toml"), *extra])
    out, err = capsys.readouterr()
    return code, out, err


# --- ticketbot route -------------------------------------------------------------------------


def test_route_explain_shows_mail_language_rules_and_result(
    setup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = eml("info@example.org", "=?utf-8?q?Presse-Anfrage_f=C3=BCr_Interview?=", GERMAN)
    code, out, _ = route(setup, raw, capsys, "--explain")
    assert code == 0
    lines = [line.strip() for line in out.splitlines()]
    assert "from:     Jürgen Müller <jm@example.com>" in lines
    assert "to:       info@example.org" in lines
    assert "subject:  Presse-Anfrage für Interview" in lines
    assert any(line.startswith("language: de") for line in lines)
    assert "queue by address: info (sent to info@example.org)" in lines
    assert "rule 1: no — the sender has no marks" in lines
    assert (
        "rule 2 (German mail to info): fires — language de, a recipient contains "
        "'info@example.org' => queue info::de"
    ) in lines
    assert any(line.startswith("rule 3: would fire — subject matches") for line in lines)
    assert "rule 4: disabled" in lines
    assert "verdict: rule 2 (German mail to info) => queue info::de" in lines
    result = out[out.index("result:") :]
    assert "queue:    info::de" in result
    assert "priority: 3 (default)" in result
    assert "spam:     no" in result


def test_route_without_explain_prints_only_the_result(
    setup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = eml("press@example.org", "Press release", ENGLISH)
    code, out, _ = route(setup, raw, capsys)
    assert code == 0
    assert "rules:" not in out and "rule 1:" not in out
    assert "language: en" in out
    assert "queue by address: press (sent to press@example.org)" in out
    result = out[out.index("result:") :]
    assert "decided by: rule 3: subject matches" in result
    assert "queue:    press" in result  # the rule sets no queue: the address decides
    assert "priority: 4" in result and "tags:     press" in result


def test_route_with_a_sender_mark(setup: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = route(
        setup, eml("info@example.org", "Hi", ENGLISH), capsys, "--sender-mark", "SPAM"
    )
    assert code == 0
    assert "sender marks: spam" in out
    assert "decided by: rule 1: sender mark spam" in out and "spam:     yes" in out


def test_route_unknown_address_and_no_match(
    setup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = eml("nobody@example.net", "Hi", ENGLISH, mailer="Thunderbird")
    code, out, _ = route(setup, raw, capsys, "--explain")
    assert code == 0
    assert "queue by address: info (default: sent to no queue address)" in out
    assert "rule 3: no — subject does not match" in out
    assert "verdict: no rule matched" in out
    assert "decided by: no rule matched" in out and "queue:    info\n" in out


def test_route_with_no_rules_configured(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bot.toml").write_text(CONFIG.split("[[rule]]")[0], encoding="utf-8")
    code, out, _ = route(tmp_path, eml("info@example.org", "Hallo", GERMAN), capsys, "--explain")
    assert code == 0
    assert "rules: none configured" in out and "queue:    info\n" in out


def test_route_a_missing_file_exits_2(setup: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["route", str(setup / "absent.eml"), "--config", str(setup / "bot.toml")])
    err = capsys.readouterr().err
    assert code == 2
    assert "absent.eml" in err and "No such file" in err


def test_route_with_a_bad_config_exits_2(setup: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (setup / "bot.toml").write_text(CONFIG.replace('queue = "info::de"', 'queue = "nope"'))
    (setup / "mail.eml").write_bytes(eml("info@example.org", "Hi", ENGLISH))
    code = main(["route", str(setup / "mail.eml"), "--config", str(setup / "bot.toml")])
    err = capsys.readouterr().err
    assert code == 2 and "rule[1].queue" in err and "no queue named 'nope'" in err


def test_route_help_has_an_example() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "route", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert "ticketbot route --explain mail.eml" in result.stdout
    assert "--sender-mark" in result.stdout


def test_route_runs_as_a_command(setup: Path) -> None:
    path = setup / "mail.eml"
    path.write_bytes(eml("info@example.org", "Frage", GERMAN))
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "route", "--explain", str(path)],
        capture_output=True,
        text=True,
        cwd=setup,  # ./bot.toml is the default
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "queue:    info::de" in result.stdout


def test_other_commands_still_work(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(ROOT / "bot.toml")]) == 0
    assert "OK" in capsys.readouterr().out


# --- language detection ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def detector() -> Py3LangidDetector:
    detector = Py3LangidDetector()
    detector.load()
    return detector


@pytest.mark.parametrize(
    ("text", "language"), [(GERMAN, "de"), (ENGLISH, "en"), (FRENCH, "fr"), (JAPANESE, "ja")]
)
def test_languages_are_detected(detector: Py3LangidDetector, text: str, language: str) -> None:
    assert detector.detect(text) == language


@pytest.mark.parametrize("text", ["", "Danke!", "Hi there", "12345 67890 !!! ???", "ok " * 5])
def test_short_text_gives_no_language(detector: Py3LangidDetector, text: str) -> None:
    assert detector.detect(text) == ""


def test_quotes_urls_and_addresses_are_ignored(detector: Py3LangidDetector) -> None:
    text = (
        "Danke, das hat geklappt!\n"
        + f"> {ENGLISH}\n" * 20
        + "https://example.org/some/very/long/english/path www.example.com jm@example.com\n"
    )
    assert clean_text(text) == "Danke, das hat geklappt!"
    assert detector.detect(text) == ""  # too few letters of its own
    assert detector.detect(GERMAN + "\n" + f"> {ENGLISH}\n" * 20) == "de"


def test_only_the_start_of_a_long_text_is_used(detector: Py3LangidDetector) -> None:
    text = (GERMAN + "\n") * 100 + (ENGLISH + "\n") * 100
    assert len(clean_text(text)) <= MAX_CHARS
    assert detector.detect(text) == "de"


def test_candidate_languages_can_be_restricted() -> None:
    restricted = Py3LangidDetector(["DE", "en"])
    assert restricted.detect(FRENCH) in {"de", "en", ""}
    assert restricted.detect(GERMAN) == "de"
    with pytest.raises(ValueError, match="Unknown language"):
        Py3LangidDetector(["xx-nope"]).load()


def test_detection_is_fast_and_thread_safe(detector: Py3LangidDetector) -> None:
    assert detector.load_seconds is not None
    long_mail = (GERMAN + "\n> " + ENGLISH + "\nhttps://example.org/x a@b.org\n") * 300
    started = time.perf_counter()
    for _ in range(100):
        assert detector.detect(long_mail) == "de"
    per_mail = (time.perf_counter() - started) / 100
    assert per_mail < 0.02  # typically ~1 ms; generous for a loaded shared machine

    results: list[str] = []

    def work(text: str) -> None:
        results.extend(detector.detect(text) for _ in range(50))

    threads = [threading.Thread(target=work, args=(t,)) for t in (GERMAN, ENGLISH, FRENCH)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(set(results)) == ["de", "en", "fr"] and len(results) == 150
