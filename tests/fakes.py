"""Fakes of the interfaces a flow is written against, for unit tests that run in microseconds.

A fake answers from what the test prepared and records what it was sent, so a test
can assert on the calls a flow made without any server.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from derms_bridge.connectors.file_storage.interface import FileStorages, Folder, StoredFile
from derms_bridge.errors import BusinessError, FileStorageError, TechnicalFault
from derms_bridge.flows.ports import FlowContext, FlowResult, SyncFlow
from derms_bridge.lookups import Lookups, load_lookups
from derms_bridge.schemas.cpmcs import EnrollProgramRequest, EnrollProgramResponse

M = TypeVar("M", bound=BaseModel)

LOOKUPS = load_lookups(Path(__file__).resolve().parent.parent / "config" / "lookups")

#: What a fake answers one operation: a JSON body, or an exception to raise.
Script = dict[str, Any | Exception | Callable[[BaseModel], Any]]


@dataclass
class Sent:
    operation: str
    body: BaseModel | None
    path: dict[str, str] = field(default_factory=dict)
    division: str | None = None


class FakeCpmcs:
    def __init__(self, script: Script | None = None) -> None:
        self.script = script or {}
        self.sent: list[Sent] = []

    async def send(self, operation: str, body: BaseModel | None, answer: type[M], **path: str) -> M:
        self.sent.append(Sent(operation, body, dict(path)))
        return _answer(self.script, "CPMCS", operation, body, answer)

    async def enroll_program(self, body: EnrollProgramRequest) -> EnrollProgramResponse:
        return await self.send("enrollProgram", body, EnrollProgramResponse)


class FakeDerms:
    def __init__(self, script: Script | None = None) -> None:
        self.script = script or {}
        self.sent: list[Sent] = []
        self.uploaded: dict[str, bytes] = {}

    async def send(
        self, operation: str, body: BaseModel, answer: type[M], *, division: str | None
    ) -> M:
        self.sent.append(Sent(operation, body, division=division))
        return _answer(self.script, "DERMS", operation, body, answer)

    async def deliver(self, operation: str, body: BaseModel, *, division: str | None) -> None:
        self.sent.append(Sent(operation, body, division=division))
        _raise_planned(self.script, "DERMS", operation)

    async def upload(
        self, operation: str, file_name: str, chunks: AsyncIterable[bytes], *, division: str | None
    ) -> int:
        """Reads the whole body into `uploaded`; answers the script's status for the
        operation (an int, or a callable of the file name), 202 by default."""
        self.uploaded[file_name] = b"".join([chunk async for chunk in chunks])
        _raise_planned(self.script, "DERMS", operation)
        planned: Any = self.script.get(operation, 202)
        status = planned(file_name) if callable(planned) else planned
        assert isinstance(status, int)
        return status


def _raise_planned(script: Script, system: str, operation: str) -> None:
    planned = script.get(operation)
    if isinstance(planned, BusinessError):
        # As the real connector does: a refusal names who refused what.
        planned.refused_by = f"{system} {operation}"
    if isinstance(planned, Exception):
        raise planned


def _answer(
    script: Script, system: str, operation: str, body: BaseModel | None, answer: type[M]
) -> M:
    _raise_planned(script, system, operation)
    planned = script.get(operation)
    if callable(planned) and body is not None:
        planned = planned(body)
    try:
        return answer.model_validate(planned)
    except ValidationError:
        # As the real connector does with an answer it cannot read.
        raise TechnicalFault(f"{operation} answered a body the hub cannot read") from None


class FakeErrors:
    def __init__(self) -> None:
        self.reported: list[str] = []

    async def report(self, error: str) -> None:
        self.reported.append(error)


class FakeRun:
    def __init__(self) -> None:
        self.keys: list[tuple[str, str]] = []

    def add_business_key(self, kind: str, value: str) -> None:
        self.keys.append((kind, value))


class FakeChildren:
    """Runs a child flow in the same context, and remembers which ran."""

    def __init__(self) -> None:
        self.context: FlowContext | None = None
        self.ran: list[tuple[str, BaseModel, FlowResult[Any]]] = []

    async def run(self, flow: SyncFlow[Any, Any], message: BaseModel) -> FlowResult[Any]:
        assert self.context is not None
        result = await flow.run(message, self.context)
        self.ran.append((flow.info.key, message, result))
        return result


class FakeStorage:
    """A file store in memory: folders that exist, and the files written to them."""

    def __init__(self, description: str, folders: set[Folder] | None = None) -> None:
        self.description = description
        self.folders = folders if folders is not None else set()
        self.files: dict[tuple[Folder, str], bytes] = {}

    def _existing(self, folder: Folder) -> Folder:
        if folder not in self.folders:
            raise FileStorageError(f"{self.description}: folder {folder.path!r} does not exist")
        return folder

    async def list(self, folder: Folder, prefix: str = "") -> list[StoredFile]:
        self._existing(folder)
        return sorted(
            (
                StoredFile(name, len(data))
                for (where, name), data in self.files.items()
                if where == folder and name.startswith(prefix)
            ),
            key=lambda stored: stored.name,
        )

    async def read(self, folder: Folder, name: str) -> AsyncIterator[bytes]:
        yield self.files[(self._existing(folder), name)]

    async def write(self, folder: Folder, name: str, chunks: AsyncIterable[bytes]) -> int:
        self._existing(folder)
        data = b"".join([chunk async for chunk in chunks])
        self.files[(folder, name)] = data
        return len(data)

    async def rename(self, folder: Folder, name: str, new_name: str) -> None:
        self.files[(folder, new_name)] = self.files.pop((self._existing(folder), name))

    async def check(self) -> None:
        pass


class FakeReceivedFiles:
    """The files received with messages, by reference."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    async def read(self, reference: str) -> AsyncIterator[bytes]:
        if reference not in self.files:
            raise TechnicalFault(f"the file received with instance {reference} is no longer kept")
        yield self.files[reference]


