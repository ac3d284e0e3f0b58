"""The invitation mail: its content, and how it is sent (a fake SMTP class)."""

from __future__ import annotations

from email.message import EmailMessage

import msgspec
import pytest

from services.people import mail
from services.people.settings import SmtpConfig

LINK = "https://gw.example.com/portal/invitations/abc"


class FakeSmtp:
    sent: list[tuple] = []

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.calls: list[tuple] = [("connect", host, port, timeout)]

    def __enter__(self) -> FakeSmtp:
        return self

    def __exit__(self, *exc: object) -> None:
        FakeSmtp.sent.append(tuple(self.calls))

    def starttls(self, context: object) -> None:
        self.calls.append(("starttls",))

    def login(self, user: str, password: str) -> None:
        self.calls.append(("login", user, password))

    def send_message(self, message: EmailMessage) -> None:
        self.calls.append(("send", message["To"], message.get_content()))


def test_the_message_carries_the_link_to_the_invited_person() -> None:
    message = mail.invitation_message("portal@example.com", "ann@example.com", LINK, "acme", "2030-01-01 00:00 UTC")
    assert message["To"] == "ann@example.com" and message["From"] == "portal@example.com"
    assert LINK in message.get_content() and "acme" in message.get_content()


def test_a_header_cannot_be_injected() -> None:
    with pytest.raises(ValueError):
        mail.invitation_message("portal@example.com", "ann@example.com\r\nBcc: eve@example.com", LINK, "", "")


def test_it_is_sent_over_starttls_with_the_credentials_from_the_environment() -> None:
    FakeSmtp.sent = []
    config = msgspec.toml.decode(
        b'host = "smtp.example.com"\nfrom = "portal@example.com"\nuser_env = "U"\npassword_env = "P"', type=SmtpConfig
    )
    message = mail.invitation_message(config.sender, "ann@example.com", LINK, "acme", "soon")
    mail.send(config, message, smtp_class=FakeSmtp, env={"U": "mailer", "P": "s3cret"})
    (calls,) = FakeSmtp.sent
    assert calls[0] == ("connect", "smtp.example.com", 587, 10.0)
    assert calls[1] == ("starttls",) and calls[2] == ("login", "mailer", "s3cret")
    assert calls[3][0] == "send" and calls[3][1] == "ann@example.com" and LINK in calls[3][2]


def test_a_relay_without_credentials_is_not_logged_in_to() -> None:
    FakeSmtp.sent = []
    config = SmtpConfig(host="127.0.0.1", sender="p@example.com", port=25, starttls=False)
    mail.send(config, mail.invitation_message("p@example.com", "a@example.com", LINK, "", ""), smtp_class=FakeSmtp)
    (calls,) = FakeSmtp.sent
    assert [c[0] for c in calls] == ["connect", "send"]
