"""Flow 2, Enrollment Sync: CPMCS's X1-NMSDASMSG and what DERMS /enroll receives.

The contact, the subscription, the location with its devices, and any other structure of
sendDetails (a completed DER registration's, whatever DER details CPMCS sends) pass
through: a field the contract does not name arrives at DERMS as it came.
"""

from __future__ import annotations

from pydantic import Field

from derms_bridge.schemas.common import MAX_LIST_ITEMS, PassThrough, Wire


class ContactInfo(PassThrough):
    contactId: str | None = None
    cisPersonId: str | None = None


class SubscriptionInfo(PassThrough):
    subscriptionId: str | None = None
    cisAccountId: str | None = None
    subscriptionType: str | None = None
    status: str | None = None
    programId: str | None = None
    startDateTime: str | None = Field(None, description="as CPMCS wrote it; passed on unread")
    endDateTime: str | None = Field(None, description="as CPMCS wrote it; passed on unread")
    programCode: str | None = None


class ControllableDevice(PassThrough):
    deviceId: str | None = None
    deviceType: str | None = None
    specification: str | None = None
    nicId: str | None = None
    headEndSystem: str | None = None
    serialNo: str | None = None
    badgeNo: str | None = None


class SyncLocationInfo(PassThrough):
    division: str | None = None
    servicePointId: str | None = None
    cisPremiseId: str | None = None
    cisServicePointId: str | None = None
    controllableDevices: list[ControllableDevice] = Field(
        default_factory=list, max_length=MAX_LIST_ITEMS
    )


class EnrollmentSyncDetails(PassThrough):
    """Its fields the contract does not name go on at the top of DERMS's /enroll body."""

    syncRequestId: str = Field(min_length=1, max_length=14)
    contactInfo: ContactInfo | None = None
    subscriptionInfo: SubscriptionInfo
    locationInfo: SyncLocationInfo


class EnrollmentSyncMessage(Wire):
    """CPMCS outbound message X1-NMSDASMSG (Asset Customer)."""

    sendDetails: EnrollmentSyncDetails


class DermsSubscriptionInfo(PassThrough):
    subscriptionId: str | None = None
    cisAccountId: str | None = None
    subscriptionType: str | None = None
    status: str | None = None
    programId: str | None = None
    startDateTimeISO: str | None = None
    endDateTimeISO: str | None = None
    programCode: str | None = None


class DermsEnroll(PassThrough):
    """The body of DERMS POST /enroll."""

    dacsMessageId: str
    contactInfo: ContactInfo | None = None
    subscriptionInfo: DermsSubscriptionInfo
    locationInfo: SyncLocationInfo
