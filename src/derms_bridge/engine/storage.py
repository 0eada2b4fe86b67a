"""The storage as the console and /metrics show it, measured at most once a minute.

Measuring reads the database's catalog, counts what the purge would remove and, on
SQLite, reads every page once (dbstat): cheap enough once a minute, too dear for every
scrape and page view, and never run twice at once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from derms_bridge.engine.purge import Purge
from derms_bridge.store.instances import InstanceStore
from derms_bridge.store.storage import StorageReport, database_size

#: How long a measure is shown before the next one is taken.
MEASURED_EVERY = timedelta(seconds=60)


class StorageWatch:
    def __init__(self, store: InstanceStore, purge: Purge) -> None:
        self._store = store
        self._purge = purge
        self._measuring = asyncio.Lock()
        self._last: StorageReport | None = None

    async def report(self) -> StorageReport:
        """The latest measure, taken again when it is older than a minute."""
        async with self._measuring:
            now = datetime.now(UTC)
            if self._last is None or now - self._last.measured_at >= MEASURED_EVERY:
                self._last = await self._measure(now)
            return self._last

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