class FakeNotifications:
    """The process emails a flow sent: (outcome, summary), "NO FILE" for the no-file email."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def no_file(self, summary: str) -> None:
        self.sent.append(("NO FILE", summary))

    async def process_complete(self, outcome: str, summary: str, *, failed: bool) -> None:
        self.sent.append((outcome, summary))


@dataclass
class Fakes:
    context: FlowContext
    cpmcs: FakeCpmcs
    derms: FakeDerms
    errors: FakeErrors
    run: FakeRun
    children: FakeChildren
    ftp: FakeStorage
    object_storage: FakeStorage
    received_files: FakeReceivedFiles
    notifications: FakeNotifications


def fakes(
    cpmcs: Script | FakeCpmcs | None = None,
    derms: Script | None = None,
    *,
    lookups: Lookups = LOOKUPS,
    concurrency: int = 4,
) -> Fakes:
    cpmcs_fake = cpmcs if isinstance(cpmcs, FakeCpmcs) else FakeCpmcs(cpmcs)
    derms_fake = FakeDerms(derms)
    errors, run, children = FakeErrors(), FakeRun(), FakeChildren()
    ftp, object_storage = FakeStorage("fake FTP"), FakeStorage("fake object storage")
    received_files, notifications = FakeReceivedFiles(), FakeNotifications()
    context = FlowContext(
        cpmcs=cpmcs_fake,
        derms=derms_fake,
        lookups=lookups,
        errors=errors,
        run=run,
        children=children,
        stores=FileStorages(ftp=ftp, object_storage=object_storage),
        received_files=received_files,
        notices=notifications,
        concurrency=concurrency,
    )
    children.context = context
    return Fakes(
        context,
        cpmcs_fake,
        derms_fake,
        errors,
        run,
        children,
        ftp,
        object_storage,
        received_files,
        notifications,
    )
