"""Flow 13, Aggregator Sync (OUTL-BA-DACS_DERMS_AGGREG_SYNC).

CPMCS sends an aggregator it created or changed; DERMS gets it at /update-aggregator on
the connection its division routes to. On DERMS's HTTP 200, flow 14 (Aggregator Sync
Ack) acknowledges the sync to CPMCS.
"""

from __future__ import annotations

from derms_bridge.catalog import BY_KEY
from derms_bridge.flows.ports import FlowContext, FlowResult, SyncFlow
from derms_bridge.flows.sync_ack import (
    AGGREGATOR_SYNC_ACK_FLOW,
    crash_reply,
    update_derms_and_acknowledge,
)
from derms_bridge.schemas.common import CpmcsReply
from derms_bridge.schemas.program_sync import AggregatorSyncMessage, DermsUpdateAggregator


def business_keys(message: AggregatorSyncMessage) -> list[tuple[str, str]]:
    details = message.sendDetails
    return [
        ("syncRequestId", details.syncRequestId),
        ("aggregatorId", details.aggregator.aggregatorId),
    ]


def to_derms_aggregator(message: AggregatorSyncMessage) -> DermsUpdateAggregator:
    """Step 2: the payload in DERMS's format; the aggregator goes as it came (no lookups)."""
    details = message.sendDetails
    return DermsUpdateAggregator(dacsMessageId=details.syncRequestId, aggregator=details.aggregator)


async def run(message: AggregatorSyncMessage, ctx: FlowContext) -> FlowResult[CpmcsReply]:
    # Step 1: triggered by CPMCS's outbound message.
    details = message.sendDetails
    # Step 2: transform.
    body = to_derms_aggregator(message)
    # Steps 3 to 5, as flow 11: DERMS's update-aggregator, then flow 14 on its HTTP 200.
    return await update_derms_and_acknowledge(
        ctx,
        operation="updateAggregator",
        body=body,
        division=details.aggregator.division,
        sync_request_id=details.syncRequestId,
        acknowledgement=AGGREGATOR_SYNC_ACK_FLOW,
    )


FLOW = SyncFlow(
    info=BY_KEY["aggregator_sync"],
    message_model=AggregatorSyncMessage,
    reply_model=CpmcsReply,
    business_keys=business_keys,
    run=run,
    crash_reply=crash_reply,
    route="/cpmcs/outbound/X1-GEDAGRMSG",
    role="cpmcs",
)
