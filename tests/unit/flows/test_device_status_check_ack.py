"""Flow 5's steps with fake connectors: the mapping, boStatus in the reply, errors, the limit."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from derms_bridge.errors import BusinessError, TechnicalFault
from derms_bridge.flows import device_status_check_ack as flow
from derms_bridge.schemas.device_status_check_ack import (
    DeviceStatusCheckAckMessage,
    PostControllableDeviceStatusRequest,
)
from tests.fakes import fakes


def status_payload(
    dacs_message_id: str = "COMM-1", response_code: str = "SUCCESS"
) -> dict[str, Any]:
    return {
        "dacsMessageId": dacs_message_id,
        "responseCode": response_code,
        "message": "device answered",
    }


def status(
    dacs_message_id: str = "COMM-1", response_code: str = "SUCCESS"
) -> DeviceStatusCheckAckMessage:
    return DeviceStatusCheckAckMessage.model_validate(
        status_payload(dacs_message_id, response_code)
    )


@pytest.mark.parametrize("response_code", ["SUCCESS", "FAILURE"])
def test_the_status_reaches_cpmcs_as_transaction_id_and_result(response_code: str) -> None:
    body = flow.to_device_status(status("COMM-9", response_code))

    assert body.model_dump(mode="json", exclude_none=True) == {
        "responseDetail": {"transactionID": "COMM-9", "result": {"status": response_code}}
    }


def test_the_business_key_is_the_communication_id() -> None:
    assert flow.business_keys(status("COMM-7")) == [("communicationId", "COMM-7")]


class TestLimits:
    def test_a_transaction_id_over_30_characters_is_refused(self) -> None:
        with pytest.raises(ValidationError) as refused:
            DeviceStatusCheckAckMessage.model_validate(status_payload("C" * 31))

        [error] = refused.value.errors()
        assert error["loc"] == ("dacsMessageId",)

    def test_30_characters_are_taken(self) -> None:
        assert flow.to_device_status(status("C" * 30)).responseDetail.transactionID == "C" * 30

    @pytest.mark.parametrize("response_code", ["ERROR", "success", ""])
    def test_a_response_code_other_than_success_or_failure_is_refused(
        self, response_code: str
    ) -> None:
        with pytest.raises(ValidationError) as refused:
            DeviceStatusCheckAckMessage.model_validate(status_payload(response_code=response_code))

        assert refused.value.errors()[0]["loc"] == ("responseCode",)


async def test_derms_gets_cpmcs_bo_status_in_response_code_with_a_success_ack() -> None:
    made = fakes(cpmcs={"postControllableDeviceStatus": {"boStatus": "X1CO"}})

    result = await flow.run(status("COMM-1"), made.context)

    [sent] = made.cpmcs.sent
    assert sent.operation == "postControllableDeviceStatus"
    assert isinstance(sent.body, PostControllableDeviceStatusRequest)
    assert sent.body.responseDetail.transactionID == "COMM-1"
    assert result.status == "succeeded"
    assert result.reply is not None
    assert result.reply.MsgAck.ackType == "SUCCESS"
    [response] = result.reply.MsgAck.responses.response
    assert (response.id, response.value, response.responseCode, response.dacsMessageId) == (
        "COMM-1",
        "X1CO",
        "X1CO",
        "COMM-1",
    )
    assert made.errors.reported == []


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            BusinessError("unknown transaction", status="ERROR", message_number=10030),
            "CPMCS refused postControllableDeviceStatus: ERROR 10030: unknown transaction",
        ),
        (
            TechnicalFault("CPMCS answered HTTP 500 to postControllableDeviceStatus"),
            "CPMCS answered HTTP 500 to postControllableDeviceStatus",
        ),
        (
            TechnicalFault("CPMCS did not answer postControllableDeviceStatus within 3 s"),
            "CPMCS did not answer postControllableDeviceStatus within 3 s",
        ),
    ],
)
async def test_any_cpmcs_error_is_a_failure_ack_and_an_email(
    error: Exception, expected: str
) -> None:
    made = fakes(cpmcs={"postControllableDeviceStatus": error})

    result = await flow.run(status("COMM-2"), made.context)

    assert result.status == "failed"
    assert result.error == expected
    assert result.reply is not None
    assert result.reply.MsgAck.ackType == "FAILURE"
    [response] = result.reply.MsgAck.responses.response
    assert (response.id, response.value, response.responseCode, response.dacsMessageId) == (
        "COMM-2",
        expected,
        "FAILURE",
        "COMM-2",
    )
    assert made.errors.reported == [expected]


def test_crash_reply_is_a_failure_for_the_message() -> None:
    reply = flow.crash_reply(status("COMM-3"), "the flow stopped: boom")

    assert reply.MsgAck.ackType == "FAILURE"
    [response] = reply.MsgAck.responses.response
    assert (response.id, response.value, response.responseCode) == (
        "COMM-3",
        "the flow stopped: boom",
        "FAILURE",
    )
