"""The small interfaces a flow is written against; connectors and the engine fill them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel, RootModel

from derms_bridge.catalog import FlowInfo
from derms_bridge.connectors.file_storage.interface import FileStorages
from derms_bridge.errors import ConfigurationError, FlowError, TechnicalFault
from derms_bridge.lookups import Lookups
from derms_bridge.schemas.common import AckCode
from derms_bridge.schemas.cpmcs import EnrollProgramRequest, EnrollProgramResponse
from derms_bridge.schemas.ops import SetAsideRow

Message = TypeVar("Message", bound=BaseModel)
Reply = TypeVar("Reply", bound=BaseModel)
Answer = TypeVar("Answer", bound=BaseModel)

RunStatus = Literal["succeeded", "failed", "skipped"]


class AnyJson(RootModel[Any]):
    """An answer whose body the flow does not read (or reads as plain JSON)."""


class CpmcsApi(Protocol):
    """CPMCS's REST services; BusinessError and TechnicalFault sort what goes wrong.

    `operation` is a CPMCS operation name of the contract: enrollProgram,
    postAcknowledgement, postControllableDeviceStatus, createProgramEvent,
    actionProgramEvent, reserveDevice, postEventOutcome, updateSyncRequest.
    """

    async def enroll_program(self, body: EnrollProgramRequest) -> EnrollProgramResponse: ...

    async def send(
        self, operation: str, body: BaseModel, answer: type[Answer], **path: str
    ) -> Answer: ...


class DermsApi(Protocol):
    """DERMS's inbound services, on the connection the Routing lookup picks for a division.

    `operation` is a DERMS operation of the contract: enroll, statusCheck, optOut,
    updateProgram, updateAggregator, deviceReservationAck, deviceOutcomeAck.
    """

    async def send(
        self, operation: str, body: BaseModel, answer: type[Answer], *, division: str | None
    ) -> Answer: ...

    async def deliver(self, operation: str, body: BaseModel, *, division: str | None) -> None:
        """Send, and take any 2xx answer as done without reading its body."""
        ...

    async def upload(
        self, operation: str, file_name: str, chunks: AsyncIterable[bytes], *, division: str | None
    ) -> int:
        """Stream the chunks as the raw body (application/octet-stream) to the operation's
        path for the file; DERMS's HTTP status, or a TechnicalFault when no answer came."""
        ...


class CpmcsSegmentApi(Protocol):
    """CPMCS as the file flows' steps call it (7, 8): its health check, and a segment's body
    written as JSON already."""

    async def send(
        self, operation: str, body: BaseModel | None, answer: type[Answer], **path: str
    ) -> Answer: ...

    async def send_json(self, operation: str, body_json: bytes) -> None:
        """Send a body already written as JSON; any 2xx answer is taken, unread."""
        ...


class ReceivedFiles(Protocol):
    """The files that came with a message (flow 15's CSV), kept by the hub until passed on."""

    def read(self, reference: str) -> AsyncIterator[bytes]:
        """The file's bytes as they came, in chunks; TechnicalFault if it is no longer kept."""
        ...


class ProcessNotices(Protocol):
    """The process emails of the file flows, to the Email_ID `to.process.notification`."""

    async def no_file(self, summary: str) -> None:
        """The no-file email (the flow checks `notification.email.process.nofile.flag`)."""
        ...

    async def process_complete(self, outcome: str, summary: str, *, failed: bool) -> None:
        """The process-complete email: when its flag is true, and always when `failed`."""
        ...


class _NoReceivedFiles:
    """Stands in where a context is built for a message that came with no file."""

    async def read(self, reference: str) -> AsyncIterator[bytes]:
        raise RuntimeError("this flow context has no received files")
        yield b""  # pragma: no cover - makes this an async generator, as the protocol reads


class _NoNotices:
    """Stands in where a context is built without process emails (the flows that send none)."""

    async def no_file(self, summary: str) -> None:
        raise RuntimeError("this flow context sends no process emails")

    async def process_complete(self, outcome: str, summary: str, *, failed: bool) -> None:
        raise RuntimeError("this flow context sends no process emails")


class ErrorHandler(Protocol):
    """The common error handler (flow 20) for the running instance."""

    async def report(self, error: str) -> None:
        """Email the error, once per distinct error in this instance, if the flags say so."""
        ...


