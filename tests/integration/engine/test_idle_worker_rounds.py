"""A worker's round that finds nothing due reads and goes: it does not wait for the
writer's turn that the flows' commits and the purge's slices take on SQLite (both
databases)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from derms_bridge.store.file_jobs import FileJobStore
from derms_bridge.store.instances import InstanceStore
from derms_bridge.store.staged_transfers import StagedTransferStore

LEASE = timedelta(minutes=1)
#: Far beyond a read's time; what it bounds would otherwise wait for ever.
PATIENCE_SECONDS = 20.0


async def test_with_nothing_due_a_round_does_not_wait_for_the_writers_turn(
    store: InstanceStore,
) -> None:
    async with store.writer_turn():
        job = await asyncio.wait_for(
            FileJobStore(store).claim_job("file worker", LEASE), PATIENCE_SECONDS
        )
        finished = await asyncio.wait_for(FileJobStore(store).finish_stalled(), PATIENCE_SECONDS)
        transfer = await asyncio.wait_for(
            StagedTransferStore(store).claim("transfer worker", LEASE), PATIENCE_SECONDS
        )

    assert job is None
    assert finished == 0
    assert transfer is None
