"""Flow 1, Enrollment Request (OUTL-BA-DRMS_DACS_ENROLLRQ).

DERMS sends a collection of enrollment requests; CPMCS takes one per call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Sequence

from pydantic import JsonValue, ValidationError

from derms_bridge.catalog import BY_KEY
from derms_bridge.errors import BusinessError, LookupMiss, TechnicalFault
from derms_bridge.flows.ports import FlowContext, FlowResult, SyncFlow
from derms_bridge.lookups import Lookups
from derms_bridge.schemas.common import AckMessage, AckResponse, cpmcs_date
from derms_bridge.schemas.cpmcs import (
    ALREADY_ENROLLED,
    EnrollAsset,
    EnrollAssetInfo,
    EnrollProgramInfo,
    EnrollProgramRequest,
)
from derms_bridge.schemas.derms import (
    MESSAGE_ID_MAX,
    EnrollmentRequest,
    EnrollmentRequestMessage,
)
from derms_bridge.schemas.problems import field_path


def _message_id(record: JsonValue) -> str | None:
    """The record's messageId, when it has one that can be read."""
    message_id = record.get("messageId") if isinstance(record, dict) else None
    return message_id if isinstance(message_id, str) and message_id else None


def response_id(position: int, record: JsonValue) -> str:
    """A record's response `id`: its messageId, else where it stands in the batch."""
    return _message_id(record) or f"enrollmentRequests[{position}]"


def business_keys(message: EnrollmentRequestMessage) -> list[tuple[str, str]]:
    keys = [
        ("messageId", message_id)
        for message_id in map(_message_id, message.enrollmentRequests)
        if message_id is not None and len(message_id) <= MESSAGE_ID_MAX
    ]
    keys.append(("drmsInstanceId", message.drmsInstanceId))
    return keys


def read_record(position: int, record: JsonValue) -> EnrollmentRequest | str:
    """Step 2's first check: the record as an enrollment request, or why it is not one,
    naming each field (`enrollmentRequests[3].programInfo.startDateTimeISO: ...`)."""
    try:
        return EnrollmentRequest.model_validate(record)
    except ValidationError as invalid:
        return "; ".join(
            f"{field_path(('enrollmentRequests', position, *error['loc']))}: {error['msg']}"
            for error in invalid.errors()
        )


def _translated(lookups: Lookups, lookup: str, value: str, field: str) -> str:
    try:
        return lookups.translate(lookup, value)
    except LookupMiss as miss:
        raise LookupMiss(miss.lookup, miss.value, field=field) from None


def to_enroll_program(er: EnrollmentRequest, lookups: Lookups) -> EnrollProgramRequest:
    """Step 2a: the enrollment request in CPMCS's format; LookupMiss names the field."""
    program = er.programInfo
    return EnrollProgramRequest(
        transactionId=er.messageId,
        enrollmentSource=er.enrollmentSource or lookups.prop("dacs.enroll.default.source"),
        customerInfo=er.customerInfo,
        programInfo=EnrollProgramInfo(
            cisServiceAgreementId=program.cisServiceAgreementId,
            programCode=program.programCode,
            startDate=cpmcs_date(program.startDateTimeISO).isoformat(),
            endDate=(
                cpmcs_date(program.endDateTimeISO).isoformat() if program.endDateTimeISO else None
            ),
        ),
        locationInfo=er.locationInfo,
        assetInfo=EnrollAssetInfo(
            installationMethod=er.assetInfo.installationMethod,
            assetOwnership=er.assetInfo.assetOwnership,
            assetList=[
                EnrollAsset(
                    sequence=asset.sequence,
                    assetId=asset.assetId,
                    specification=_translated(
                        lookups,
                        "AssetSpec",
                        asset.specification,
                        f"assetInfo.assetList[{index}].specification",
                    ),
                    assetType=_translated(
                        lookups,
                        "AssetType",
                        asset.assetType,
                        f"assetInfo.assetList[{index}].assetType",
                    ),
                    badgeNo=asset.badgeNo,
                    serialNo=asset.serialNo,
                    nicId=asset.nicId,
                    headEndSystem=asset.headEndSystem,
                )
                for index, asset in enumerate(er.assetInfo.assetList)
            ],
        ),
    )


def ordering_keys(er: EnrollmentRequest) -> set[Hashable]:
    """The account and the devices an enrollment touches: CPMCS must see two enrollments
    that share one in the order DERMS sent them."""
    keys: set[Hashable] = set()
    if er.customerInfo.cisAccountId:
        keys.add(("cisAccountId", er.customerInfo.cisAccountId))
    for asset in er.assetInfo.assetList:
        keys.update(
            (kind, value)
            for kind, value in (("assetId", asset.assetId), ("nicId", asset.nicId))
            if value
        )
    return keys


