"""Flow 10's steps with a fake DERMS: only an ADD goes on, as an opt-out of type UNAVAILABILITY."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from derms_bridge.flows import customer_unavailability
from derms_bridge.schemas.common import AckMessage, AckResponse, CpmcsReply, ResponseDetails
from derms_bridge.schemas.opt_out import CustomerUnavailabilityMessage
from tests.fakes import fakes
from tests.payloads import customer_unavailability_message

SUCCESS = AckMessage.of([AckResponse(id="UNAV-1", value="ACCEPTED", responseCode="SUCCESS")])
REFUSED = AckMessage.of([AckResponse(id="UNAV-1", value="overlaps UA-0", responseCode="ERROR")])


def message(message_id: str = "UNAV-1", **changes: str) -> CustomerUnavailabilityMessage:
    return CustomerUnavailabilityMessage.model_validate(
        customer_unavailability_message(message_id, **changes)
    )


def test_derms_gets_the_period_and_the_device_and_no_event() -> None:
    body = customer_unavailability.to_derms_opt_out(message("UNAV-1"))

    assert body.model_dump(mode="json", exclude_none=True) == {
        "dacsMessageId": "UNAV-1",
        "optOutType": "UNAVAILABILITY",
        "startDateTimeISO": "2026-12-05T13:00:00-05:00",
        "endDateTimeISO": "2026-12-05T19:00:00-05:00",
        "device": {"deviceId": "DEV-1", "nicId": "NIC-1", "headEndSystem": "ECOBEE"},
    }


async def test_an_add_goes_to_derms_and_success_replies_with_the_message_id() -> None:
    made = fakes(derms={"optOut": SUCCESS.model_dump(mode="json")})

    result = await customer_unavailability.run(message("UNAV-2", division="SOUTH"), made.context)

    assert result.status == "succeeded"
    assert result.reply == CpmcsReply(responseDetails=ResponseDetails(externalId="UNAV-2"))
    [sent] = made.derms.sent
    assert (sent.operation, sent.division) == ("optOut", "SOUTH")


async def test_an_add_derms_refuses_is_a_fault_and_an_email() -> None:
    made = fakes(derms={"optOut": REFUSED.model_dump(mode="json")})

    result = await customer_unavailability.run(message("UNAV-3"), made.context)

    assert (result.reply, result.status) == (None, "failed")
    assert made.errors.reported == ["DERMS answered optOut with ackType ERROR: overlaps UA-0"]


@pytest.mark.parametrize("action", ["UPDATE", "DELETE"])
async def test_any_other_action_is_answered_and_skipped_with_nothing_sent(action: str) -> None:
    made = fakes()

    result = await customer_unavailability.run(message("UNAV-4", action=action), made.context)

    assert result.status == "skipped"
    assert result.reply == CpmcsReply(responseDetails=ResponseDetails(externalId="UNAV-4"))
    assert result.error is None
    assert result.skipped_reason is not None
    assert action in result.skipped_reason
    assert made.derms.sent == []
    assert made.errors.reported == []


def without_period(action: str) -> dict[str, Any]:
    payload = customer_unavailability_message("UNAV-5", action=action)
    del payload["sendDetails"]["startDateTime"]
    return payload


def test_an_add_without_its_period_is_refused() -> None:
    with pytest.raises(ValidationError, match="an ADD needs startDateTime"):
        CustomerUnavailabilityMessage.model_validate(without_period("ADD"))


def test_a_delete_may_come_without_its_period() -> None:
    assert CustomerUnavailabilityMessage.model_validate(without_period("DELETE"))


def test_a_period_that_is_not_iso_8601_is_refused() -> None:
    payload = customer_unavailability_message("UNAV-6")
    payload["sendDetails"]["endDateTime"] = "12/05/2026 19:00"

    with pytest.raises(ValidationError, match="not an ISO 8601 date-time"):
        CustomerUnavailabilityMessage.model_validate(payload)


def test_an_unknown_action_is_refused() -> None:
    with pytest.raises(ValidationError, match="action"):
        CustomerUnavailabilityMessage.model_validate(
            customer_unavailability_message("UNAV-7", action="MERGE")
        )


def test_found_by_message_unavailability_and_device() -> None:
    assert customer_unavailability.business_keys(message("UNAV-8")) == [
        ("messageId", "UNAV-8"),
        ("unavailabilityId", "UA-1"),
        ("deviceId", "DEV-1"),
    ]
