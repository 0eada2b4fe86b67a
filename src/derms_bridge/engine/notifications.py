"""The process-complete email of the file flows (to.process.notification)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from derms_bridge.catalog import FlowInfo
from derms_bridge.connectors.mail import Mailer, MailError
from derms_bridge.engine.redaction import Redactor
from derms_bridge.lookups import Lookups

log = logging.getLogger(__name__)


class ProcessNotifier:
    def __init__(self, mailer: Mailer, lookups: Callable[[], Lookups], redact: Redactor) -> None:
        self._mailer = mailer
        self._lookups = lookups
        self._redact = redact

    async def process_complete(
        self,
        flow: FlowInfo,
        instance_id: str,
        keys: Sequence[tuple[str, str]],
        outcome: str,
        summary: str,
        *,
        whatever_the_flag: bool = False,
    ) -> str | None:
        """Email what happened, when `notification.email.process.complete.flag` says so (or
        `whatever_the_flag`: the reference's summary after a failed file); the mail problem,
        if any."""
        if not whatever_the_flag and not self._lookups().flag(
            "notification.email.process.complete.flag"
        ):
            return None
        return await self._send(
            flow,
            instance_id,
            keys,
            subject=f"[derms-bridge] {flow.title} complete: {outcome}",
            lines=[f"Outcome:   {outcome}"],
            summary=summary,
        )

    async def no_file(self, flow: FlowInfo, instance_id: str, summary: str) -> str | None:
        """The no-file email of flows 16 and 17 (their caller checks its flag)."""
        return await self._send(
            flow,
            instance_id,
            (),
            subject=f"[derms-bridge] {flow.title}: no file found",
            lines=[],
            summary=summary,
        )

    async def _send(
        self,
        flow: FlowInfo,
        instance_id: str,
        keys: Sequence[tuple[str, str]],
        *,
        subject: str,
        lines: list[str],
        summary: str,
    ) -> str | None:
        lookups = self._lookups()
        recipients = lookups.emails("to.process.notification")
        if not recipients:
            return "no 'to.process.notification' recipients in lookup OUTL-BRT-DACS_DRMS_Email_ID"
        summary = self._redact(summary)
        body = [
            f"Flow:      {flow.number} {flow.title} ({flow.identifier})",
            f"Instance:  {instance_id}",
            *lines,
        ]
        body += [f"  {kind}: {value}" for kind, value in dict.fromkeys(keys)]
        body += ["", summary]
        try:
            await self._mailer.send(
                sender=(lookups.emails("from") or ["derms-bridge@localhost"])[0],
                to=recipients,
                subject=subject,
                body="\n".join(body) + "\n",
            )
        except MailError as exc:
            log.error(
                "process-complete email not sent",
                extra={"instance_id": instance_id, "flow": flow.key, "error": str(exc)},
            )
            return str(exc)
        return None