class RunRecord(Protocol):
    """What the running instance remembers about itself."""

    def add_business_key(self, kind: str, value: str) -> None: ...


class ChildFlows(Protocol):
    """Runs another flow as its own instance, linked to the running one (flows 12, 14)."""

    async def run(self, flow: SyncFlow[Any, Any], message: BaseModel) -> FlowResult[Any]: ...


@dataclass(frozen=True)
class FlowContext:
    cpmcs: CpmcsApi
    derms: DermsApi
    lookups: Lookups
    errors: ErrorHandler
    run: RunRecord
    children: ChildFlows
    concurrency: int = 32
    stores: FileStorages = field(default_factory=FileStorages)
    received_files: ReceivedFiles = field(default_factory=lambda: _NoReceivedFiles())
    notices: ProcessNotices = field(default_factory=lambda: _NoNotices())


@dataclass(frozen=True)
class FlowResult(Generic[Reply]):
    """How a run ended: the reply for the caller (None: the caller gets a fault)."""

    reply: Reply | None
    status: RunStatus
    error: str | None = None
    timed_out: bool = False
    #: The hub's own configuration stopped the run before any target was called.
    misconfigured: bool = False
    #: Why the reference leaves the message alone (status skipped): no error.
    skipped_reason: str | None = None

    @classmethod
    def ok(cls, reply: Reply) -> FlowResult[Reply]:
        return cls(reply=reply, status="succeeded")

    @classmethod
    def failed(
        cls,
        reply: Reply | None,
        error: str,
        *,
        timed_out: bool = False,
        misconfigured: bool = False,
    ) -> FlowResult[Reply]:
        return cls(
            reply=reply,
            status="failed",
            error=error,
            timed_out=timed_out,
            misconfigured=misconfigured,
        )

    @classmethod
    def skipped(cls, reply: Reply, why: str) -> FlowResult[Reply]:
        return cls(reply=reply, status="skipped", skipped_reason=why)


@dataclass(frozen=True)
class SyncFlow(Generic[Message, Reply]):
    """A flow that answers its caller at once, and what the engine and the API need of it."""

    info: FlowInfo
    message_model: type[Message]
    reply_model: type[Reply]
    business_keys: Callable[[Message], list[tuple[str, str]]]
    run: Callable[[Message, FlowContext], Awaitable[FlowResult[Reply]]]
    crash_reply: Callable[[Message, str], Reply | None]
    #: The trigger route and the role allowed to call it; None for an internal flow.
    route: str | None = None
    role: Literal["derms", "cpmcs"] | None = None


@dataclass(frozen=True)
class ScheduledFlow(Generic[Reply]):
    """A flow that nobody calls: a schedule or an operator starts it (flows 16, 17)."""

    info: FlowInfo
    reply_model: type[Reply]
    run: Callable[[FlowContext], Awaitable[FlowResult[Reply]]]


#: One CSV row as it came, its fields in the order of the flow's header.
CsvRow = list[str]


@dataclass(frozen=True)
class FileJobContext:
    """What a file flow's steps are written against, for one file job (a CSV received from
    DERMS, sent to CPMCS in segments): each call is an activity of the job's instance."""

    cpmcs: CpmcsSegmentApi
    derms: DermsApi
    errors: ErrorHandler
    notices: ProcessNotices
    #: How many times the acknowledgement is tried (settings' segments.ack_attempts).
    ack_attempts: int


@dataclass(frozen=True)
class FileOutcome:
    """How a file job's run ended, for its acknowledgement."""

    #: The acknowledgement's ackType: SUCCESS when CPMCS took every segment and no row was
    #: set aside; ERROR when rows were set aside (or none could go), a business result
    #: DERMS must not retry; FAILURE when the run failed (DERMS retries).
    code: AckCode
    #: Why it failed (None: nothing said why, or it did not fail).
    failure: str | None
    rows: int
    segments: int
    run: int
    #: Segments that went to CPMCS again when it may have had them already (delivery is
    #: at least once per segment: docs/operations.md).
    segments_sent_again: int = 0
    rows_set_aside: int = 0
    #: The first 1,000 rows set aside.
    set_aside: Sequence[SetAsideRow] = ()


