"""Flow 6's steps with fake connectors: both mappings, the lookups, the replies and the emails."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from derms_bridge.errors import BusinessError, LookupMiss, TechnicalFault
from derms_bridge.flows import program_event_status_update as flow
from derms_bridge.schemas.common import AckMessage
from derms_bridge.schemas.program_event_status import (
    ActionProgramEventRequest,
    CreateProgramEventRequest,
    StageStatusMessage,
)
from tests.fakes import LOOKUPS, Script, fakes

#: CPMCS answers both operations with an empty object, as the simulator does.
CPMCS_ACCEPTS: Script = {"createProgramEvent": {}, "actionProgramEvent": {}}


def stage(status: str = "SCHEDULED", **changes: Any) -> StageStatusMessage:
    body: dict[str, Any] = {
        "messageId": "M-1",
        "eventId": "E-1",
        "stageId": "S-1",
        "programId": "BYOT",
        "eventType": "ECONOMIC",
        "stageStatus": status,
        "startDateTimeISO": "2026-12-01T14:00:00.000Z",
        "endDateTimeISO": "2026-12-01T18:00:00.000Z",
    }
    body.update(changes)
    return StageStatusMessage.model_validate({k: v for k, v in body.items() if v is not None})


def only_response(reply: AckMessage | None) -> tuple[str, str, str]:
    assert reply is not None
    [response] = reply.MsgAck.responses.response
    return reply.MsgAck.ackType, response.id, response.value


class TestMapping:
    def test_scheduled_becomes_create_program_event(self) -> None:
        body = flow.to_create_program_event(stage(eventType="EMERGENCY"), LOOKUPS)

        assert body == CreateProgramEventRequest(
            eventExternalIdentifier="E-1",
            externalIdentifier="S-1",
            programExternalIdentifier="BYOT",
            programEventCategory="X1EM",
            startDateTime="2026-12-01T14:00:00Z",
            endDateTime="2026-12-01T18:00:00Z",
        )

    @pytest.mark.parametrize(
        ("status", "action"),
        [("IN_PROGRESS", "X1IP"), ("ACTIVE", "X1IP"), ("COMPLETED", "F1CO"), ("CANCELLED", "F1CN")],
    )
    def test_every_other_status_becomes_its_action(self, status: str, action: str) -> None:
        body = flow.to_action_program_event(stage(status, cancelReason="grid recovered"), LOOKUPS)

        assert body == ActionProgramEventRequest(
            action=action,
            eventExternalIdentifier="E-1",
            externalIdentifier="S-1",
            cancelReason="grid recovered",
        )

    def test_an_action_without_cancel_reason_sends_none(self) -> None:
        body = flow.to_action_program_event(stage("COMPLETED"), LOOKUPS)

        assert "cancelReason" not in body.model_dump(exclude_none=True)

    def test_an_unknown_status_names_the_lookup_and_the_value(self) -> None:
        with pytest.raises(LookupMiss) as miss:
            flow.to_action_program_event(stage("PAUSED"), LOOKUPS)

        assert miss.value.lookup == "OUTL-BRT-DACS_DRMS_StageStatus"
        assert "'PAUSED'" in str(miss.value)

    def test_an_unknown_event_type_names_the_lookup_and_the_value(self) -> None:
        with pytest.raises(LookupMiss) as miss:
            flow.to_create_program_event(stage(eventType="VOLCANO"), LOOKUPS)

        assert miss.value.lookup == "OUTL-BRT-DACS_DRMS_EventType"
        assert "'VOLCANO'" in str(miss.value)

    def test_business_keys(self) -> None:
        assert flow.business_keys(stage()) == [
            ("messageId", "M-1"),
            ("eventId", "E-1"),
            ("stageId", "S-1"),
        ]


class TestMessage:
    @pytest.mark.parametrize(
        ("field", "limit"),
        [("eventId", 120), ("stageId", 120), ("programId", 120), ("cancelReason", 254)],
    )
    def test_cpmcs_limits(self, field: str, limit: int) -> None:
        stage("CANCELLED", **{field: "x" * limit})
        with pytest.raises(ValidationError) as refused:
            stage("CANCELLED", **{field: "x" * (limit + 1)})

        [error] = refused.value.errors()
        assert error["loc"] == (field,)

    def test_a_scheduled_stage_needs_what_create_needs(self) -> None:
        with pytest.raises(ValidationError, match="programId, eventType"):
            stage(programId=None, eventType=None)

    def test_an_action_needs_only_event_and_stage(self) -> None:
        message = stage("COMPLETED", programId=None, eventType=None, startDateTimeISO=None)

        assert message.programId is None
        assert not message.is_scheduled

    def test_date_times_must_be_iso_with_an_offset(self) -> None:
        with pytest.raises(ValidationError, match="no time zone offset"):
            stage(startDateTimeISO="2026-12-01T14:00:00")


class TestRun:
    async def test_scheduled_creates_the_event_and_answers_created(self) -> None:
        made = fakes(CPMCS_ACCEPTS)

        result = await flow.run(stage(), made.context)

        assert result.status == "succeeded"
        assert only_response(result.reply) == ("SUCCESS", "M-1", "CREATED")
        [sent] = made.cpmcs.sent
        assert sent.operation == "createProgramEvent"
        assert isinstance(sent.body, CreateProgramEventRequest)
        assert sent.body.programEventCategory == "X1EC"
        assert made.errors.reported == []

    async def test_another_status_sends_the_action_and_answers_it(self) -> None:
        made = fakes(CPMCS_ACCEPTS)

        result = await flow.run(stage("CANCELLED", cancelReason="no longer needed"), made.context)

        assert only_response(result.reply) == ("SUCCESS", "M-1", "F1CN")
        [sent] = made.cpmcs.sent
        assert sent.operation == "actionProgramEvent"
        assert isinstance(sent.body, ActionProgramEventRequest)
        assert (sent.body.action, sent.body.cancelReason) == ("F1CN", "no longer needed")

    async def test_a_business_error_is_error_and_emailed(self) -> None:
        refused = BusinessError(
            "Program BYOT is not defined", status="VAL-ERROR", message_number=10010
        )
        made = fakes({"createProgramEvent": refused})

        result = await flow.run(stage(), made.context)

        reason = "CPMCS refused createProgramEvent: VAL-ERROR 10010: Program BYOT is not defined"
        assert result.status == "failed"
        assert result.error == reason
        assert only_response(result.reply) == ("ERROR", "M-1", reason)
        assert made.errors.reported == [reason]

    async def test_a_program_event_cpmcs_holds_already_is_created(self) -> None:
        exists = BusinessError(
            "Program event E-1/S-1 already exists", status="ERROR", message_number=10020
        )
        made = fakes({"createProgramEvent": exists})

        result = await flow.run(stage(), made.context)

        assert result.status == "succeeded"
        assert only_response(result.reply) == (
            "SUCCESS",
            "M-1",
            "Program event E-1/S-1 already exists",
        )
        assert made.errors.reported == []

    async def test_already_exists_of_an_action_is_still_an_error(self) -> None:
        # Only a create is done when its event exists; an action CPMCS refuses is not.
        refused = BusinessError("Program event E-1/S-1 already exists", message_number=10020)
        made = fakes({"actionProgramEvent": refused})

        result = await flow.run(stage("COMPLETED"), made.context)

        assert result.status == "failed"
        assert only_response(result.reply)[0] == "ERROR"

    async def test_an_action_to_the_status_cpmcs_holds_already_is_done(self) -> None:
        already = BusinessError("Program event E-1/S-1 is F1CO already", message_number=10023)
        made = fakes({"actionProgramEvent": already})

        result = await flow.run(stage("COMPLETED"), made.context)

        assert result.status == "succeeded"
        assert only_response(result.reply) == (
            "SUCCESS",
            "M-1",
            "Program event E-1/S-1 is F1CO already",
        )
        assert made.errors.reported == []

    async def test_an_action_the_status_does_not_allow_is_an_error(self) -> None:
        refused = BusinessError(
            "Program event E-1/S-1 is F1CN: it cannot move to X1IP", message_number=10022
        )
        made = fakes({"actionProgramEvent": refused})

        result = await flow.run(stage("IN_PROGRESS"), made.context)

        reason = (
            "CPMCS refused actionProgramEvent: ERROR 10022: "
            "Program event E-1/S-1 is F1CN: it cannot move to X1IP"
        )
        assert result.status == "failed"
        assert only_response(result.reply) == ("ERROR", "M-1", reason)
        assert made.errors.reported == [reason]

    def test_create_sends_the_times_written_as_cpmcs_takes_them(self) -> None:
        basic = stage(
            startDateTimeISO="20261201T140000Z", endDateTimeISO="2026-W49-2T18:00:00+01:00"
        )

        body = flow.to_create_program_event(basic, LOOKUPS)

        assert (body.startDateTime, body.endDateTime) == (
            "2026-12-01T14:00:00Z",
            "2026-12-01T18:00:00+01:00",
        )

    def test_an_offset_cpmcs_cannot_take_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="CPMCS takes whole minutes"):
            stage(endDateTimeISO="2026-12-01T18:00:00+01:00:30")

    @pytest.mark.parametrize(
        "fault",
        [
            TechnicalFault("CPMCS answered HTTP 500 to actionProgramEvent", http_status=500),
            TechnicalFault("CPMCS did not answer actionProgramEvent within 3 s", timed_out=True),
        ],
    )
    async def test_a_technical_fault_is_failure_and_emailed(self, fault: TechnicalFault) -> None:
        made = fakes({"actionProgramEvent": fault})

        result = await flow.run(stage("IN_PROGRESS"), made.context)

        assert result.status == "failed"
        assert only_response(result.reply) == ("FAILURE", "M-1", str(fault))
        assert made.errors.reported == [str(fault)]

    @pytest.mark.parametrize(
        ("message", "lookup"),
        [
            (stage("PAUSED"), "OUTL-BRT-DACS_DRMS_StageStatus"),
            (stage(eventType="VOLCANO"), "OUTL-BRT-DACS_DRMS_EventType"),
        ],
    )
    async def test_a_lookup_miss_is_failure_emailed_and_nothing_is_sent(
        self, message: StageStatusMessage, lookup: str
    ) -> None:
        made = fakes(CPMCS_ACCEPTS)

        result = await flow.run(message, made.context)

        code, _, value = only_response(result.reply)
        assert code == "FAILURE"
        assert lookup in value
        assert made.cpmcs.sent == []
        assert made.errors.reported == [value]

    def test_a_crash_is_answered_failure(self) -> None:
        assert only_response(flow.crash_reply(stage(), "the flow stopped: boom")) == (
            "FAILURE",
            "M-1",
            "the flow stopped: boom",
        )
