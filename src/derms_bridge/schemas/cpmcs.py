"""What the hub sends to CPMCS and what CPMCS answers."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from derms_bridge.schemas.common import Wire
from derms_bridge.schemas.derms import (
    AssetOwnership,
    CustomerInfo,
    EnrollmentSource,
    LocationInfo,
)


class EnrollAsset(Wire):
    sequence: int | None = None
    assetId: str | None = None
    specification: str
    assetType: str
    badgeNo: str | None = None
    serialNo: str | None = None
    nicId: str | None = None
    headEndSystem: str | None = None


class EnrollAssetInfo(Wire):
    installationMethod: str | None = None
    assetOwnership: AssetOwnership | None = None
    assetList: list[EnrollAsset]


class EnrollProgramInfo(Wire):
    cisServiceAgreementId: str | None = None
    programCode: str
    startDate: str
    endDate: str | None = None


class EnrollProgramRequest(Wire):
    transactionId: str = Field(max_length=120)
    enrollmentSource: EnrollmentSource
    customerInfo: CustomerInfo
    programInfo: EnrollProgramInfo
    locationInfo: LocationInfo
    assetInfo: EnrollAssetInfo


class EnrollProgramResponse(Wire):
    enrollmentId: str
    status: str


class CpmcsException(Wire):
    messageCategory: int | None = None
    messageNumber: int | None = None
    message: str = ""


class CpmcsErrorBody(Wire):
    """CPMCS's business error (HTTP 400 or 422)."""

    status: Literal["ERROR", "VAL-ERROR"]
    exception: CpmcsException


ALREADY_ENROLLED = 10589
#: createProgramEvent's "Program event {event}/{stage} already exists": the event and stage
#: of the request are in CPMCS already, which is what the create was for.
PROGRAM_EVENT_EXISTS = 10020
#: actionProgramEvent's "Program event {event}/{stage} is {status} already": the program
#: event has the very status the action was to give it.
PROGRAM_EVENT_ALREADY_IN_STATUS = 10023
