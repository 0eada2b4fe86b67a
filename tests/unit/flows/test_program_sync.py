"""Flows 11-14 with fake connectors: the lookups, the hasError rule, the child acknowledgement."""

from __future__ import annotations

from typing import Any

import pytest

from derms_bridge.errors import BusinessError, LookupMiss, TechnicalFault
from derms_bridge.flows import aggregator_sync, program_rule_sync, sync_ack
from derms_bridge.flows.registry import SYNC_FLOWS
from derms_bridge.schemas.program_sync import (
    AggregatorSyncMessage,
    DermsSyncAnswer,
    ProgramRuleSyncMessage,
    SyncAckMessage,
    SyncRequestUpdate,
)
from tests.fakes import LOOKUPS, Fakes, fakes
from tests.payloads import aggregator_sync_message, program_rule, program_rule_sync_message


def derms_ack(ack_type: str = "SUCCESS", *values: str) -> dict[str, Any]:
    """DERMS's MsgAck with one response per value (its responseCode the ackType)."""
    responses = [
        {"id": "SRP-1", "value": value, "responseCode": ack_type, "dacsMessageId": "SRP-1"}
        for value in values or ("ACCEPTED" if ack_type == "SUCCESS" else "REJECTED",)
    ]
    return {
        "MsgAck": {
            "ackType": ack_type,
            "whenISO": "2026-11-26T12:00:00.000Z",
            "responses": {"response": responses},
        }
    }


def program(*rules: dict[str, Any], sync_request_id: str = "SRP-1") -> ProgramRuleSyncMessage:
    return ProgramRuleSyncMessage.model_validate(program_rule_sync_message(sync_request_id, *rules))


def ack_message(answer: dict[str, Any], sync_request_id: str = "SRP-1") -> SyncAckMessage:
    return SyncAckMessage(
        syncRequestId=sync_request_id, dermsAnswer=DermsSyncAnswer.model_validate(answer)
    )


def translated_rule(rule: dict[str, Any]) -> dict[str, Any]:
    body = program_rule_sync.to_derms_program(program(rule), LOOKUPS)
    [derms_rule] = body.model_dump(mode="json", exclude_none=True)["program"]["rules"]
    assert isinstance(derms_rule, dict)
    return derms_rule