def in_turns(keys_of_each: Sequence[set[Hashable]]) -> list[list[int]]:
    """The positions grouped so that records sharing a key, directly or through others,
    are in one group, each group in batch order: a group goes one record at a time, the
    groups side by side."""
    leader = list(range(len(keys_of_each)))

    def leader_of(position: int) -> int:
        while leader[position] != position:
            leader[position] = leader[leader[position]]
            position = leader[position]
        return position

    first_with: dict[Hashable, int] = {}
    for position, keys in enumerate(keys_of_each):
        for key in keys:
            if key in first_with:
                leader[leader_of(position)] = leader_of(first_with[key])
            else:
                first_with[key] = position
    groups: dict[int, list[int]] = {}
    for position in range(len(keys_of_each)):
        groups.setdefault(leader_of(position), []).append(position)
    return list(groups.values())


class _CpmcsUnreachable:
    """Once CPMCS cannot be reached, the records not yet sent are not sent at all."""

    def __init__(self) -> None:
        self.reason: str | None = None


async def _enroll_one(
    position: int, er: EnrollmentRequest, ctx: FlowContext, outage: _CpmcsUnreachable
) -> AckResponse:
    """Step 2: transform, enrollProgram, and the response for the collection."""
    if outage.reason is not None:
        return AckResponse(id=er.messageId, value=outage.reason, responseCode="FAILURE")
    try:
        body = to_enroll_program(er, ctx.lookups)
    except LookupMiss as miss:
        # A code the lookups lack: this record's error, nothing of it sent, and the email,
        # since only an operator can add the row.
        value = f"enrollmentRequests[{position}].{miss.field}: {miss}"
        await ctx.errors.report(value)
        return AckResponse(id=er.messageId, value=value, responseCode="ERROR")
    try:
        answer = await ctx.cpmcs.enroll_program(body)
        ctx.run.add_business_key("enrollmentId", answer.enrollmentId)
        return AckResponse(
            id=er.messageId,
            value=ctx.lookups.translate("EnrollmentStatus", answer.status),
            responseCode="SUCCESS",
            dacsMessageId=answer.enrollmentId,
        )
    except BusinessError as error:
        if error.message_number == ALREADY_ENROLLED:
            return AckResponse(id=er.messageId, value=error.message, responseCode="SUCCESS")
        return AckResponse(id=er.messageId, value=error.coded, responseCode="ERROR")
    except (TechnicalFault, LookupMiss) as error:
        # Step 4: a technical error on one record is captured in its response and
        # emailed the first time it occurs; the collection goes on.
        if isinstance(error, TechnicalFault) and error.unreachable:
            outage.reason = f"not sent: {error}"
        await ctx.errors.report(str(error))
        return AckResponse(id=er.messageId, value=str(error), responseCode="FAILURE")


async def run(message: EnrollmentRequestMessage, ctx: FlowContext) -> FlowResult[AckMessage]:
    # Step 1: the message may carry many enrollment requests; each is read on its own,
    # and one that is not a valid request is answered ERROR while the others go on.
    records = [read_record(n, record) for n, record in enumerate(message.enrollmentRequests)]
    responses: list[AckResponse | None] = [
        AckResponse(
            id=response_id(n, message.enrollmentRequests[n]), value=problem, responseCode="ERROR"
        )
        if isinstance(problem, str)
        else None
        for n, problem in enumerate(records)
    ]
    valid = [(n, er) for n, er in enumerate(records) if isinstance(er, EnrollmentRequest)]
    outage = _CpmcsUnreachable()
    gate = asyncio.Semaphore(ctx.concurrency)

    async def in_turn(group: list[int]) -> None:
        for member in group:
            position, er = valid[member]
            async with gate:
                responses[position] = await _enroll_one(position, er, ctx, outage)

    # Step 2: every request is sent, several at once, but those of one account or device
    # one after the other in the batch's order.
    groups = in_turns([ordering_keys(er) for _position, er in valid])
    if len(groups) == 1:
        # One group (a batch of one record, the usual) needs no task of its own: gathered,
        # it cost the event loop a task and a gather, about 5 us a flow.
        await in_turn(groups[0])
    else:
        await asyncio.gather(*(in_turn(group) for group in groups))
    answered = [response for response in responses if response is not None]
    # Step 3: the overall ackType from every responseCode.
    ack = AckMessage.of(answered)
    failed = [r for r in answered if r.responseCode != "SUCCESS"]
    error = None
    if failed:
        error = f"{len(failed)} of {len(answered)} enrollment requests not accepted: " + "; ".join(
            f"{r.id}: {r.value}" for r in failed[:5]
        )
    return FlowResult.failed(ack, error) if error else FlowResult.ok(ack)


def crash_reply(message: EnrollmentRequestMessage, error: str) -> AckMessage:
    """Step 4: when the collection cannot be processed, every request gets the FAILURE."""
    return AckMessage.of(
        [
            AckResponse(id=response_id(n, record), value=error, responseCode="FAILURE")
            for n, record in enumerate(message.enrollmentRequests)
        ]
    )


FLOW = SyncFlow(
    info=BY_KEY["enrollment_request"],
    message_model=EnrollmentRequestMessage,
    reply_model=AckMessage,
    business_keys=business_keys,
    run=run,
    crash_reply=crash_reply,
    route="/enroll-to-dacs",
    role="derms",
)
