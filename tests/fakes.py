"""Fakes of the interfaces a flow is written against, for unit tests that run in microseconds.

A fake answers from what the test prepared and records what it was sent, so a test
can assert on the calls a flow made without any server.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from derms_bridge.errors import BusinessError, TechnicalFault
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


@dataclass
class Fakes:
    context: FlowContext
    cpmcs: FakeCpmcs
    derms: FakeDerms
    errors: FakeErrors
    run: FakeRun
    children: FakeChildren


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
    context = FlowContext(
        cpmcs=cpmcs_fake,
        derms=derms_fake,
        lookups=lookups,
        errors=errors,
        run=run,
        children=children,
        concurrency=concurrency,
    )
    children.context = context
    return Fakes(context, cpmcs_fake, derms_fake, errors, run, children)
