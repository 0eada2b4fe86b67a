"""The request/response flows the engine can run, each with what the engine needs to know."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from derms_bridge.catalog import BY_KEY, FlowInfo
from derms_bridge.flows import enrollment_request
from derms_bridge.flows.ports import FlowContext, FlowResult
from derms_bridge.schemas.derms import EnrollmentRequestMessage

Message = TypeVar("Message", bound=BaseModel)
Reply = TypeVar("Reply", bound=BaseModel)


@dataclass(frozen=True)
class SyncFlow(Generic[Message, Reply]):
    """A flow that answers its caller at once."""

    info: FlowInfo
    message_model: type[Message]
    business_keys: Callable[[Message], list[tuple[str, str]]]
    run: Callable[[Message, FlowContext], Awaitable[FlowResult[Reply]]]
    crash_reply: Callable[[Message, str], Reply]


ENROLLMENT_REQUEST: SyncFlow[Any, Any] = SyncFlow(
    info=BY_KEY["enrollment_request"],
    message_model=EnrollmentRequestMessage,
    business_keys=enrollment_request.business_keys,
    run=enrollment_request.run,
    crash_reply=enrollment_request.crash_reply,
)

SYNC_FLOWS: dict[str, SyncFlow[Any, Any]] = {flow.info.key: flow for flow in (ENROLLMENT_REQUEST,)}
