"""Flow 3's steps with fake connectors: the mapping, the lookup, the hasError rule, the limits."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from derms_bridge.errors import BusinessError, LookupMiss, TechnicalFault
from derms_bridge.flows import enroll_headend_status_ack as flow
from derms_bridge.schemas.enroll_headend_status_ack import (
    EnrollHeadendStatusAckMessage,
    PostAcknowledgementRequest,
)
from tests.fakes import LOOKUPS, fakes


def ack_payload(
    dacs_message_id: str = "SR-1",
    *,
    ack_type: str = "SUCCESS",
    devices: list[dict[str, Any]] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "dacsMessageId": dacs_message_id,
        "ackType": ack_type,
        "whenISO": "2026-11-26T12:00:00.000Z",
        "devices": devices
        if devices is not None
        else [
            {"deviceId": "DEV-1", "headEndStatus": "REGISTERED", "message": "registered"},
            {"deviceId": "DEV-2", "headEndStatus": "NOT_REGISTERED", "message": "no answer"},
        ],
        "errors": errors if errors is not None else [],
    }


def ack(dacs_message_id: str = "SR-1", **changes: Any) -> EnrollHeadendStatusAckMessage:
    return EnrollHeadendStatusAckMessage.model_validate(ack_payload(dacs_message_id, **changes))


class TestMapping:
    def test_every_field_reaches_its_cpmcs_name(self) -> None:
        message = ack(
            "SR-9",
            ack_type="ERROR",
            errors=[{"messageNumber": 42, "message": "device DEV-2 did not register"}],
        )

        body = flow.to_post_acknowledgement(message, LOOKUPS)

        assert body.model_dump(mode="json", exclude_none=True) == {
            "syncRequestId": "SR-9",
            "hasError": True,
            "deviceHeadendStatus": [
                {"deviceId": "DEV-1", "headEndRegistration": "D1RE", "message": "registered"},
                {"deviceId": "DEV-2", "headEndRegistration": "D1NR", "message": "no answer"},
            ],
            "exceptionInfo": [
                {
                    "messageCategory": 11101,
                    "messageNumber": 42,
                    "comments": "device DEV-2 did not register",
                }
            ],
        }

    @pytest.mark.parametrize(
        ("status", "registration"),
        [("REGISTERED", "D1RE"), ("NOT_REGISTERED", "D1NR"), ("DEREGISTERED", "D1DR")],
    )
    def test_head_end_status_goes_through_the_lookup(self, status: str, registration: str) -> None:
        message = ack(devices=[{"deviceId": "D", "headEndStatus": status}])

        [device] = flow.to_post_acknowledgement(message, LOOKUPS).deviceHeadendStatus

        assert device.headEndRegistration == registration
        assert device.message is None

    @pytest.mark.parametrize(
        ("ack_type", "has_error"), [("SUCCESS", False), ("ERROR", True), ("FAILURE", True)]
    )
    def test_has_error_unless_derms_says_success(self, ack_type: str, has_error: bool) -> None:
        assert flow.to_post_acknowledgement(ack(ack_type=ack_type), LOOKUPS).hasError is has_error

    def test_an_ack_without_devices_or_errors_sends_empty_lists(self) -> None:
        body = flow.to_post_acknowledgement(ack(devices=[], errors=[]), LOOKUPS)

        assert (body.deviceHeadendStatus, body.exceptionInfo) == ([], [])

    def test_an_unknown_head_end_status_names_the_lookup_and_value(self) -> None:
        message = ack(devices=[{"deviceId": "D", "headEndStatus": "LOST_IN_SPACE"}])

        with pytest.raises(LookupMiss) as miss:
            flow.to_post_acknowledgement(message, LOOKUPS)

        assert miss.value.lookup == "OUTL-BRT-DACS_DRMS_DeviceHeadendStatus"
        assert miss.value.value == "LOST_IN_SPACE"


def test_business_keys_are_the_sync_request_id_and_every_device() -> None:
    assert flow.business_keys(ack("SR-7")) == [
        ("syncRequestId", "SR-7"),
        ("deviceId", "DEV-1"),
        ("deviceId", "DEV-2"),
    ]


class TestLimits:
    """CPMCS's limits, refused at the trigger: the inbound model names DERMS's field."""

    @pytest.mark.parametrize(
        ("changes", "field"),
        [
            ({"dacsMessageId": "S" * 15}, ("dacsMessageId",)),
            ({"dacsMessageId": ""}, ("dacsMessageId",)),
            ({"ackType": "MAYBE"}, ("ackType",)),
            (
                {"devices": [{"deviceId": "D" * 13, "headEndStatus": "REGISTERED"}]},
                ("devices", 0, "deviceId"),
            ),
            (
                {
                    "devices": [
                        {"deviceId": "D", "headEndStatus": "REGISTERED", "message": "m" * 2001}
                    ]
                },
                ("devices", 0, "message"),
            ),
            ({"errors": [{"messageNumber": 1, "message": "c" * 255}]}, ("errors", 0, "message")),
            ({"errors": [{"messageNumber": 100000}]}, ("errors", 0, "messageNumber")),
            ({"errors": [{"messageNumber": -100000}]}, ("errors", 0, "messageNumber")),
        ],
    )
    def test_over_a_limit_is_refused_naming_the_field(
        self, changes: dict[str, Any], field: tuple[str | int, ...]
    ) -> None:
        payload = {**ack_payload(), **changes}

        with pytest.raises(ValidationError) as refused:
            EnrollHeadendStatusAckMessage.model_validate(payload)

        [error] = refused.value.errors()
        assert error["loc"] == field

    def test_values_at_each_limit_are_taken(self) -> None:
        message = EnrollHeadendStatusAckMessage.model_validate(
            ack_payload(
                "S" * 14,
                ack_type="FAILURE",
                devices=[
                    {"deviceId": "D" * 12, "headEndStatus": "REGISTERED", "message": "m" * 2000}
                ],
                errors=[
                    {"messageNumber": 99999, "message": "c" * 254},
                    {"messageNumber": -99999},
                ],
            )
        )

        body = flow.to_post_acknowledgement(message, LOOKUPS)

        assert PostAcknowledgementRequest.model_validate(body.model_dump()) == body
        assert [e.messageNumber for e in body.exceptionInfo] == [99999, -99999]


async def test_cpmcs_gets_the_acknowledgement_and_derms_a_success() -> None:
    made = fakes(cpmcs={"postAcknowledgement": {}})

    result = await flow.run(ack("SR-1"), made.context)

    [sent] = made.cpmcs.sent
    assert sent.operation == "postAcknowledgement"
    assert isinstance(sent.body, PostAcknowledgementRequest)
    assert sent.body.syncRequestId == "SR-1"
    assert result.status == "succeeded"
    assert result.reply is not None
    assert result.reply.MsgAck.ackType == "SUCCESS"
    [response] = result.reply.MsgAck.responses.response
    assert (response.id, response.value, response.responseCode, response.dacsMessageId) == (
        "SR-1",
        "ACKNOWLEDGED",
        "SUCCESS",
        "SR-1",
    )
    assert made.errors.reported == []


async def test_a_business_error_is_an_error_ack_and_an_email() -> None:
    refusal = BusinessError(
        "syncRequestId is required", status="VAL-ERROR", message_number=10001, http_status=400
    )
    made = fakes(cpmcs={"postAcknowledgement": refusal})

    result = await flow.run(ack("SR-2"), made.context)

    expected = "CPMCS refused postAcknowledgement: VAL-ERROR 10001: syncRequestId is required"
    assert result.status == "failed"
    assert result.error == expected
    assert result.reply is not None
    assert result.reply.MsgAck.ackType == "ERROR"
    [response] = result.reply.MsgAck.responses.response
    assert (response.responseCode, response.value) == ("ERROR", expected)
    assert made.errors.reported == [expected]


async def test_a_technical_fault_is_a_failure_ack_and_an_email() -> None:
    fault = TechnicalFault("CPMCS answered HTTP 500 to postAcknowledgement", http_status=500)
    made = fakes(cpmcs={"postAcknowledgement": fault})

    result = await flow.run(ack("SR-3"), made.context)

    assert result.status == "failed"
    assert result.reply is not None
    assert result.reply.MsgAck.ackType == "FAILURE"
    assert result.reply.MsgAck.responses.response[0].value == str(fault)
    assert made.errors.reported == [str(fault)]


async def test_a_lookup_miss_sends_nothing_and_is_a_failure_ack_and_an_email() -> None:
    made = fakes(cpmcs={"postAcknowledgement": {}})
    message = ack(
        devices=[
            {"deviceId": "DEV-1", "headEndStatus": "REGISTERED"},
            {"deviceId": "DEV-2", "headEndStatus": "LOST_IN_SPACE"},
        ]
    )

    result = await flow.run(message, made.context)

    assert made.cpmcs.sent == []
    assert result.status == "failed"
    assert result.reply is not None
    assert result.reply.MsgAck.ackType == "FAILURE"
    value = result.reply.MsgAck.responses.response[0].value
    assert "OUTL-BRT-DACS_DRMS_DeviceHeadendStatus" in value
    assert "LOST_IN_SPACE" in value
    assert made.errors.reported == [value]


def test_crash_reply_is_a_failure_for_the_message() -> None:
    reply = flow.crash_reply(ack("SR-4"), "the flow stopped: boom")

    assert reply.MsgAck.ackType == "FAILURE"
    [response] = reply.MsgAck.responses.response
    assert (response.id, response.value, response.responseCode) == (
        "SR-4",
        "the flow stopped: boom",
        "FAILURE",
    )