class TestProgramMapping:
    def test_the_rules_go_in_derms_values_and_the_rest_as_it_came(self) -> None:
        body = program_rule_sync.to_derms_program(program(), LOOKUPS)

        assert body.model_dump(mode="json", exclude_none=True) == {
            "dacsMessageId": "SRP-1",
            "program": {
                "programCode": "BYOT",
                "description": "Bring your own thermostat",
                "division": "NORTH",
                "rules": [
                    {
                        "ruleId": "R-1",
                        "cycleFrequency": "WEEKLY",
                        "maxEvents": 10,
                        "maxEventHours": 4,
                        "weekDays": ["MON", "TUE", "WED", "THU", "FRI"],
                        "allowEventDays": "WEEKDAYS",
                    }
                ],
            },
        }

    @pytest.mark.parametrize(
        ("code", "day"),
        [
            ("X1MO", "MON"),
            ("X1TU", "TUE"),
            ("X1WE", "WED"),
            ("X1TH", "THU"),
            ("X1FR", "FRI"),
            ("X1SA", "SAT"),
            ("X1SU", "SUN"),
        ],
    )
    def test_every_week_day(self, code: str, day: str) -> None:
        assert translated_rule(program_rule(week_days=(code,)))["weekDays"] == [day]

    @pytest.mark.parametrize(
        ("code", "frequency"),
        [
            ("X1DY", "DAILY"),
            ("X1WK", "WEEKLY"),
            ("X1MN", "MONTHLY"),
            ("X1SN", "SEASONAL"),
            ("X1YR", "YEARLY"),
        ],
    )
    def test_every_cycle_frequency(self, code: str, frequency: str) -> None:
        assert translated_rule(program_rule(cycle_frequency=code))["cycleFrequency"] == frequency

    @pytest.mark.parametrize(
        ("code", "days"), [("X1AD", "ALL"), ("X1WD", "WEEKDAYS"), ("X1WE", "WEEKENDS")]
    )
    def test_every_allow_event_days(self, code: str, days: str) -> None:
        assert translated_rule(program_rule(allow_event_days=code))["allowEventDays"] == days

    def test_the_week_days_keep_their_order_and_hours_their_fraction(self) -> None:
        rule = translated_rule(program_rule(week_days=("X1SU", "X1SA"), max_event_hours=2.5))

        assert rule["weekDays"] == ["SUN", "SAT"]
        assert rule["maxEventHours"] == 2.5

    def test_a_rule_without_codes_goes_without_them(self) -> None:
        assert translated_rule({"ruleId": "R-9", "maxEvents": 3}) == {
            "ruleId": "R-9",
            "maxEvents": 3,
            "weekDays": [],
        }

    @pytest.mark.parametrize(
        ("changes", "lookup", "value"),
        [
            ({"cycle_frequency": "X1HR"}, "OUTL-BRT-DACS_DRMS_CycleFrequency", "X1HR"),
            ({"week_days": ("X1MO", "MON")}, "OUTL-BRT-DACS_DRMS_WeekDay", "MON"),
            ({"allow_event_days": "X1HD"}, "OUTL-BRT-DACS_DRMS_AllowEventDays", "X1HD"),
        ],
    )
    def test_a_code_the_lookup_lacks_names_the_lookup_and_the_value(
        self, changes: dict[str, Any], lookup: str, value: str
    ) -> None:
        with pytest.raises(LookupMiss) as miss:
            program_rule_sync.to_derms_program(program(program_rule(**changes)), LOOKUPS)

        assert (miss.value.lookup, miss.value.value) == (lookup, value)
        assert lookup in str(miss.value)
        assert repr(value) in str(miss.value)


class TestHasErrorRule:
    def test_success_is_has_error_false_without_exception_info(self) -> None:
        update = sync_ack.to_sync_request_update(ack_message(derms_ack("SUCCESS")))

        assert update.model_dump(mode="json", exclude_none=True) == {
            "syncRequestId": "SRP-1",
            "hasError": False,
        }

    @pytest.mark.parametrize("ack_type", ["ERROR", "FAILURE", "PARTIAL"])
    def test_any_other_ack_type_is_has_error_true_with_what_derms_said(self, ack_type: str) -> None:
        answer = derms_ack(ack_type, "Program BYOT has no device class")

        update = sync_ack.to_sync_request_update(ack_message(answer))

        assert update.model_dump(mode="json", exclude_none=True) == {
            "syncRequestId": "SRP-1",
            "hasError": True,
            "exceptionInfo": [
                {
                    "messageCategory": 11101,
                    "messageNumber": sync_ack.NO_MESSAGE_NUMBER,
                    "comments": "Program BYOT has no device class",
                }
            ],
        }

    def test_one_entry_per_response_that_is_not_success(self) -> None:
        answer = derms_ack("ERROR", "rule R-1 is invalid", "rule R-2 is invalid")
        answer["MsgAck"]["responses"]["response"].append(
            {"id": "SRP-1", "value": "ACCEPTED", "responseCode": "SUCCESS"}
        )

        update = sync_ack.to_sync_request_update(ack_message(answer))

        assert [e.comments for e in update.exceptionInfo or []] == [
            "rule R-1 is invalid",
            "rule R-2 is invalid",
        ]

    def test_without_responses_the_comments_name_the_ack_type(self) -> None:
        answer = {"MsgAck": {"ackType": "ERROR"}}

        update = sync_ack.to_sync_request_update(ack_message(answer))

        assert update.hasError is True
        assert [e.comments for e in update.exceptionInfo or []] == ["DERMS answered ackType ERROR"]

    def test_comments_over_254_characters_are_cut_and_say_so(self) -> None:
        said = "x" * 300

        update = sync_ack.to_sync_request_update(ack_message(derms_ack("ERROR", said)))

        [info] = update.exceptionInfo or []
        assert len(info.comments) == 254
        assert info.comments == "x" * 251 + "..."

    def test_comments_of_exactly_254_characters_stay_whole(self) -> None:
        assert sync_ack.fit_comments("y" * 254) == "y" * 254


