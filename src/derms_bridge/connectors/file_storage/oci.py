"""OCI Object Storage through Oracle's own SDK (the optional extra `derms-bridge[oci]`).

The SDK blocks, so each call runs in a thread. Folder.namespace is the OCI namespace
(ConfigProps dacs.os.namespace), Folder.path the bucket.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from typing import IO, Any, TypeVar

from derms_bridge.connectors.file_storage.interface import Folder, StoredFile
from derms_bridge.errors import FileStorageError
from derms_bridge.schemas.file_names import checked_file_name
from derms_bridge.settings.file_storage import OciObjectStorageSettings

CHUNK_BYTES = 1024 * 1024
Result = TypeVar("Result")


class OciObjectStorage:
    def __init__(self, settings: OciObjectStorageSettings) -> None:
        try:
            import oci
            import urllib3
        except ImportError:
            raise FileStorageError(
                "OCI object storage is configured but the oci package is not installed: "
                "pip install 'derms-bridge[oci]'"
            ) from None
        if not settings.key_file.is_file():
            raise FileStorageError(
                f"OCI object storage: the API signing key {settings.key_file} does not exist"
            )
        self._oci: Any = oci
        self._failures: tuple[type[Exception], ...] = (
            oci.exceptions.ServiceError,
            oci.exceptions.RequestException,
            oci._vendor.requests.exceptions.RequestException,
            urllib3.exceptions.HTTPError,
            OSError,
        )
        config = {
            "user": settings.user,
            "tenancy": settings.tenancy,
            "fingerprint": settings.fingerprint,
            "key_file": str(settings.key_file),
            "region": settings.region,
        }
        if settings.key_passphrase is not None:
            config["pass_phrase"] = settings.key_passphrase.get_secret_value()
        endpoint = str(settings.endpoint).rstrip("/") if settings.endpoint else None
        try:
            oci.config.validate_config(config)
            self._client: Any = oci.object_storage.ObjectStorageClient(
                config,
                service_endpoint=endpoint,
                timeout=(settings.timeouts.connect, settings.timeouts.read),
                # The SDK's default keeps trying for ten minutes; a store that is down
                # should fail the run soon, with the operator's resubmit as the retry.
                retry_strategy=oci.retry.RetryStrategyBuilder(
                    max_attempts=3, total_elapsed_time_seconds=30
                ).get_retry_strategy(),
            )
        except (oci.exceptions.InvalidConfig, oci.exceptions.InvalidPrivateKey, ValueError) as exc:
            raise FileStorageError(
                f"OCI object storage: the API key settings are not usable: {type(exc).__name__}"
            ) from None
        self.description = f"OCI object storage {endpoint or settings.region}"

    def _where(self, folder: Folder, name: str | None = None) -> str:
        bucket = f"bucket {folder.path!r} of namespace {folder.namespace!r}"
        return (
            f"{self.description}: {bucket}"
            if name is None
            else (f"{self.description}: {name!r} in {bucket}")
        )

    def _namespace(self, folder: Folder) -> str:
        if not folder.namespace:
            raise FileStorageError(f"{self._where(folder)}: no namespace given")
        return folder.namespace

    def _failure(self, place: str, doing: str, exc: Exception) -> FileStorageError:
        """The store's words for what went wrong; the SDK's own text can carry request
        details, so only the service's code and message are kept."""
        exceptions = self._oci.exceptions
        if isinstance(exc, exceptions.ServiceError):
            if exc.status == 401:
                return FileStorageError(f"{place}: the API signing key was refused ({exc.code})")
            if exc.status == 404:
                return FileStorageError(f"{place} does not exist ({exc.code}: {exc.message})")
            return FileStorageError(
                f"{place}: cannot {doing} (HTTP {exc.status} {exc.code}: {exc.message})",
                http_status=exc.status,
            )
        return FileStorageError(
            f"{place}: cannot {doing}: {type(exc).__name__}: {exc}", unreachable=True
        )

    async def _call(
        self, place: str, doing: str, call: Callable[..., Result], *args: Any, **kwargs: Any
    ) -> Result:
        try:
            return await asyncio.to_thread(call, *args, **kwargs)
        except self._failures as exc:
            raise self._failure(place, doing, exc) from None

    async def list(self, folder: Folder, prefix: str = "") -> list[StoredFile]:
        namespace = self._namespace(folder)
        response = await self._call(
            self._where(folder),
            "list",
            self._oci.pagination.list_call_get_all_results,
            self._client.list_objects,
            namespace,
            folder.path,
            prefix=prefix or None,
            # Names under a further "/" are folders to a person reading the bucket: left out.
            delimiter="/",
            fields="name,size",
        )
        return sorted(
            (StoredFile(summary.name, summary.size) for summary in response.data.objects),
            key=lambda stored: stored.name,
        )

    async def read(self, folder: Folder, name: str) -> AsyncIterator[bytes]:
        checked_file_name(name)
        namespace = self._namespace(folder)
        place = self._where(folder, name)
        response = await self._call(
            place, "read", self._client.get_object, namespace, folder.path, name
        )
        chunks: Iterator[bytes] = response.data.raw.stream(CHUNK_BYTES, decode_content=False)
        try:
            while chunk := await self._call(place, "read", next, chunks, b""):
                yield chunk
        finally:
            response.data.close()

    async def write(self, folder: Folder, name: str, chunks: AsyncIterable[bytes]) -> int:
        checked_file_name(name)
        namespace = self._namespace(folder)
        # PutObject needs the length before the first byte, and given a stream of unknown
        # length the SDK would read it all into memory: the chunks go to a temporary file
        # first. A cut stream therefore never reaches the bucket at all.
        with tempfile.TemporaryFile(prefix="derms-bridge-oci-") as spool:
            written = 0
            async for chunk in chunks:
                await asyncio.to_thread(spool.write, chunk)
                written += len(chunk)
            spool.seek(0)
            await self._call(
                self._where(folder, name),
                "write",
                self._put,
                namespace,
                folder.path,
                name,
                spool,
                written,
            )
        return written

    def _put(self, namespace: str, bucket: str, name: str, body: IO[bytes], size: int) -> None:
        self._client.put_object(
            namespace,
            bucket,
            name,
            body,
            content_length=size,
            # A stream cannot be sent twice; the flow decides whether to try again.
            retry_strategy=self._oci.retry.NoneRetryStrategy(),
        )

    async def rename(self, folder: Folder, name: str, new_name: str) -> None:
        checked_file_name(name)
        checked_file_name(new_name)
        details = self._oci.object_storage.models.RenameObjectDetails(
            source_name=name, new_name=new_name
        )
        await self._call(
            self._where(folder, name),
            f"rename to {new_name!r}",
            self._client.rename_object,
            self._namespace(folder),
            folder.path,
            details,
        )

    async def check(self) -> None:
        await self._call(self.description, "reach", self._client.get_namespace)
