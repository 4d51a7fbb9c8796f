import time

import pytest
from pydantic import SecretStr, ValidationError

from itilflow.notifications import (
    MailSettings,
    NotificationError,
    RenderedMessage,
    asend_email,
    render_message,
)
from tests.support.notifications import make_context, make_incident
from tests.support.smtp import SmtpCapture, silent_port


def opened(language: str = "en", **incident: object) -> RenderedMessage:
    context = make_context("incident_opened", incident=make_incident(**incident))
    return render_message("incident_opened", language, context)


async def test_delivers_html_with_a_text_alternative(smtp_server: SmtpCapture) -> None:
    message = opened(title="<script>alert(1)</script>")

    await asend_email(message, to=["alice@example.org"], settings=smtp_server.mail_settings())

    [mail] = smtp_server.wait_for(1)
    assert mail.mail_from == "itilflow@localhost"
    assert mail.rcpt_tos == ("alice@example.org",)
    received = mail.message
    assert received["Subject"] == message.subject
    assert received["From"] == "itilflow <itilflow@localhost>"
    assert received["To"] == "alice@example.org"
    assert received["Message-ID"].endswith("@localhost>")
    [alternative] = [p for p in received.walk() if p.get_content_type() == "multipart/alternative"]
    assert [p.get_content_type() for p in alternative.iter_parts()] == ["text/plain", "text/html"]
    html = received.get_body(("html",)).get_content()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html
    # MIME text travels with CRLF line ends.
    text = received.get_body(("plain",)).get_content()
    assert text.splitlines() == message.text.splitlines()


async def test_chinese_subject_and_body_survive_the_trip(smtp_server: SmtpCapture) -> None:
    message = opened("zh_CN", title="订单数据库无法连接", assignee="张伟")

    await asend_email(message, to=["zhang@example.org"], settings=smtp_server.mail_settings())

    [mail] = smtp_server.wait_for(1)
    assert message.subject == "[P1] 新事件 INC0001：订单数据库无法连接"
    assert mail.message["Subject"] == message.subject
    assert "已分派给 张伟（DBA）" in mail.message.get_body(("plain",)).get_content()
    assert "订单数据库无法连接" in mail.message.get_body(("html",)).get_content()


async def test_sends_to_every_recipient(smtp_server: SmtpCapture) -> None:
    to = ["alice@example.org", "张伟 <zhang@example.org>", "dba@example.org"]

    await asend_email(opened(), to=to, settings=smtp_server.mail_settings())

    [mail] = smtp_server.wait_for(1)
    assert sorted(mail.rcpt_tos) == ["alice@example.org", "dba@example.org", "zhang@example.org"]
    assert "张伟 <zhang@example.org>" in mail.message["To"]


async def test_server_down_raises(smtp_server: SmtpCapture) -> None:
    settings = smtp_server.mail_settings()
    smtp_server.stop()

    with pytest.raises(NotificationError, match=f"127.0.0.1:{settings.port}.*refused"):
        await asend_email(opened(), to=["alice@example.org"], settings=settings)


async def test_silent_server_times_out() -> None:
    with silent_port() as port:
        settings = MailSettings(host="127.0.0.1", port=port, timeout=0.3)
        started = time.monotonic()

        with pytest.raises(NotificationError, match=f"127.0.0.1:{port}.*[Tt]imed out"):
            await asend_email(opened(), to=["alice@example.org"], settings=settings)

    assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    ("reply", "stage", "command"),
    [
        ("550 5.7.1 Message rejected as spam", "data", "DATA"),
        ("451 4.3.0 Try again later", "mail", "MAIL"),
    ],
)
async def test_smtp_error_reply_raises(
    smtp_server: SmtpCapture, reply: str, stage: str, command: str
) -> None:
    smtp_server.fail_with(reply, at=stage)  # type: ignore[arg-type]
    code, _, text = reply.partition(" ")

    with pytest.raises(NotificationError, match=f"answered {code} to {command}: {text}"):
        await asend_email(opened(), to=["alice@example.org"], settings=smtp_server.mail_settings())

    assert smtp_server.mails == []


async def test_refused_recipients_raise(smtp_server: SmtpCapture) -> None:
    smtp_server.fail_with("550 5.1.1 No such user", at="rcpt")

    with pytest.raises(
        NotificationError,
        match=r"every recipient refused: (\S+ \(550 5.1.1 No such user\)(, )?){2}",
    ):
        await asend_email(
            opened(), to=["a@example.org", "b@example.org"], settings=smtp_server.mail_settings()
        )

    assert smtp_server.mails == []


async def test_partly_refused_recipients_raise(smtp_server: SmtpCapture) -> None:
    smtp_server.fail_with("550 5.1.1 No such user", at="rcpt", only_for=("gone@example.org",))
    to = ["alice@example.org", "gone@example.org"]

    with pytest.raises(NotificationError, match=r"refused for: gone@example.org \(550"):
        await asend_email(opened(), to=to, settings=smtp_server.mail_settings())

    [mail] = smtp_server.wait_for(1)
    assert mail.rcpt_tos == ("alice@example.org",)


@pytest.mark.parametrize(
    ("mode", "reason"), [("use_tls", "STARTTLS"), ("use_ssl", "SSL|TLS|[Ww]rong version")]
)
async def test_tls_settings_reach_the_connection(
    smtp_server: SmtpCapture, mode: str, reason: str
) -> None:
    # The test server speaks plain SMTP only, so asking for TLS must fail rather than fall back.
    settings = smtp_server.mail_settings(**{mode: True})

    with pytest.raises(NotificationError, match=reason):
        await asend_email(opened(), to=["alice@example.org"], settings=settings)

    assert smtp_server.mails == []


async def test_logs_in_when_a_user_is_set() -> None:
    with SmtpCapture(logins={"itilflow": "s3cret"}) as server:
        good = server.mail_settings(user="itilflow", password=SecretStr("s3cret"))
        await asend_email(opened(), to=["alice@example.org"], settings=good)
        server.wait_for(1)

        bad = server.mail_settings(user="itilflow", password=SecretStr("guess"))
        with pytest.raises(NotificationError, match="535"):
            await asend_email(opened(), to=["alice@example.org"], settings=bad)


@pytest.mark.parametrize("to", [[], [""], ["  "]])
async def test_no_recipient_is_a_value_error(smtp_server: SmtpCapture, to: list[str]) -> None:
    with pytest.raises(ValueError, match="recipient"):
        await asend_email(opened(), to=to, settings=smtp_server.mail_settings())


async def test_a_single_address_string_is_one_recipient(smtp_server: SmtpCapture) -> None:
    await asend_email(opened(), to="alice@example.org", settings=smtp_server.mail_settings())

    assert smtp_server.wait_for(1)[0].rcpt_tos == ("alice@example.org",)


def test_settings_refuse_two_tls_modes() -> None:
    with pytest.raises(ValidationError, match="exclude each other"):
        MailSettings(use_tls=True, use_ssl=True)


def test_settings_need_a_sender_address() -> None:
    with pytest.raises(ValidationError, match="mail_from"):
        MailSettings(mail_from="itilflow")


def test_settings_hide_the_password() -> None:
    settings = MailSettings(user="itilflow", password=SecretStr("s3cret"))

    assert "s3cret" not in repr(settings)
