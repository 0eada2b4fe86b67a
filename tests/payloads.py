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
    account: str | None = None,
    nic_id: str | None = None,
    start: str = "2026-12-01T08:00:00.000-05:00",
) -> dict[str, Any]:
    """One enrollment; its account and device are its own unless given (records that share
    one go to CPMCS one after the other)."""
    er: dict[str, Any] = {
        "messageId": message_id,
        "customerInfo": {
            "cisPersonId": "1234567890",
            "cisAccountId": account or f"ACCT-{message_id}",
            "name": "Ada Lovelace",
            "homePhone": "555-0100",
            "email": "ada@example.com",
        },
        "programInfo": {
            "cisServiceAgreementId": "3456789012",
            "programCode": program,
            "startDateTimeISO": start,
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
                    "assetId": f"T-{message_id}",
                    "specification": specification,
                    "assetType": asset_type,
                    "badgeNo": "B-1",
                    "serialNo": "SN-1",
                    "nicId": nic_id or f"NIC-{message_id}",
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


def device_status_check_message(
    communication_id: str = "COMM-1001", *, division: str = "NORTH"
) -> dict[str, Any]:
    """CPMCS's X1-CTRLDVCS (note the reference's lower-case `nicid`)."""
    return {
        "sendDetails": {
            "communicationId": communication_id,
            "deviceInfo": {
                "division": division,
                "deviceType": "THERMOSTAT",
                "specification": "X1ECOBEE5",
                "headEndSystem": "ECOBEE",
                "nicid": "NIC-1",
            },
        }
    }


def opt_out_device_info(division: str = "NORTH") -> dict[str, Any]:
    """The deviceInfo of CPMCS's X1-EPOPTOMSG and X1-CUSTUNAVL."""
    return {"division": division, "deviceId": "DEV-1", "nicId": "NIC-1", "headEndSystem": "ECOBEE"}


def event_opt_out_message(
    message_id: str = "OPT-1001", *, event_id: str = "EV-1", division: str = "NORTH"
) -> dict[str, Any]:
    """CPMCS's X1-EPOPTOMSG."""
    return {
        "sendDetails": {
            "messageId": message_id,
            "eventExternalIdentifier": event_id,
            "deviceInfo": opt_out_device_info(division),
        }
    }


def customer_unavailability_message(
    message_id: str = "UNAV-1001",
    *,
    action: str = "ADD",
    unavailability_id: str = "UA-1",
    division: str = "NORTH",
) -> dict[str, Any]:
    """CPMCS's X1-CUSTUNAVL."""
    return {
        "sendDetails": {
            "messageId": message_id,
            "action": action,
            "unavailabilityId": unavailability_id,
            "startDateTime": "2026-12-05T13:00:00-05:00",
            "endDateTime": "2026-12-05T19:00:00-05:00",
            "deviceInfo": opt_out_device_info(division),
        }
    }


def program_rule(
    rule_id: str = "R-1",
    *,
    cycle_frequency: str = "X1WK",
    week_days: tuple[str, ...] = ("X1MO", "X1TU", "X1WE", "X1TH", "X1FR"),
    allow_event_days: str = "X1WD",
    max_event_hours: float = 4,
) -> dict[str, Any]:
    """One rule of CPMCS's X1-GEDPGRMSG, in CPMCS's codes."""
    return {
        "ruleId": rule_id,
        "cycleFrequency": cycle_frequency,
        "maxEvents": 10,
        "maxEventHours": max_event_hours,
        "weekDays": list(week_days),
        "allowEventDays": allow_event_days,
    }


def program_rule_sync_message(
    sync_request_id: str = "SRP-1001",
    *rules: dict[str, Any],
    program_code: str = "BYOT",
    division: str = "NORTH",
) -> dict[str, Any]:
    """CPMCS's X1-GEDPGRMSG; one weekday rule unless rules are given."""
    return {
        "sendDetails": {
            "syncRequestId": sync_request_id,
            "program": {
                "programCode": program_code,
                "description": "Bring your own thermostat",
                "division": division,
                "rules": list(rules) or [program_rule()],
            },
        }
    }


def aggregator_sync_message(
    sync_request_id: str = "SRA-1001", *, aggregator_id: str = "AGG-1", division: str = "NORTH"
) -> dict[str, Any]:
    """CPMCS's X1-GEDAGRMSG."""
    return {
        "sendDetails": {
            "syncRequestId": sync_request_id,
            "aggregator": {
                "aggregatorId": aggregator_id,
                "name": "Sunny Aggregation LLC",
                "status": "ACTIVE",
                "division": division,
                "contacts": [
                    {"contactId": "C-9", "name": "Grace Hopper", "email": "grace@example.com"}
                ],
            },
        }
    }