def program_fakes(derms_answer: Any = None, cpmcs_answer: Any = None) -> Fakes:
    return fakes(
        cpmcs={"updateSyncRequest": {} if cpmcs_answer is None else cpmcs_answer},
        derms={
            "updateProgram": derms_ack() if derms_answer is None else derms_answer,
            "updateAggregator": derms_ack() if derms_answer is None else derms_answer,
        },
    )


class TestProgramRuleSync:
    async def test_derms_then_the_child_acknowledgement_then_the_reply(self) -> None:
        made = program_fakes()

        result = await program_rule_sync.run(program(), made.context)

        assert result.status == "succeeded"
        assert result.reply is not None
        assert result.reply.responseDetails.externalId == "SRP-1"
        [to_derms] = made.derms.sent
        assert (to_derms.operation, to_derms.division) == ("updateProgram", "NORTH")
        [(key, message, child)] = made.children.ran
        assert key == "program_rule_sync_ack"
        assert message == ack_message(derms_ack())
        assert child.status == "succeeded"
        [patch] = made.cpmcs.sent
        assert (patch.operation, patch.path) == ("updateSyncRequest", {"syncRequestId": "SRP-1"})
        assert patch.body == SyncRequestUpdate(syncRequestId="SRP-1", hasError=False)
        assert made.errors.reported == []

    async def test_derms_error_ack_on_200_is_acknowledged_with_has_error(self) -> None:
        made = program_fakes(derms_answer=derms_ack("ERROR"))

        result = await program_rule_sync.run(program(), made.context)

        assert result.status == "succeeded"
        [patch] = made.cpmcs.sent
        assert isinstance(patch.body, SyncRequestUpdate)
        assert patch.body.hasError is True
        assert [e.comments for e in patch.body.exceptionInfo or []] == ["REJECTED"]

    @pytest.mark.parametrize(
        ("fault", "timed_out"),
        [
            (TechnicalFault("DERMS default answered HTTP 500 to updateProgram"), False),
            (TechnicalFault("DERMS default did not answer", timed_out=True), True),
        ],
    )
    async def test_a_derms_fault_is_a_fault_and_an_email_and_no_acknowledgement(
        self, fault: TechnicalFault, timed_out: bool
    ) -> None:
        made = program_fakes(derms_answer=fault)

        result = await program_rule_sync.run(program(), made.context)

        assert (result.status, result.reply, result.timed_out) == ("failed", None, timed_out)
        assert made.errors.reported == [str(fault)]
        assert made.children.ran == []
        assert made.cpmcs.sent == []

    async def test_a_lookup_miss_sends_nothing(self) -> None:
        made = program_fakes()

        result = await program_rule_sync.run(
            program(program_rule(week_days=("X1XX",))), made.context
        )

        assert (result.status, result.reply, result.misconfigured) == ("failed", None, True)
        assert result.error == (
            "configuration error, no target was called: "
            "lookup OUTL-BRT-DACS_DRMS_WeekDay has no row for 'X1XX'"
        )
        assert made.errors.reported == [result.error]
        assert made.derms.sent == []
        assert made.cpmcs.sent == []

    async def test_a_failed_acknowledgement_is_a_fault_with_one_email(self) -> None:
        made = program_fakes(cpmcs_answer=TechnicalFault("CPMCS answered HTTP 500"))

        result = await program_rule_sync.run(program(), made.context)

        [(_key, _message, child)] = made.children.ran
        assert (child.status, child.error) == ("failed", "CPMCS answered HTTP 500")
        assert (result.status, result.reply, result.timed_out) == ("failed", None, False)
        assert result.error == "Program Rule Sync Ack failed: CPMCS answered HTTP 500"
        # The child sent the email; the parent does not send a second one.
        assert made.errors.reported == ["CPMCS answered HTTP 500"]

    async def test_an_acknowledgement_that_timed_out_is_a_504(self) -> None:
        made = program_fakes(cpmcs_answer=TechnicalFault("CPMCS slow", timed_out=True))

        result = await program_rule_sync.run(program(), made.context)

        assert (result.status, result.timed_out) == ("failed", True)

    async def test_a_refused_acknowledgement_names_cpmcs_code(self) -> None:
        refusal = BusinessError("Sync request unknown", status="VAL-ERROR", message_number=10001)
        made = program_fakes(cpmcs_answer=refusal)

        result = await program_rule_sync.run(program(), made.context)

        assert made.errors.reported == [
            "CPMCS refused updateSyncRequest: VAL-ERROR 10001: Sync request unknown"
        ]
        assert result.error == (
            "Program Rule Sync Ack failed: "
            "CPMCS refused updateSyncRequest: VAL-ERROR 10001: Sync request unknown"
        )

    def test_found_by_sync_request_id_and_program_code(self) -> None:
        assert program_rule_sync.business_keys(program()) == [
            ("syncRequestId", "SRP-1"),
            ("programCode", "BYOT"),
        ]


