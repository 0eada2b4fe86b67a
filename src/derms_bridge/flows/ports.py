"""The small interfaces a flow is written against; connectors and the engine fill them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from derms_bridge.lookups import Lookups
from derms_bridge.schemas.cpmcs import EnrollProgramRequest, EnrollProgramResponse

Reply = TypeVar("Reply")


class CpmcsApi(Protocol):
    """CPMCS's REST services; BusinessError and TechnicalFault sort what goes wrong."""

    async def enroll_program(self, body: EnrollProgramRequest) -> EnrollProgramResponse: ...


class ErrorHandler(Protocol):
    """The common error handler (flow 20) for the running instance."""

    async def report(self, error: str) -> None:
        """Email the error, once per distinct error in this instance, if the flags say so."""
        ...


class RunRecord(Protocol):
    """What the running instance remembers about itself."""

    def add_business_key(self, kind: str, value: str) -> None: ...


@dataclass(frozen=True)
class FlowContext:
    cpmcs: CpmcsApi
    lookups: Lookups
    errors: ErrorHandler
    run: RunRecord
    concurrency: int = 32


@dataclass(frozen=True)
class FlowResult(Generic[Reply]):
    """The reply for the caller and whether the instance succeeded."""

    reply: Reply
    succeeded: bool
    error: str | None = None
