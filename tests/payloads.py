"""Payloads as DERMS and CPMCS send them, for the tests."""

from __future__ import annotations

from typing import Any


def enrollment_request(
    message_id: str,
    *,
    program: str = "BYOT",
    specification: str = "ECOBEE!SMART5",
    asset_type: str = "THERMOSTAT",
    source: str | None = None,
) -> dict[str, Any]:
    er: dict[str, Any] = {
        "messageId": message_id,
        "customerInfo": {
            "cisPersonId": "1234567890",
            "cisAccountId": "2345678901",
            "name": "Ada Lovelace",
            "homePhone": "555-0100",
            "email": "ada@example.com",
        },
        "programInfo": {
            "cisServiceAgreementId": "3456789012",
            "programCode": program,
            "startDateTimeISO": "2026-12-01T08:00:00.000-05:00",
            "endDateTimeISO": "2027-11-30T23:59:59.000Z",
        },
        "locationInfo": {
            "division": "NORTH",
            "cisPremiseId": "4567890123",
            "cisServicePointId": "5678901234",
            "timeZone": "US/Eastern",
            "address1": "1 Main St",
            "city": "Springfield",
            "country": "USA",
            "state": "IL",
            "postal": "62701",
        },
        "assetInfo": {
            "installationMethod": "SELF",
            "assetOwnership": "W1CO",
            "assetList": [
                {
                    "sequence": 1,
                    "assetId": "T-1",
                    "specification": specification,
                    "assetType": asset_type,
                    "badgeNo": "B-1",
                    "serialNo": "SN-1",
                    "nicId": "NIC-1",
                    "headEndSystem": "ECOBEE",
                }
            ],
        },
    }
    if source is not None:
        er["enrollmentSource"] = source
    return er


def enrollment_message(
    *requests: dict[str, Any], drms_instance_id: str = "DRMS-1"
) -> dict[str, Any]:
    return {"drmsInstanceId": drms_instance_id, "enrollmentRequests": list(requests)}


def enrollment_sync_message(
    sync_request_id: str = "SR-1001", *, division: str = "NORTH"
) -> dict[str, Any]:
    """CPMCS's X1-NMSDASMSG."""
    return {
        "sendDetails": {
            "syncRequestId": sync_request_id,
            "contactInfo": {"contactId": "C-1", "cisPersonId": "1234567890"},
            "subscriptionInfo": {
                "subscriptionId": "SUB-1",
                "cisAccountId": "2345678901",
                "subscriptionType": "ENROLL",
                "status": "ACTIVE",
                "programId": "P-1",
                "startDateTime": "2026-12-01T00:00:00-05:00",
                "endDateTime": "2027-12-01T00:00:00-05:00",
                "programCode": "BYOT",
            },
            "locationInfo": {
                "division": division,
                "servicePointId": "SP-1",
                "cisPremiseId": "4567890123",
                "cisServicePointId": "5678901234",
                "controllableDevices": [
                    {
                        "deviceId": "DEV-1",
                        "deviceType": "THERMOSTAT",
                        "specification": "X1ECOBEE5",
                        "nicId": "NIC-1",
                        "headEndSystem": "ECOBEE",
                        "serialNo": "SN-1",
                        "badgeNo": "B-1",
                    }
                ],
            },
        }
    }
