"""Flows 11-14, Program Rule Sync and Aggregator Sync with their acknowledgements.

CPMCS's X1-GEDPGRMSG and X1-GEDAGRMSG, what DERMS /update-program and
/update-aggregator receive and answer, and the F1-SyncRequest update that
acknowledges the sync to CPMCS. The program with its rules, and the aggregator with its
contacts, pass through: a field the contract does not name arrives at DERMS as it came.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field

from derms_bridge.schemas.common import MAX_LIST_ITEMS, JsonInt, JsonNumber, PassThrough, Wire

#: F1-SyncRequest's limit on syncRequestId (CPMCS field limits).
SYNC_REQUEST_ID_MAX = 14
#: F1-SyncRequest's limit on exceptionInfo[].comments.
COMMENTS_MAX = 254
#: CPMCS's bounds on exceptionInfo[].messageCategory and messageNumber.
MESSAGE_NUMBER_MIN, MESSAGE_NUMBER_MAX = -99999, 99999
#: The message category of every exceptionInfo the hub writes (as in flow 3).
MESSAGE_CATEGORY = 11101


def _one_path_segment(value: str) -> str:
    # F1-SyncRequest names it in its URL's path, where "/" (even encoded), "." and ".."
    # would name another resource: refused here, never sent to the wrong one.
    if "/" in value or value in (".", ".."):
        raise ValueError("must name one segment of CPMCS's URL: no '/', not '.' or '..'")
    return value


SyncRequestId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=SYNC_REQUEST_ID_MAX,
        json_schema_extra={"pattern": r"^(?!\.{1,2}$)[^/]+$"},
    ),
    AfterValidator(_one_path_segment),
]


# Flow 11: CPMCS's program and what DERMS receives.


class ProgramRule(PassThrough):
    """A program rule; its codes are CPMCS's (X1WK, X1MO, X1WD)."""

    ruleId: str | None = None
    cycleFrequency: str | None = None
    maxEvents: JsonInt | None = None
    # Hours may be fractional; a whole number stays an int on the way to DERMS.
    maxEventHours: JsonNumber | None = None
    weekDays: list[str] = Field(default_factory=list, max_length=7)
    allowEventDays: str | None = None


class Program(PassThrough):
    programCode: str = Field(min_length=1)
    description: str | None = None
    division: str | None = None
    rules: list[ProgramRule] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)


class ProgramRuleSyncDetails(Wire):
    syncRequestId: SyncRequestId
    program: Program


class ProgramRuleSyncMessage(Wire):
    """CPMCS outbound message X1-GEDPGRMSG (Program Rule)."""

    sendDetails: ProgramRuleSyncDetails


class DermsUpdateProgram(Wire):
    """The body of DERMS POST /update-program; the rules carry DERMS's values (WEEKLY, MON)."""

    dacsMessageId: str
    program: Program


# Flow 13: CPMCS's aggregator and what DERMS receives.


class Aggregator(PassThrough):
    aggregatorId: str = Field(min_length=1)
    name: str | None = None
    status: str | None = None
    division: str | None = None
    # The contract leaves a contact's fields open: they go to DERMS as CPMCS sent them.
    contacts: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)


class AggregatorSyncDetails(Wire):
    syncRequestId: SyncRequestId
    aggregator: Aggregator


class AggregatorSyncMessage(Wire):
    """CPMCS outbound message X1-GEDAGRMSG (Aggregator)."""

    sendDetails: AggregatorSyncDetails


class DermsUpdateAggregator(Wire):
    """The body of DERMS POST /update-aggregator."""

    dacsMessageId: str
    aggregator: Aggregator


# What DERMS answers both with HTTP 200: a MsgAck, read leniently so that an ackType
# or responseCode the contract does not name still counts as "other than SUCCESS".


class DermsAckResponse(Wire):
    id: str | None = None
    value: str | None = None
    responseCode: str | None = None
    responseTimeISO: str | None = None
    dacsMessageId: str | None = None


class DermsAckResponses(Wire):
    response: list[DermsAckResponse] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)


class DermsAckBody(Wire):
    ackType: str
    whenISO: str | None = None
    responses: DermsAckResponses = Field(default_factory=DermsAckResponses)


class DermsSyncAnswer(Wire):
    """DERMS's MsgAck to /update-program or /update-aggregator."""

    MsgAck: DermsAckBody


# Flows 12 and 14: what the sync hands its acknowledgement, and what CPMCS receives.


class SyncAckMessage(Wire):
    """The message of flow 12 or 14: the sync request and DERMS's HTTP 200 answer to it."""

    syncRequestId: SyncRequestId
    dermsAnswer: DermsSyncAnswer


class ExceptionInfo(Wire):
    messageCategory: int = Field(
        default=MESSAGE_CATEGORY, ge=MESSAGE_NUMBER_MIN, le=MESSAGE_NUMBER_MAX
    )
    messageNumber: int = Field(ge=MESSAGE_NUMBER_MIN, le=MESSAGE_NUMBER_MAX)
    comments: str = Field(max_length=COMMENTS_MAX)


class SyncRequestUpdate(Wire):
    """The body of CPMCS F1-SyncRequest PATCH /rest/apis/common/sync/syncRequest/{id}."""

    syncRequestId: SyncRequestId
    hasError: bool
    # Omitted (None) when hasError is false.
    exceptionInfo: list[ExceptionInfo] | None = None
