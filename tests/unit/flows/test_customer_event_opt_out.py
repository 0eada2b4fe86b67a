"""Flow 9's steps with a fake DERMS: the mapping, and how DERMS's MsgAck is sorted."""

from __future__ import annotations

from derms_bridge.errors import TechnicalFault
from derms_bridge.flows import customer_event_opt_out
from derms_bridge.schemas.common import (
    AckCode,
    AckMessage,
    AckResponse,
    CpmcsReply,
    ResponseDetails,
)
from derms_bridge.schemas.opt_out import EventOptOutMessage
from tests.fakes import fakes
from tests.payloads import event_opt_out_message


def message(message_id: str = "OPT-1", division: str = "NORTH") -> EventOptOutMessage:
    return EventOptOutMessage.model_validate(
        event_opt_out_message(message_id, event_id="EV-9", division=division)
    )


def ack(ack_type: AckCode, value: str = "ACCEPTED") -> dict[str, object]:
    response = AckResponse(id="OPT-1", value=value, responseCode=ack_type)
    return AckMessage.of([response], ack_type).model_dump(mode="json")


def test_derms_gets_an_event_opt_out_of_the_device() -> None:
    body = customer_event_opt_out.to_derms_opt_out(message("OPT-1"))

    assert body.model_dump(mode="json", exclude_none=True) == {
        "dacsMessageId": "OPT-1",
        "optOutType": "EVENT",
        "eventId": "EV-9",
        "device": {"deviceId": "DEV-1", "nicId": "NIC-1", "headEndSystem": "ECOBEE"},
    }


async def test_ack_type_success_replies_with_the_message_id_routed_by_division() -> None:
    made = fakes(derms={"optOut": ack("SUCCESS")})

    result = await customer_event_opt_out.run(message("OPT-2", division="SOUTH"), made.context)

    assert result.status == "succeeded"
    assert result.reply == CpmcsReply(responseDetails=ResponseDetails(externalId="OPT-2"))
    [sent] = made.derms.sent
    assert (sent.operation, sent.division) == ("optOut", "SOUTH")
    assert made.errors.reported == []


async def test_another_ack_type_is_a_fault_naming_it_and_its_value() -> None:
    made = fakes(derms={"optOut": ack("ERROR", "event EV-9 is over")})

    result = await customer_event_opt_out.run(message("OPT-3"), made.context)

    assert (result.reply, result.status, result.timed_out) == (None, "failed", False)
    assert result.error == "DERMS answered optOut with ackType ERROR: event EV-9 is over"
    assert made.errors.reported == [result.error]


async def test_an_ack_without_responses_still_names_its_ack_type() -> None:
    empty = AckMessage.of([], "FAILURE").model_dump(mode="json")
    made = fakes(derms={"optOut": empty})

    result = await customer_event_opt_out.run(message("OPT-4"), made.context)

    assert result.error == "DERMS answered optOut with ackType FAILURE: no response"


async def test_an_error_status_is_a_fault_and_an_email() -> None:
    fault = TechnicalFault("DERMS default answered HTTP 400 to optOut", http_status=400)
    made = fakes(derms={"optOut": fault})

    result = await customer_event_opt_out.run(message("OPT-5"), made.context)

    assert (result.reply, result.status, result.timed_out) == (None, "failed", False)
    assert made.errors.reported == [str(fault)]


async def test_a_timeout_is_marked_so_that_cpmcs_gets_a_504() -> None:
    fault = TechnicalFault("DERMS default did not answer optOut within 3 s", timed_out=True)
    made = fakes(derms={"optOut": fault})

    result = await customer_event_opt_out.run(message("OPT-6"), made.context)

    assert (result.reply, result.timed_out) == (None, True)
    assert made.errors.reported == [str(fault)]


def test_found_by_message_event_and_device() -> None:
    assert customer_event_opt_out.business_keys(message("OPT-7")) == [
        ("messageId", "OPT-7"),
        ("eventId", "EV-9"),
        ("deviceId", "DEV-1"),
    ]
