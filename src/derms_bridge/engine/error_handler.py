"""Flow 20, the Common Error Handler (OUTL-BA-DACS_DRMS_ERROR).

Sends the error email to the Email_ID `to` recipients when ConfigProps
`notification.email.error.flag` is true and `notification.type.email` is `true` (the
reference's word) or `email`, and only the first time a given error occurs in an instance.
A message refused before its flow ran (a rejected instance) is emailed once per caller in
a while, not once each.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from datetime import timedelta

from derms_bridge.catalog import FlowInfo
from derms_bridge.connectors.mail import Mailer, MailError
from derms_bridge.engine.redaction import Redactor
from derms_bridge.lookups import Lookups
from derms_bridge.store.instances import InstanceStore

log = logging.getLogger(__name__)


def fingerprint(error: str) -> str:
    return hashlib.sha256(error.encode()).hexdigest()


def _one_line(text: str) -> str:
    """A subject is one line: the mailer refuses a line break in a header."""
    return " ".join(text.split())


def _flow_line(flow: FlowInfo) -> str:
    return f"Flow:      {flow.number} {flow.title} ({flow.identifier})"


def _key_lines(keys: Sequence[tuple[str, str]], heading: str) -> list[str]:
    """Each business identifier once, under `heading`; nothing when there are none."""
    if not keys:
        return []
    return [heading, *(f"  {kind}: {value}" for kind, value in dict.fromkeys(keys))]


def error_email(
    flow: FlowInfo, instance_id: str, keys: Sequence[tuple[str, str]], error: str
) -> tuple[str, str]:
    """Subject and body: the flow, the instance, its business identifiers, the error."""
    subject = f"[derms-bridge] {flow.title} ({flow.identifier}) error: {_one_line(error)[:120]}"
    lines = [
        _flow_line(flow),
        f"Instance:  {instance_id}",
        *_key_lines(keys, "Business identifiers:"),
        "",
        "Error:",
        f"  {error}",
        "",
        "Read it and resubmit it through the operations API:",
        f"  GET  /ops/instances/{instance_id}",
        f"  POST /ops/instances/{instance_id}/resubmit",
    ]
    return subject, "\n".join(lines) + "\n"


def rejection_email(
    flow: FlowInfo,
    instance_id: str,
    keys: Sequence[tuple[str, str]],
    error: str,
    caller: str,
    quiet_for: timedelta,
) -> tuple[str, str]:
    """Subject and body of the one email about a burst of `caller`'s rejected messages."""
    minutes = int(quiet_for.total_seconds() // 60)
    subject = (
        f"[derms-bridge] {flow.title} ({flow.identifier}) rejected a message: "
        f"{_one_line(error)[:120]}"
    )
    lines = [
        _flow_line(flow),
        f"Caller:    {caller}",
        f"Instance:  {instance_id} (rejected)",
        *_key_lines(keys, "Business identifiers read in the body:"),
        "",
        "Why it was refused:",
        f"  {error}",
        "",
        "The body as received is kept on the instance; the sender has to send it again,",
        "corrected. Read it through the operations API:",
        f"  GET  /ops/instances/{instance_id}",
        "",
        f"Other messages {caller} has rejected in the next {minutes} minutes are not emailed;",
        "find them all with:",
        "  GET  /ops/instances?status=rejected",
    ]
    return subject, "\n".join(lines) + "\n"


class CommonErrorHandler:
    def __init__(
        self,
        store: InstanceStore,
        mailer: Mailer,
        lookups: Callable[[], Lookups],
        redact: Redactor,
    ) -> None:
        self._store = store
        self._mailer = mailer
        self._lookups = lookups
        self._redact = redact

    def emails_enabled(self) -> bool:
        return self._lookups().error_emails_on()

    async def alert_operators(self, subject: str, body: str) -> None:
        """An email to the `to` recipients about the hub itself, under the same flags as
        the error emails; it reads nothing from the database, so it goes out while the
        database is down. MailError when the SMTP server refuses it."""
        if not self.emails_enabled():
            return
        lookups = self._lookups()
        recipients = lookups.emails("to")
        if not recipients:
            log.error("no 'to' recipients in lookup OUTL-BRT-DACS_DRMS_Email_ID for: %s", subject)
            return
        await self._mailer.send(
            sender=(lookups.emails("from") or ["derms-bridge@localhost"])[0],
            to=recipients,
            subject=subject,
            body=self._redact(body),
        )

    async def handle_rejection(
        self,
        flow: FlowInfo,
        instance_id: str,
        keys: Sequence[tuple[str, str]],
        error: str,
        *,
        caller: str,
        quiet_for: timedelta,
    ) -> None:
        """Email a rejected message, unless one of `caller`'s was emailed within
        `quiet_for` (counted in the database, so across the hub's processes)."""
        error = self._redact(error)
        log.warning(
            "message rejected",
            extra={"instance_id": instance_id, "flow": flow.key, "error": error},
        )
        if not self.emails_enabled():
            return
        lookups = self._lookups()
        recipients = lookups.emails("to")
        if not recipients:
            log.error("no 'to' recipients in lookup OUTL-BRT-DACS_DRMS_Email_ID")
            return
        if not await self._store.claim_rejection_email(caller, quiet_for):
            return
        subject, body = rejection_email(flow, instance_id, keys, error, caller, quiet_for)
        try:
            await self._mailer.send(
                sender=(lookups.emails("from") or ["derms-bridge@localhost"])[0],
                to=recipients,
                subject=subject,
                body=self._redact(body),
            )
        except MailError as exc:
            log.error(
                "rejection email not sent",
                extra={"instance_id": instance_id, "flow": flow.key, "error": str(exc)},
            )

    async def handle(
        self,
        flow: FlowInfo,
        instance_id: str,
        keys: Sequence[tuple[str, str]],
        error: str,
    ) -> str | None:
        """Email the error if it is new to this instance; the mail problem, if any."""
        error = self._redact(error)
        log.warning(
            "flow error", extra={"instance_id": instance_id, "flow": flow.key, "error": error}
        )
        if not await self._store.claim_error_notice(instance_id, fingerprint(error)):
            return None
        if not self.emails_enabled():
            return None
        lookups = self._lookups()
        recipients = lookups.emails("to")
        if not recipients:
            return "no 'to' recipients in lookup OUTL-BRT-DACS_DRMS_Email_ID"
        subject, body = error_email(flow, instance_id, keys, error)
        try:
            await self._mailer.send(
                sender=(lookups.emails("from") or ["derms-bridge@localhost"])[0],
                to=recipients,
                subject=subject,
                body=body,
            )
        except MailError as exc:
            log.error(
                "error email not sent",
                extra={"instance_id": instance_id, "flow": flow.key, "error": str(exc)},
            )
            return str(exc)
        return None
