"""Flow 4, Device Status Check: CPMCS's X1-CTRLDVCS and what DERMS /status-check receives."""

from __future__ import annotations

from pydantic import Field

from derms_bridge.schemas.common import Wire


class StatusCheckDeviceInfo(Wire):
    """The device CPMCS asks about; it goes to DERMS as it came."""

    division: str | None = None
    deviceType: str | None = None
    specification: str | None = None
    headEndSystem: str | None = None
    # Lower-case "id", unlike nicId everywhere else: the reference's spelling on both sides.
    nicid: str | None = None


class DeviceStatusCheckDetails(Wire):
    # DERMS answers through flow 5, which returns this to CPMCS as postControllableDeviceStatus
    # transactionID, at most 30 characters: a longer one could never be acknowledged.
    communicationId: str = Field(min_length=1, max_length=30)
    deviceInfo: StatusCheckDeviceInfo


class DeviceStatusCheckMessage(Wire):
    """CPMCS outbound message X1-CTRLDVCS (Controllable Device Status Check)."""

    sendDetails: DeviceStatusCheckDetails


class DermsStatusCheck(Wire):
    """The body of DERMS POST /status-check; the capital D of DeviceInfo is the reference's."""

    dacsMessageId: str
    DeviceInfo: StatusCheckDeviceInfo
