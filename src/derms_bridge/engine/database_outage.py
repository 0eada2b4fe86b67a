"""The hub's own database refusing writes: an outage, told once, not a crash per request.

While the database refuses writes (full, read-only, locked, down) every trigger is
answered 503 with Retry-After and nothing is kept, so the sender sends again later: DERMS
and CPMCS retry a 5xx. An outage starts with the first refusal this process meets and ends
with its first write that lands (a heartbeat, or the probe of /readyz): one log line and one
email when it starts, a log line at most every `LOG_EVERY` while it lasts, one when it ends.
Each hub process keeps its own account, so two processes send two emails for one outage.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from derms_bridge import metrics
from derms_bridge.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

#: How often a lasting outage is logged again, in seconds.
LOG_EVERY = 60.0

#: What a refused caller is told to wait before sending again, in seconds.
RETRY_AFTER_SECONDS = 30


class DatabaseOutage:
    def __init__(self, alert: Callable[[str, str], Awaitable[None]]) -> None:
        """`alert(subject, body)` emails the operators; it never touches the database."""
        self._alert = alert
        self._started: float | None = None
        self._refusals = 0
        self._logged_at = 0.0
        self.reason = ""
        self._alerts: set[asyncio.Task[None]] = set()
        metrics.DATABASE_WRITABLE.set(1)

    @property
    def active(self) -> bool:
        return self._started is not None

    def refused(self, error: DatabaseUnavailable) -> None:
        """A write was refused: the outage starts, or goes on."""
        now = time.monotonic()
        self.reason = str(error)
        if self._started is None:
            self._started = now
            self._logged_at = now
            self._refusals = 1
            metrics.DATABASE_OUTAGES.inc()
            metrics.DATABASE_WRITABLE.set(0)
            log.error("database outage: %s; triggers are answered 503 until it ends", error)
            alert = asyncio.get_running_loop().create_task(self._send_alert(str(error)))
            self._alerts.add(alert)
            alert.add_done_callback(self._alerts.discard)
            return
        self._refusals += 1
        if now - self._logged_at >= LOG_EVERY:
            self._logged_at = now
            log.error(
                "database outage goes on after %.0f s, %d writes refused: %s",
                now - self._started,
                self._refusals,
                error,
            )

    def wrote(self) -> None:
        """A write landed: an outage under way has ended."""
        if self._started is None:
            return
        lasted = time.monotonic() - self._started
        log.warning("database outage over after %.0f s, %d writes refused", lasted, self._refusals)
        self._started = None
        self.reason = ""
        metrics.DATABASE_WRITABLE.set(1)

    async def _send_alert(self, reason: str) -> None:
        body = (
            "The hub's database refuses writes:\n"
            f"  {reason}\n\n"
            "Until it takes writes again, every message sent to the hub is answered\n"
            f"503 with Retry-After: {RETRY_AFTER_SECONDS} and nothing of it is kept; DERMS and\n"
            "CPMCS send again. Free disk space, make the database writable or bring it\n"
            "back; the hub recovers by itself (GET /readyz says when).\n"
        )
        try:
            await self._alert("[derms-bridge] database outage: writes refused", body)
        except Exception:
            log.exception("the database outage email was not sent")
