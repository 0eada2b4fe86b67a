"""Queries on staged files: a file kept in the database, in chunks, until it is passed on.

The database, not a folder, keeps them: hub processes on several machines share one
PostgreSQL and nothing else, so whichever worker claims the transfer can read the
file; and the file is committed with its instance, in one transaction, before the
caller hears 202.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import IO, Any

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from derms_bridge.errors import FileTooLarge, TechnicalFault
from derms_bridge.store.instances import InstanceStore, payload_kept, reopen, utcnow
from derms_bridge.store.leases import Leases
from derms_bridge.store.tables import InstanceRow, StagedChunkRow, StagedFileRow
from derms_bridge.tracing import TraceRef

#: Bytes per chunk row: large enough that a 1 GB file is a thousand rows, small enough
#: that a chunk in flight costs little memory.
CHUNK_BYTES = 1024 * 1024


class EmptyFile(Exception):
    pass


@dataclass(frozen=True)
class ClaimedTransfer:
    instance_id: str
    flow: str
    payload: Any
    caller: str | None


class StagedTransferStore:
    def __init__(self, instances: InstanceStore, chunk_bytes: int = CHUNK_BYTES) -> None:
        self._instances = instances
        self._chunk_bytes = chunk_bytes
        self._postgres = instances.engine.dialect.name == "postgresql"
        self._leases = Leases(StagedFileRow, postgres=self._postgres)

    async def receive(
        self,
        *,
        instance_id: str,
        flow: str,
        caller: str | None,
        payload: Any,
        keys: Sequence[tuple[str, str]],
        file_name: str,
        upload: IO[bytes],
        max_bytes: int,
        trace: TraceRef | None = None,
    ) -> int:
        """Write the instance and keep its file, in one transaction; the file's size.
        FileTooLarge or EmptyFile, or an error reading `upload` raises, leave nothing
        written."""
        size = 0

        async def stage(connection: AsyncConnection) -> None:
            nonlocal size
            digest = hashlib.sha256()
            await connection.execute(
                insert(StagedFileRow).values(
                    instance_id=instance_id,
                    file_name=file_name,
                    size=0,
                    sha256="",
                    state="queued",
                    chunks_kept=True,
                    updated_at=utcnow(),
                )
            )
            seq = 0
            while chunk := await asyncio.to_thread(arrived.read, self._chunk_bytes):
                size += len(chunk)
                if size > max_bytes:
                    raise FileTooLarge(max_bytes)
                digest.update(chunk)
                seq += 1
                await connection.execute(
                    insert(StagedChunkRow).values(instance_id=instance_id, seq=seq, data=chunk)
                )
            if size == 0:
                raise EmptyFile
            await connection.execute(
                update(StagedFileRow)
                .where(StagedFileRow.instance_id == instance_id)
                .values(size=size, sha256=digest.hexdigest())
            )

        async with self._arrived(upload, max_bytes) as arrived:
            await self._instances.create(
                instance_id=instance_id,
                flow=flow,
                caller=caller,
                payload=payload,
                keys=keys,
                alongside=stage,
                trace=trace,
            )
        return size

    @asynccontextmanager
    async def _arrived(self, upload: IO[bytes], max_bytes: int) -> AsyncIterator[IO[bytes]]:
        """The upload to keep. SQLite lets one writer in at a time, and the others, in this
        process and in any other, wait for as long as a transaction writes: there the file
        waits in a spool until the upload has ended, however slowly it comes."""
        if self._postgres:
            yield upload
            return
        with await asyncio.to_thread(self._spooled, upload, max_bytes) as spool:
            yield spool

    def _spooled(self, upload: IO[bytes], max_bytes: int) -> IO[bytes]:
        """The upload copied to a temporary file, in memory up to a chunk; FileTooLarge past
        `max_bytes`."""
        spool = tempfile.SpooledTemporaryFile(max_size=self._chunk_bytes)  # noqa: SIM115 - the caller closes it
        try:
            size = 0
            while chunk := upload.read(self._chunk_bytes):
                size += len(chunk)
                if size > max_bytes:
                    raise FileTooLarge(max_bytes)
                spool.write(chunk)
            spool.seek(0)
        except BaseException:
            spool.close()
            raise
        return spool

    async def read(self, reference: str) -> AsyncIterator[bytes]:
        """The file's chunks in order, each read when the last has been taken."""
        async with self._instances.engine.connect() as connection:
            kept = await connection.scalar(
                select(StagedFileRow.chunks_kept).where(StagedFileRow.instance_id == reference)
            )
        if not kept:
            raise TechnicalFault(f"the file received with instance {reference} is no longer kept")
        seq = 1
        while True:
            async with self._instances.engine.connect() as connection:
                data = await connection.scalar(
                    select(StagedChunkRow.data).where(
                        StagedChunkRow.instance_id == reference, StagedChunkRow.seq == seq
                    )
                )
            if data is None:
                return
            yield data
            seq += 1

    async def state_of(self, instance_id: str) -> str | None:
        async with self._instances.engine.connect() as connection:
            state: str | None = await connection.scalar(
                select(StagedFileRow.state).where(StagedFileRow.instance_id == instance_id)
            )
        return state

    async def claim(self, owner: str, lease: timedelta) -> ClaimedTransfer | None:
        """A transfer that is due, or whose worker's lease ran out (it died)."""
        now = utcnow()
        due = or_(
            StagedFileRow.state == "queued",
            and_(StagedFileRow.state == "running", StagedFileRow.lease_until < now),
        )
        if not await self._leases.any_due(self._instances.engine, due):
            return None
        async with self._instances.writing() as connection:
            claimed = await self._leases.claim(
                connection, due, owner=owner, until=now + lease, state="running", updated_at=now
            )
            if claimed is None:
                return None
            instance = (
                await connection.execute(
                    select(InstanceRow.flow, InstanceRow.payload, InstanceRow.caller).where(
                        InstanceRow.id == claimed.instance_id
                    )
                )
            ).one()
        return ClaimedTransfer(
            claimed.instance_id, instance.flow, instance.payload, instance.caller
        )

    async def renew(self, instance_id: str, owner: str, lease: timedelta) -> None:
        async with self._instances.writing() as connection:
            await self._leases.renew(connection, instance_id, owner, utcnow() + lease)

    async def give_back(self, instance_id: str, owner: str) -> None:
        """A transfer cut short by its worker's stop: queued again, for another at once."""
        async with self._instances.writing() as connection:
            await self._leases.release(
                connection, instance_id, owner, state="queued", updated_at=utcnow()
            )

    async def finished(self, instance_id: str, owner: str, *, succeeded: bool) -> None:
        """The transfer is over: a file stored where it was going is no longer kept; a
        failed one is kept for a resend or a resubmit."""
        async with self._instances.writing() as connection:
            ended = await self._leases.release(
                connection,
                instance_id,
                owner,
                state="done" if succeeded else "failed",
                chunks_kept=not succeeded,
                updated_at=utcnow(),
            )
            if ended and succeeded:
                await connection.execute(
                    delete(StagedChunkRow).where(StagedChunkRow.instance_id == instance_id)
                )

    async def resume(self, instance_id: str) -> bool:
        """A failed transfer is due again, on the same instance; False unless it failed."""
        now = utcnow()
        async with self._instances.writing() as connection:
            resumed = (
                await connection.execute(
                    update(StagedFileRow)
                    .where(
                        StagedFileRow.instance_id == instance_id,
                        StagedFileRow.state == "failed",
                        payload_kept(instance_id),
                    )
                    .values(state="queued", updated_at=now)
                    .returning(StagedFileRow.instance_id)
                )
            ).first()
            if resumed is None:
                return False
            await reopen(connection, instance_id, now)
        return True
