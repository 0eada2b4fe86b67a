"""S3-compatible object storage (MinIO, AWS S3, OCI's S3 compatibility endpoint) through
boto3 (the optional extra `derms-bridge[s3]`), its blocking calls run in threads.

Folder.path is the bucket; Folder.namespace means nothing to S3 and is ignored.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any, TypeVar

from derms_bridge.connectors.file_storage.interface import Folder, StoredFile
from derms_bridge.errors import FileStorageError
from derms_bridge.schemas.file_names import checked_file_name
from derms_bridge.settings.file_storage import S3Settings

CHUNK_BYTES = 1024 * 1024
#: S3's smallest part: botocore holds a few copies of each part in flight while it signs
#: and sends it, so an upload takes about 30 MB whatever the size of the file.
PART_BYTES = 5 * 1024 * 1024
Result = TypeVar("Result")


class _ChunksReader:
    """A blocking file-like reader over an async iterator of chunks, for boto3's upload in
    its threads: each read waits for the next chunk from the event loop, so no more than
    boto3's own part buffers is ever held."""

    def __init__(self, chunks: AsyncIterable[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self._chunks = aiter(chunks)
        self._loop = loop
        self._pending = bytearray()
        self.consumed = 0

    async def _anext(self) -> bytes:
        return await anext(self._chunks, b"")

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._pending) < size:
            chunk = asyncio.run_coroutine_threadsafe(self._anext(), self._loop).result()
            if not chunk:
                break
            self._pending += chunk
        taken = len(self._pending) if size < 0 else min(size, len(self._pending))
        data = bytes(self._pending[:taken])
        del self._pending[:taken]
        self.consumed += taken
        return data


class S3Storage:
    def __init__(self, settings: S3Settings) -> None:
        try:
            import boto3
            import boto3.s3.transfer
            import botocore.config
            import botocore.exceptions
        except ImportError:
            raise FileStorageError(
                "S3 object storage is configured but boto3 is not installed: "
                "pip install 'derms-bridge[s3]'"
            ) from None
        self._botocore_exceptions: Any = botocore.exceptions
        endpoint = str(settings.endpoint).rstrip("/") if settings.endpoint else None
        self._client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=settings.region,
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key.get_secret_value(),
            verify=str(settings.ca_bundle) if settings.ca_bundle else None,
            config=botocore.config.Config(
                connect_timeout=settings.timeouts.connect,
                read_timeout=settings.timeouts.read,
                retries={"max_attempts": 3, "mode": "standard"},
                s3={"addressing_style": "path" if settings.path_style else "virtual"},
            ),
        )
        self.description = f"S3 {endpoint or settings.region}"
        self._transfer = boto3.s3.transfer.TransferConfig(
            multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES, max_concurrency=2
        )
        # s3transfer's own bound on the parts of an unseekable stream held at once (10 by
        # default); with two, an upload's memory stays the same whatever the file's size.
        self._transfer.max_in_memory_upload_chunks = 2

    def _where(self, folder: Folder, name: str | None = None) -> str:
        bucket = f"bucket {folder.path!r}"
        return (
            f"{self.description}: {bucket}"
            if name is None
            else (f"{self.description}: {name!r} in {bucket}")
        )

    def _failure(self, place: str, doing: str, exc: Exception) -> FileStorageError:
        if isinstance(exc, self._botocore_exceptions.ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"}:
                return FileStorageError(f"{place}: the access key was refused ({code})")
            if code in {"NoSuchBucket", "NoSuchKey", "404"}:
                return FileStorageError(f"{place} does not exist ({code})")
            return FileStorageError(
                f"{place}: cannot {doing} (HTTP {status} {code}: {error.get('Message', '')})",
                http_status=status,
            )
        return FileStorageError(f"{place}: cannot {doing}: {exc}", unreachable=True)

    async def _call(
        self, place: str, doing: str, call: Callable[..., Result], *args: Any, **kwargs: Any
    ) -> Result:
        failures = (self._botocore_exceptions.BotoCoreError, self._botocore_exceptions.ClientError)
        try:
            return await asyncio.to_thread(call, *args, **kwargs)
        except failures as exc:
            raise self._failure(place, doing, exc) from None

    async def list(self, folder: Folder, prefix: str = "") -> list[StoredFile]:
        def every_object() -> list[StoredFile]:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=folder.path, Prefix=prefix, Delimiter="/"
            )
            return [
                StoredFile(item["Key"], item["Size"])
                for page in pages
                for item in page.get("Contents", [])
            ]

        found = await self._call(self._where(folder), "list", every_object)
        return sorted(found, key=lambda stored: stored.name)

    async def read(self, folder: Folder, name: str) -> AsyncIterator[bytes]:
        checked_file_name(name)
        place = self._where(folder, name)
        response = await self._call(
            place, "read", self._client.get_object, Bucket=folder.path, Key=name
        )
        chunks = response["Body"].iter_chunks(CHUNK_BYTES)
        try:
            while chunk := await self._call(place, "read", next, chunks, b""):
                yield chunk
        finally:
            response["Body"].close()

    async def write(self, folder: Folder, name: str, chunks: AsyncIterable[bytes]) -> int:
        checked_file_name(name)
        # boto3's managed upload sends parts as they fill and aborts the multipart upload
        # when the reader raises, so a cut transfer leaves no object behind.
        reader = _ChunksReader(chunks, asyncio.get_running_loop())
        await self._call(
            self._where(folder, name),
            "write",
            self._client.upload_fileobj,
            reader,
            folder.path,
            name,
            Config=self._transfer,
        )
        return reader.consumed

    async def rename(self, folder: Folder, name: str, new_name: str) -> None:
        checked_file_name(name)
        checked_file_name(new_name)
        place = self._where(folder, name)
        doing = f"rename to {new_name!r}"
        # S3 has no rename: a server-side copy (multipart when large), then the delete.
        await self._call(
            place,
            doing,
            self._client.copy,
            {"Bucket": folder.path, "Key": name},
            folder.path,
            new_name,
        )
        await self._call(place, doing, self._client.delete_object, Bucket=folder.path, Key=name)

    async def check(self) -> None:
        await self._call(self.description, "reach", self._client.list_buckets)
