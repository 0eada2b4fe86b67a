"""Email over SMTP, for the error handler and the process notifications."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from derms_bridge import tracing
from derms_bridge.settings import Smtp


class MailError(Exception):
    """The SMTP server could not take the message."""


class Mailer:
    def __init__(self, settings: Smtp) -> None:
        self._settings = settings

    async def send(self, *, sender: str, to: list[str], subject: str, body: str) -> None:
        message = EmailMessage()
        message["From"] = sender
        message["To"] = ", ".join(to)
        message["Subject"] = subject
        message.set_content(body)
        smtp = self._settings
        try:
            with tracing.span(
                "smtp send",
                kind=tracing.SpanKind.CLIENT,
                attributes={"server.address": smtp.host, "server.port": smtp.port},
            ):
                await aiosmtplib.send(
                    message,
                    hostname=smtp.host,
                    port=smtp.port,
                    username=smtp.username,
                    password=smtp.password.get_secret_value() if smtp.password else None,
                    use_tls=smtp.security == "tls",
                    start_tls=smtp.security == "starttls",
                    timeout=smtp.timeout,
                )
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise MailError(
                f"SMTP server {smtp.host}:{smtp.port} did not take the message: "
                f"{type(exc).__name__}"
            ) from None
