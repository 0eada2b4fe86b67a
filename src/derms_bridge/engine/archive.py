"""The purge's archive: what a batch removes, written first as gzip-compressed JSON Lines to
a file store (settings `retention.archive`), and read back by `derms-bridge archive show`.

No store here appends, so each batch writes one object per day received and flow, named
`<day>.<flow>.<purged>-<batch>.jsonl.gz`; a day and flow's records are those of all the
objects whose names begin with `<day>.<flow>.`. A line is one instance: every column of
its row, its business keys and activities, and `purged`: `payload` when the purge emptied
its payload (the instance stays), `instance` when it deleted it whole.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import uuid
import zlib
from collections.abc import AsyncIterator
from datetime import date, datetime
from typing import Any, Literal

from derms_bridge.connectors.file_storage.interface import FileStorage, Folder

Purged = Literal["payload", "instance"]

OBJECT_SUFFIX = ".jsonl.gz"


def day_prefix(day: date, flow: str) -> str:
    """The beginning of the names of a day and flow's objects."""
    return f"{day.isoformat()}.{flow}."


def _as_json(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _compressed_lines(records: list[dict[str, Any]], purged: Purged) -> bytes:
    lines = "".join(
        json.dumps({**record, "purged": purged}, default=_as_json) + "\n" for record in records
    )
    return gzip.compress(lines.encode())


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


class Archive:
    def __init__(self, storage: FileStorage, folder: Folder) -> None:
        self.storage = storage
        self.folder = folder

    async def write(self, purged: Purged, records: list[dict[str, Any]]) -> list[str]:
        """One object per day received and flow of the records; their names."""
        batch = uuid.uuid4().hex[:12]
        grouped: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            received: datetime = record["received_at"]
            grouped.setdefault(day_prefix(received.date(), record["flow"]), []).append(record)
        names = []
        for prefix, group in sorted(grouped.items()):
            # In a thread: a batch of a thousand instances with their payloads is megabytes
            # of JSON, tens of milliseconds to write and compress, which on the event loop
            # every trigger waited behind.
            data = await asyncio.to_thread(_compressed_lines, group, purged)
            name = f"{prefix}{purged}-{batch}{OBJECT_SUFFIX}"
            await self.storage.write(self.folder, name, _one(data))
            names.append(name)
        return names

    async def names(self, day: date, flow: str) -> list[str]:
        """The objects of a day and flow, by name."""
        found = await self.storage.list(self.folder, day_prefix(day, flow))
        return [each.name for each in found if each.name.endswith(OBJECT_SUFFIX)]

    async def lines(self, name: str) -> AsyncIterator[bytes]:
        """The object's JSON Lines, uncompressed as its bytes arrive, line by line."""
        unzip = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
        pending = b""
        async for chunk in self.storage.read(self.folder, name):
            pending += unzip.decompress(chunk)
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line + b"\n"
        pending += unzip.flush()
        if pending:
            yield pending
