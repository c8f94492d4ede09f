"""SmtpSender against a real SMTP server (aiosmtpd on loopback), and FileSender on disk.

What matters to the outbox is that a reply arrives intact and that failures are
sorted correctly: temporary ones (4xx, unreachable server) are retried later,
permanent ones (5xx) are given up and shown in the chat.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.email.smtp import FileSender, SmtpSender, SmtpSettings
from bot.mail import Address, OutgoingEmail
from bot.ports import MailSendError
from tests.servers.ports import free_port
from tests.servers.smtp import SmtpCapture

pytestmark = pytest.mark.servers


def reply(n: int = 1, *, to: tuple[Address, ...] | None = None) -> OutgoingEmail:
    return OutgoingEmail(
        sender=Address("help@example.org", "Help Desk"),
        to=to if to is not None else (Address("requester@example.net", "Renée Requester"),),
        subject=f"Re: Question about my account [Ticket#2024010110000{n}]",
        text=f"Hello,\n\nhere is the answer number {n}.\n\nThe help desk\n",
        message_id=f"<ticketbot.2024010110000{n}.abc{n}@example.org>",
        in_reply_to="<question@example.net>",
        references=("<first@example.net>", "<question@example.net>"),
        extra_headers=(("Auto-Submitted", "auto-replied"),) if n == 99 else (),
    )


def sender_for(capture: SmtpCapture, **overrides: object) -> SmtpSender:
    values: dict[str, object] = {
        "host": capture.host,
        "port": capture.port,
        "security": "none",
        "timeout": 5.0,
    }
    values.update(overrides)
    return SmtpSender(SmtpSettings(**values))  # type: ignore[arg-type]


async def test_a_reply_arrives_with_envelope_and_headers_intact(
    smtp_capture: SmtpCapture,
) -> None:
    out = reply(to=(Address("requester@example.net", "Renée Requester"), Address("cc@example.com")))
    await sender_for(smtp_capture).send(out)

    (received,) = smtp_capture.wait_for(1)
    assert received.mail_from == "help@example.org"
    assert received.rcpt_tos == ("requester@example.net", "cc@example.com")
    assert received.auth_login is None  # no username configured: no AUTH
    message = received.message
    assert message["Message-ID"] == out.message_id
    assert message["In-Reply-To"] == "<question@example.net>"
    assert message["References"].split() == ["<first@example.net>", "<question@example.net>"]
    assert message["Subject"] == out.subject
    assert message["From"].addresses[0].addr_spec == "help@example.org"
    assert [a.addr_spec for a in message["To"].addresses] == [
        "requester@example.net",
        "cc@example.com",
    ]
    assert message["To"].addresses[0].display_name == "Renée Requester"
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    assert "here is the answer number 1." in body.get_content()


async def test_extra_headers_are_sent(smtp_capture: SmtpCapture) -> None:
    await sender_for(smtp_capture).send(reply(99))
    (received,) = smtp_capture.wait_for(1)
    assert received.message["Auto-Submitted"] == "auto-replied"


async def test_auth_is_used_when_a_username_is_configured(smtp_capture: SmtpCapture) -> None:
    smtp_capture.require_auth("bot", "s3cret")
    await sender_for(smtp_capture, username="bot", password="s3cret").send(reply())
    (received,) = smtp_capture.wait_for(1)
    assert received.auth_login == "bot"


async def test_a_wrong_password_is_a_temporary_failure(smtp_capture: SmtpCapture) -> None:
    smtp_capture.require_auth("bot", "s3cret")
    with pytest.raises(MailSendError) as failure:
        await sender_for(smtp_capture, username="bot", password="wrong").send(reply())
    assert failure.value.temporary, "a configuration error must not give up the reply"
    assert "535" in str(failure.value)
    assert "wrong" not in str(failure.value)
    assert smtp_capture.messages == []


async def test_451_is_a_temporary_failure_and_the_retry_goes_through(
    smtp_capture: SmtpCapture,
) -> None:
    smtp_capture.fail_next(1, 451, "Greylisted, try again later")
    sender = sender_for(smtp_capture)
    with pytest.raises(MailSendError) as failure:
        await sender.send(reply())
    assert failure.value.temporary
    assert "451" in str(failure.value)
    assert f"{smtp_capture.host}:{smtp_capture.port}" in str(failure.value)
    assert "Greylisted" in str(failure.value)
    assert smtp_capture.messages == []

    await sender.send(reply())
    assert len(smtp_capture.wait_for(1)) == 1


async def test_550_is_a_permanent_failure(smtp_capture: SmtpCapture) -> None:
    smtp_capture.fail_next(1, 550, "Mailbox unavailable")
    with pytest.raises(MailSendError) as failure:
        await sender_for(smtp_capture).send(reply())
    assert not failure.value.temporary
    assert "550" in str(failure.value)
    assert f"{smtp_capture.host}:{smtp_capture.port}" in str(failure.value)


@pytest.mark.parametrize(("code", "temporary"), [(450, True), (550, False)])
async def test_refused_recipients_are_sorted_by_code(
    smtp_capture: SmtpCapture, code: int, temporary: bool
) -> None:
    smtp_capture.fail_next(1, code, "No such user here", stage="RCPT")
    with pytest.raises(MailSendError) as failure:
        await sender_for(smtp_capture).send(reply())
    assert failure.value.temporary is temporary
    assert str(code) in str(failure.value)
    assert "requester@example.net" in str(failure.value)


async def test_a_refused_sender_is_sorted_by_code(smtp_capture: SmtpCapture) -> None:
    smtp_capture.fail_next(1, 553, "Sender address rejected", stage="MAIL")
    with pytest.raises(MailSendError) as failure:
        await sender_for(smtp_capture).send(reply())
    assert not failure.value.temporary
    assert "553" in str(failure.value)


async def test_one_refused_recipient_of_two_still_counts_as_sent(
    smtp_capture: SmtpCapture, caplog: pytest.LogCaptureFixture
) -> None:
    smtp_capture.fail_next(1, 550, "No such user here", stage="RCPT")
    out = reply(to=(Address("gone@example.net"), Address("requester@example.net")))
    await sender_for(smtp_capture).send(out)  # resending would double it for the other one
    (received,) = smtp_capture.wait_for(1)
    assert received.rcpt_tos == ("requester@example.net",)
    assert "gone@example.net: 550" in caplog.text


async def test_connection_refused_is_a_temporary_failure() -> None:
    port = free_port()  # nothing listens here
    sender = SmtpSender(SmtpSettings("127.0.0.1", port, "none", timeout=2.0))
    with pytest.raises(MailSendError) as failure:
        await sender.send(reply())
    assert failure.value.temporary
    assert f"127.0.0.1:{port}" in str(failure.value)


async def test_starttls_against_a_server_without_it_is_a_temporary_failure(
    smtp_capture: SmtpCapture,
) -> None:
    with pytest.raises(MailSendError) as failure:
        await sender_for(smtp_capture, security="starttls").send(reply())
    assert failure.value.temporary
    assert smtp_capture.messages == []


async def test_a_reply_that_cannot_be_rendered_is_a_permanent_failure(
    smtp_capture: SmtpCapture, tmp_path: Path
) -> None:
    for broken in (reply(to=()), reply(to=(Address("not an address"),))):
        with pytest.raises(MailSendError) as failure:
            await sender_for(smtp_capture).send(broken)
        assert not failure.value.temporary
        with pytest.raises(MailSendError) as failure:
            await FileSender(tmp_path).send(broken)
        assert not failure.value.temporary
    assert smtp_capture.messages == []
    assert list(tmp_path.iterdir()) == []


# --- FileSender ------------------------------------------------------------------------------


async def test_file_sender_writes_one_file_per_message_id(tmp_path: Path) -> None:
    sender = FileSender(tmp_path / "outbox")
    first, second = reply(1), reply(2)
    await sender.send(first)
    await sender.send(second)
    await sender.send(first)  # a resend after a crash replaces, never adds

    files = sorted((tmp_path / "outbox").iterdir())
    assert len(files) == 2, files
    assert all(f.suffix == ".eml" and not f.name.startswith(".") for f in files)
    path = sender.path_for(first.message_id)
    assert path is not None
    assert path.name.endswith("-ticketbot.20240101100001.abc1@example.org.eml")
    assert path.name.split("-", 1)[0].isdigit()
    assert b"here is the answer number 1." in path.read_bytes()


async def test_file_sender_names_are_safe_for_odd_message_ids(tmp_path: Path) -> None:
    sender = FileSender(tmp_path)
    odd = OutgoingEmail(
        sender=Address("help@example.org"),
        to=(Address("a@example.net"),),
        subject="x",
        text="x",
        message_id="<../../etc/passwd/with*odd|chars@example.org>",
    )
    await sender.send(odd)
    (written,) = list(tmp_path.iterdir())
    assert written.parent == tmp_path
    assert "/" not in written.name and "*" not in written.name and "|" not in written.name
    assert sender.path_for(odd.message_id) == written


async def test_an_international_domain_is_idna_encoded_in_the_envelope(
    smtp_capture: SmtpCapture,
) -> None:
    await sender_for(smtp_capture).send(reply(to=(Address("anna@bücher.example"),)))
    (received,) = smtp_capture.wait_for(1)
    assert received.rcpt_tos == ("anna@xn--bcher-kva.example",)