class TestAggregatorSync:
    def aggregator(self) -> AggregatorSyncMessage:
        return AggregatorSyncMessage.model_validate(aggregator_sync_message("SRA-1"))

    async def test_the_aggregator_goes_as_it_came_then_flow_14_acknowledges(self) -> None:
        made = program_fakes()

        result = await aggregator_sync.run(self.aggregator(), made.context)

        assert result.reply is not None
        assert result.reply.responseDetails.externalId == "SRA-1"
        [to_derms] = made.derms.sent
        assert (to_derms.operation, to_derms.division) == ("updateAggregator", "NORTH")
        assert to_derms.body is not None
        assert to_derms.body.model_dump(mode="json", exclude_none=True) == {
            "dacsMessageId": "SRA-1",
            "aggregator": aggregator_sync_message("SRA-1")["sendDetails"]["aggregator"],
        }
        [(key, _message, _child)] = made.children.ran
        assert key == "aggregator_sync_ack"
        [patch] = made.cpmcs.sent
        assert patch.path == {"syncRequestId": "SRA-1"}

    async def test_a_failed_acknowledgement_is_a_fault(self) -> None:
        made = program_fakes(cpmcs_answer=TechnicalFault("CPMCS answered HTTP 500"))

        result = await aggregator_sync.run(self.aggregator(), made.context)

        assert (result.status, result.reply) == ("failed", None)
        assert result.error == "Aggregator Sync Ack failed: CPMCS answered HTTP 500"

    def test_found_by_sync_request_id_and_aggregator_id(self) -> None:
        assert aggregator_sync.business_keys(self.aggregator()) == [
            ("syncRequestId", "SRA-1"),
            ("aggregatorId", "AGG-1"),
        ]


class TestCatalog:
    def test_all_four_are_registered_and_only_the_syncs_have_a_route(self) -> None:
        routes = {
            key: (SYNC_FLOWS[key].route, SYNC_FLOWS[key].role)
            for key in (
                "program_rule_sync",
                "program_rule_sync_ack",
                "aggregator_sync",
                "aggregator_sync_ack",
            )
        }

        assert routes == {
            "program_rule_sync": ("/cpmcs/outbound/X1-GEDPGRMSG", "cpmcs"),
            "program_rule_sync_ack": (None, None),
            "aggregator_sync": ("/cpmcs/outbound/X1-GEDAGRMSG", "cpmcs"),
            "aggregator_sync_ack": (None, None),
        }

    def test_the_acknowledgement_is_found_by_its_sync_request_id(self) -> None:
        keys = sync_ack.PROGRAM_RULE_SYNC_ACK_FLOW.business_keys(ack_message(derms_ack()))

        assert keys == [("syncRequestId", "SRP-1")]
