"""The invitation mail, sent with ``smtplib`` when ``[portal.smtp]`` is set.
The link is printed and shown to the admin either way; mail is a courtesy."""

from __future__ import annotations

import os
import smtplib
import ssl
from collections.abc import Callable, Mapping
from email.message import EmailMessage

from services.people.settings import SmtpConfig


def invitation_message(sender: str, to: str, link: str, tenant_id: str, expires: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = "Your invitation to the Sluice developer portal"
    where = f" for the tenant {tenant_id}" if tenant_id else ""
    message.set_content(
        f"You are invited to the Sluice developer portal{where}.\n\n"
        f"Set your password here (the link works once, until {expires}):\n\n{link}\n\n"
        "If you did not expect this, ignore this mail.\n"
    )
    return message


def send(
    config: SmtpConfig,
    message: EmailMessage,
    smtp_class: Callable[..., smtplib.SMTP] = smtplib.SMTP,
    env: Mapping[str, str] = os.environ,
) -> None:
    """Blocking: run it in a thread. Raises ``smtplib.SMTPException`` or ``OSError``."""
    with smtp_class(config.host, config.port, timeout=config.timeout_s) as smtp:
        if config.starttls:
            smtp.starttls(context=ssl.create_default_context())
        user = env.get(config.user_env, "") if config.user_env else ""
        if user:
            smtp.login(user, env.get(config.password_env, "") if config.password_env else "")
        smtp.send_message(message)
