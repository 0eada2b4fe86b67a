"""A local SMTP server that keeps every message it receives, for the sandbox and tests."""

import email
import email.policy
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from derms_bridge.sandbox.kept import newest_kept
from derms_bridge.sandbox.servers import LOOPBACK, LocalServer, free_port


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    subject: str
    body_text: str
    message: EmailMessage


def _body_text(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain", "html"))
    if body is None:
        return ""
    content = body.get_content()
    return content if isinstance(content, str) else ""


class _SinkHandler:
    def __init__(self, sink: "SmtpSink") -> None:
        self._sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        # SMTP carries every line ending as CRLF; the parsed message gets back the sender's \n.
        content = envelope.content.replace(b"\r\n", b"\n")
        message = email.message_from_bytes(content, policy=email.policy.default)
        mail = ReceivedMail(
            mail_from=envelope.mail_from,
            rcpt_tos=tuple(envelope.rcpt_tos),
            subject=str(message.get("Subject", "")),
            body_text=_body_text(message),
            message=message,
        )
        self._sink.keep(mail)
        return "250 Message accepted for delivery"


class SmtpSink(LocalServer):
    """An SMTP server on 127.0.0.1 that accepts every message and keeps it in memory.

    ``on_message`` is called, in the server's thread, for each message as it arrives.
    """

    def __init__(
        self,
        port: int = 0,
        on_message: Callable[[ReceivedMail], None] | None = None,
    ) -> None:
        # aiosmtpd 1.4.6 cannot check that a server on port 0 is ready, so the port is chosen here.
        self._port = port or free_port()
        self._on_message = on_message
        self._received: deque[ReceivedMail] = newest_kept()
        #: Since the last clear, the newest of them kept.
        self._arrived = 0
        self._arrival = threading.Condition()
        self._controller: Controller | None = None

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def port(self) -> int:
        return self._port

    def start(self) -> None:
        if self._controller is not None:
            raise RuntimeError("SMTP sink is already started")
        controller = Controller(_SinkHandler(self), hostname=LOOPBACK, port=self._port)
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        if self._controller is None:
            return
        self._controller.stop()
        self._controller = None

    def keep(self, mail: ReceivedMail) -> None:
        with self._arrival:
            self._received.append(mail)
            self._arrived += 1
            self._arrival.notify_all()
        if self._on_message is not None:
            self._on_message(mail)

    def messages(self) -> list[ReceivedMail]:
        with self._arrival:
            return list(self._received)

    def clear(self) -> None:
        with self._arrival:
            self._received.clear()
            self._arrived = 0

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedMail]:
        """Waits until at least ``count`` messages have come since the last `clear`, and
        returns those kept (the newest `KEPT_PER_KIND`).

        Raises TimeoutError, saying how many came, if they do not come within ``timeout``.
        """
        deadline = time.monotonic() + timeout
        with self._arrival:
            while self._arrived < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"SMTP sink on {self.host}:{self.port} received "
                        f"{self._arrived} of {count} expected message(s) within {timeout}s"
                    )
                self._arrival.wait(remaining)
            return list(self._received)
