"""Every request/response flow the engine can run and the API can expose."""

from __future__ import annotations

from typing import Any

from derms_bridge.flows import (
    aggregator_sync,
    customer_event_opt_out,
    customer_unavailability,
    device_score_transfer,
    device_status_check,
    device_status_check_ack,
    enroll_headend_status_ack,
    enrollment_request,
    enrollment_sync,
    event_device_outcome,
    event_device_reservation,
    program_event_status_update,
    program_rule_sync,
    sp_network_location_transfer,
    sync_ack,
)
from derms_bridge.flows.ports import FileFlow, ScheduledFlow, SyncFlow

SYNC_FLOWS: dict[str, SyncFlow[Any, Any]] = {
    flow.info.key: flow
    for flow in (
        enrollment_request.FLOW,
        enrollment_sync.FLOW,
        device_status_check.FLOW,
        customer_event_opt_out.FLOW,
        customer_unavailability.FLOW,
        enroll_headend_status_ack.FLOW,
        device_status_check_ack.FLOW,
        program_event_status_update.FLOW,
        program_rule_sync.FLOW,
        sync_ack.PROGRAM_RULE_SYNC_ACK_FLOW,
        aggregator_sync.FLOW,
        sync_ack.AGGREGATOR_SYNC_ACK_FLOW,
    )
}

FILE_FLOWS: dict[str, FileFlow[Any]] = {
    flow.info.key: flow for flow in (event_device_reservation.FLOW, event_device_outcome.FLOW)
}

#: Flows that take a file to pass on unchanged: kept at intake, run by a transfer worker.
TRANSFER_FLOWS: dict[str, SyncFlow[Any, Any]] = {
    flow.info.key: flow for flow in (sp_network_location_transfer.FLOW,)
}

#: The flows a schedule or an operator starts; settings.ScheduledFlowKey names the same.
SCHEDULED_FLOWS: dict[str, ScheduledFlow[Any]] = {
    flow.info.key: flow
    for flow in (device_score_transfer.FTP_FLOW, device_score_transfer.OBJECT_STORAGE_FLOW)
}
