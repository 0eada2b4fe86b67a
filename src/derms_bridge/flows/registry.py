"""Every request/response flow the engine can run and the API can expose."""

from __future__ import annotations

from typing import Any

from derms_bridge.flows import enrollment_request, enrollment_sync
from derms_bridge.flows.ports import SyncFlow

SYNC_FLOWS: dict[str, SyncFlow[Any, Any]] = {
    flow.info.key: flow
    for flow in (
        enrollment_request.FLOW,
        enrollment_sync.FLOW,
    )
}
