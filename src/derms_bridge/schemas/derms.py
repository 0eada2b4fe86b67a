"""What Edge DERMS sends to the hub (and what the hub sends to DERMS)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, JsonValue

from derms_bridge.schemas.common import (
    MAX_ASSETS,
    MAX_BATCH_RECORDS,
    CpmcsDateTime,
    JsonInt,
    Wire,
)

EnrollmentSource = Literal["X1BY", "X1CC", "X1SS"]
AssetOwnership = Literal["W1CO", "W1OW"]
#: enrollProgram's limit on transactionId, which the messageId becomes.
MESSAGE_ID_MAX = 120


class CustomerInfo(Wire):
    cisPersonId: str | None = None
    cisAccountId: str | None = None
    name: str | None = None
    homePhone: str | None = None
    businessPhone: str | None = None
    email: str | None = None


class ProgramInfo(Wire):
    cisServiceAgreementId: str | None = None
    programCode: str = Field(min_length=1)
    startDateTimeISO: CpmcsDateTime
    endDateTimeISO: CpmcsDateTime | None = None


class LocationInfo(Wire):
    division: str | None = None
    cisPremiseId: str | None = None
    cisServicePointId: str | None = None
    timeZone: str | None = None
    address1: str | None = None
    city: str | None = None
    country: str | None = None
    county: str | None = None
    state: str | None = None
    postal: str | None = None


class Asset(Wire):
    sequence: JsonInt | None = None
    assetId: str | None = None
    specification: str = Field(min_length=1, description="MAKE!MODEL, through AssetSpec")
    assetType: str = Field(min_length=1, description="through AssetType")
    badgeNo: str | None = None
    serialNo: str | None = None
    nicId: str | None = None
    headEndSystem: str | None = None


class AssetInfo(Wire):
    installationMethod: str | None = None
    assetOwnership: AssetOwnership | None = None
    assetList: list[Asset] = Field(min_length=1, max_length=MAX_ASSETS)


class EnrollmentRequest(Wire):
    """One enrollment (ER): becomes one enrollProgram call."""

    messageId: str = Field(
        min_length=1, max_length=MESSAGE_ID_MAX, description="becomes transactionId"
    )
    enrollmentSource: EnrollmentSource | None = None
    customerInfo: CustomerInfo
    programInfo: ProgramInfo
    locationInfo: LocationInfo
    assetInfo: AssetInfo


class EnrollmentRequestMessage(Wire):
    """Flow 1's trigger body: a batch whose records are kept as they came, each read as an
    EnrollmentRequest on its own, so that a bad record is answered alone and never refuses
    the batch. The body's size limit (limits.max_json_body_bytes) bounds the records."""

    drmsInstanceId: str = Field(min_length=1, max_length=120)
    enrollmentRequests: list[JsonValue] = Field(min_length=1, max_length=MAX_BATCH_RECORDS)
