"""The storage as the console and /metrics show it, measured at most once a minute.

Measuring reads the database's catalog, counts what the purge would remove and, on
SQLite, reads every page once (dbstat): cheap enough once a minute, too dear for every
scrape and page view, and never run twice at once. It takes seconds on a database of
millions of instances, so only the first view waits for it: after that a view is given the
latest measure at once, and one older than a minute is taken again in the background.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from derms_bridge.engine.purge import Purge
from derms_bridge.store.instances import InstanceStore
from derms_bridge.store.storage import StorageReport, database_size

log = logging.getLogger(__name__)

#: How long a measure is shown before the next one is taken.
MEASURED_EVERY = timedelta(seconds=60)


class StorageWatch:
    def __init__(self, store: InstanceStore, purge: Purge) -> None:
        self._store = store
        self._purge = purge
        self._measuring = asyncio.Lock()
        self._last: StorageReport | None = None
        self._again: asyncio.Task[None] | None = None

    async def report(self) -> StorageReport:
        """The latest measure; the first one waited for, a later one older than a minute
        taken again in the background while this one is shown."""
        if self._last is None:
            async with self._measuring:
                if self._last is None:
                    self._last = await self._measure(datetime.now(UTC))
            return self._last
        if datetime.now(UTC) - self._last.measured_at >= MEASURED_EVERY and (
            self._again is None or self._again.done()
        ):
            self._again = asyncio.create_task(self._measure_again(), name="storage measure")
        return self._last

    async def aclose(self) -> None:
        if self._again is not None:
            self._again.cancel()
            await asyncio.gather(self._again, return_exceptions=True)

    async def _measure_again(self) -> None:
        async with self._measuring:
            try:
                self._last = await self._measure(datetime.now(UTC))
            except Exception:
                # The last measure stays shown, its time saying how old it is.
                log.exception("measuring the storage failed")

    async def _measure(self, now: datetime) -> StorageReport:
        candidates = await self._purge.candidates(now)
        file_rows = await self._purge.file_rows_waiting()
        return StorageReport(
            size=await database_size(self._store.engine),
            purge_waiting={
                "payloads": sum(each.payloads for each in candidates),
                "instances": sum(each.instances for each in candidates),
                "file_rows": sum(file_rows.values()),
            },
            measured_at=now,
        )
