"""Flow 4's steps with a fake DERMS: the mapping, the routing and how its answer is sorted."""

from __future__ import annotations

from derms_bridge.errors import BusinessError, TechnicalFault
from derms_bridge.flows import device_status_check
from derms_bridge.schemas.common import AckMessage, AckResponse, CpmcsReply, ResponseDetails
from derms_bridge.schemas.device_status_check import DeviceStatusCheckMessage
from tests.fakes import fakes
from tests.payloads import device_status_check_message


def message(communication_id: str = "COMM-1", division: str = "NORTH") -> DeviceStatusCheckMessage:
    return DeviceStatusCheckMessage.model_validate(
        device_status_check_message(communication_id, division=division)
    )


def test_derms_gets_the_communication_id_and_the_device_info_as_it_came() -> None:
    body = device_status_check.to_derms_status_check(message("COMM-1"))

    assert body.model_dump(mode="json", exclude_none=True) == {
        "dacsMessageId": "COMM-1",
        "DeviceInfo": {
            "division": "NORTH",
            "deviceType": "THERMOSTAT",
            "specification": "X1ECOBEE5",
            "headEndSystem": "ECOBEE",
            "nicid": "NIC-1",
        },
    }


async def test_a_200_replies_with_the_communication_id_routed_by_division() -> None:
    made = fakes(derms={"statusCheck": {"accepted": True}})

    result = await device_status_check.run(message("COMM-2", division="SOUTH"), made.context)

    assert result.status == "succeeded"
    assert result.reply == CpmcsReply(responseDetails=ResponseDetails(externalId="COMM-2"))
    [sent] = made.derms.sent
    assert (sent.operation, sent.division) == ("statusCheck", "SOUTH")
    assert made.errors.reported == []


async def test_a_200_whatever_its_ack_type_finishes_the_request() -> None:
    # The reference reads only DERMS's status here, unlike flows 9 and 10.
    refused = AckMessage.of([AckResponse(id="COMM-3", value="REJECTED", responseCode="ERROR")])
    made = fakes(derms={"statusCheck": refused.model_dump(mode="json")})

    result = await device_status_check.run(message("COMM-3"), made.context)

    assert result.status == "succeeded"


async def test_an_error_status_is_a_fault_and_an_email() -> None:
    fault = TechnicalFault("DERMS default answered HTTP 500 to statusCheck", http_status=500)
    made = fakes(derms={"statusCheck": fault})

    result = await device_status_check.run(message("COMM-4"), made.context)

    assert (result.reply, result.status, result.timed_out) == (None, "failed", False)
    assert result.error == str(fault)
    assert made.errors.reported == [str(fault)]


async def test_a_business_refusal_is_a_fault_too() -> None:
    made = fakes(derms={"statusCheck": BusinessError("unknown device")})

    result = await device_status_check.run(message("COMM-5"), made.context)

    assert (result.reply, result.status) == (None, "failed")
    assert made.errors.reported == ["DERMS refused statusCheck: ERROR: unknown device"]


async def test_a_timeout_is_marked_so_that_cpmcs_gets_a_504() -> None:
    fault = TechnicalFault("DERMS default did not answer statusCheck within 3 s", timed_out=True)
    made = fakes(derms={"statusCheck": fault})

    result = await device_status_check.run(message("COMM-6"), made.context)

    assert (result.reply, result.timed_out) == (None, True)
    assert made.errors.reported == [str(fault)]


def test_found_by_its_communication_id() -> None:
    assert device_status_check.business_keys(message("COMM-7")) == [("communicationId", "COMM-7")]
