"""Flow 1, Enrollment Request (OUTL-BA-DRMS_DACS_ENROLLRQ).

DERMS sends a collection of enrollment requests; CPMCS takes one per call.
"""

from __future__ import annotations

import asyncio

from derms_bridge.catalog import BY_KEY
from derms_bridge.errors import BusinessError, LookupMiss, TechnicalFault
from derms_bridge.flows.ports import FlowContext, FlowResult, SyncFlow
from derms_bridge.lookups import Lookups
from derms_bridge.schemas.common import AckMessage, AckResponse
from derms_bridge.schemas.cpmcs import (
    ALREADY_ENROLLED,
    EnrollAsset,
    EnrollAssetInfo,
    EnrollProgramInfo,
    EnrollProgramRequest,
)
from derms_bridge.schemas.derms import EnrollmentRequest, EnrollmentRequestMessage


def business_keys(message: EnrollmentRequestMessage) -> list[tuple[str, str]]:
    keys = [("messageId", er.messageId) for er in message.enrollmentRequests]
    if message.drmsInstanceId:
        keys.append(("drmsInstanceId", message.drmsInstanceId))
    return keys


def to_enroll_program(er: EnrollmentRequest, lookups: Lookups) -> EnrollProgramRequest:
    """Step 2a: the enrollment request in CPMCS's format."""
    program = er.programInfo
    return EnrollProgramRequest(
        transactionId=er.messageId,
        enrollmentSource=er.enrollmentSource or lookups.prop("dacs.enroll.default.source"),
        customerInfo=er.customerInfo,
        programInfo=EnrollProgramInfo(
            cisServiceAgreementId=program.cisServiceAgreementId,
            programCode=program.programCode,
            startDate=program.startDateTimeISO[:10],
            endDate=program.endDateTimeISO[:10] if program.endDateTimeISO else None,
        ),
        locationInfo=er.locationInfo,
        assetInfo=EnrollAssetInfo(
            installationMethod=er.assetInfo.installationMethod,
            assetOwnership=er.assetInfo.assetOwnership,
            assetList=[
                EnrollAsset(
                    sequence=asset.sequence,
                    assetId=asset.assetId,
                    specification=lookups.translate("AssetSpec", asset.specification),
                    assetType=lookups.translate("AssetType", asset.assetType),
                    badgeNo=asset.badgeNo,
                    serialNo=asset.serialNo,
                    nicId=asset.nicId,
                    headEndSystem=asset.headEndSystem,
                )
                for asset in er.assetInfo.assetList
            ],
        ),
    )


class _CpmcsUnreachable:
    """Once CPMCS cannot be reached, the records not yet sent are not sent at all."""

    def __init__(self) -> None:
        self.reason: str | None = None


async def _enroll_one(
    er: EnrollmentRequest, ctx: FlowContext, outage: _CpmcsUnreachable
) -> AckResponse:
    """Step 2: transform, enrollProgram, and the response for the collection."""
    if outage.reason is not None:
        return AckResponse(id=er.messageId, value=outage.reason, responseCode="FAILURE")
    try:
        answer = await ctx.cpmcs.enroll_program(to_enroll_program(er, ctx.lookups))
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
    # Step 1: the message may carry many enrollment requests.
    outage = _CpmcsUnreachable()
    gate = asyncio.Semaphore(ctx.concurrency)

    async def bounded(er: EnrollmentRequest) -> AckResponse:
        async with gate:
            return await _enroll_one(er, ctx, outage)

    # Step 2: every request is sent, several at once; gather keeps the request order.
    responses = await asyncio.gather(*(bounded(er) for er in message.enrollmentRequests))
    # Step 3: the overall ackType from every responseCode.
    ack = AckMessage.of(list(responses))
    failed = [r for r in responses if r.responseCode != "SUCCESS"]
    error = None
    if failed:
        error = f"{len(failed)} of {len(responses)} enrollment requests not accepted: " + "; ".join(
            f"{r.id}: {r.value}" for r in failed[:5]
        )
    return FlowResult.failed(ack, error) if error else FlowResult.ok(ack)


def crash_reply(message: EnrollmentRequestMessage, error: str) -> AckMessage:
    """Step 4: when the collection cannot be processed, every request gets the FAILURE."""
    return AckMessage.of(
        [
            AckResponse(id=er.messageId, value=error, responseCode="FAILURE")
            for er in message.enrollmentRequests
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