@dataclass(frozen=True)
class Acknowledgement:
    """The MsgAck a file job's run sent DERMS, as JSON as it went, kept to be sent again as
    it was; and why DERMS did not take it, if so."""

    msg_ack: Any
    error: str | None


@dataclass(frozen=True)
class FileFlow(Generic[Message]):
    """A flow that takes a JSON message and a CSV file, sends the file's rows to CPMCS in
    segments, and acknowledges the whole file to DERMS once (flows 7 and 8). The engine
    runs its steps, each when it is due (engine/file_jobs/)."""

    info: FlowInfo
    message_model: type[Message]
    header: tuple[str, ...]
    business_keys: Callable[[Message], list[tuple[str, str]]]
    #: A row as CPMCS will take it (what can be normalised, normalised), or why it cannot go
    #: (naming the column): such a row is set aside, and the others go.
    fit_row: Callable[[CsvRow, Lookups], CsvRow | str]
    #: Step 2: CPMCS's health check, before any segment goes; why the file cannot be sent,
    #: or None.
    check_health: Callable[[FileJobContext], Awaitable[str | None]]
    #: Step 3: a segment's body (built as the segment goes, from its rows kept as CSV, so
    #: that the intake only checks them) and its call to CPMCS, which returns why CPMCS
    #: refused it, or None, and raises a passing TechnicalFault, which the engine tries again.
    segment_request: Callable[[Message, list[CsvRow], Lookups], Mapping[str, Any]]
    send_segment: Callable[[CpmcsSegmentApi, bytes], Awaitable[str | None]]
    #: Steps 4 and 5: the one acknowledgement to DERMS and the emails.
    acknowledge: Callable[[FileJobContext, Message, FileOutcome], Awaitable[Acknowledgement]]
    #: A run's acknowledgement (its MsgAck as it went) sent to DERMS again; why DERMS did
    #: not take it, or None.
    acknowledge_again: Callable[[FileJobContext, Any], Awaitable[str | None]]
    route: str
    #: Rows of plain text (printable ASCII; no quote, backslash or comma in a field, so that
    #: each field is JSON as it stands): the regular expression of one such row that
    #: `fit_row` takes unchanged, fields made of `plain_field`, given `times`, an expression
    #: for the date-times already found in CPMCS's form (UTC, with Z), which stand in the
    #: `plain_time_columns`; and
    #: the same body as `segment_json(segment_request(...))`, encoded, made from the rows'
    #: fields, laid end to end, by formatting bytes. A file of a million rows is checked this
    #: way, a block at a time in C, several times faster than a row at a time; and its
    #: bodies are built in about two thirds of the time that formatting text took.
    plain_row_pattern: Callable[[bytes, Lookups], bytes] | None = None
    plain_time_columns: tuple[int, ...] = ()
    plain_segment_request: Callable[[Message, list[bytes], Lookups], bytes] | None = None


#: One byte of a plain field: printable ASCII but the quote, the comma and the backslash.
PLAIN_FIELD_BYTE = rb"[\x20\x21\x23-\x2b\x2d-\x5b\x5d-\x7e]"


def plain_field(least: int, most: int) -> bytes:
    """The expression of a plain field of `least` to `most` bytes (possessive: a field never
    gives back what it took, so a row that does not fit fails at once)."""
    return rb"%s{%d,%d}+" % (PLAIN_FIELD_BYTE, least, most)


def segment_json(body: Mapping[str, Any]) -> str:
    """A segment's body as it is kept and sent: compact JSON."""
    return json.dumps(body, separators=(",", ":"))


async def fault_to_cpmcs(ctx: FlowContext, error: FlowError) -> FlowResult[Any]:
    """The reference's "throws a fault back to CPMCS and sends the error email": no
    reply, so CPMCS gets a 502 problem (504 when the target timed out; a 500
    configuration error when the hub's configuration stopped it before any call)."""
    if isinstance(error, ConfigurationError):
        reason = f"configuration error, no target was called: {error}"
        await ctx.errors.report(reason)
        return FlowResult.failed(None, reason, misconfigured=True)
    await ctx.errors.report(str(error))
    timed_out = isinstance(error, TechnicalFault) and error.timed_out
    return FlowResult.failed(None, str(error), timed_out=timed_out)
