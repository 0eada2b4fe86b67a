"""Flow 1's steps with fake connectors: the mapping, the responses and the ackType rule."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from derms_bridge.errors import BusinessError, LookupMiss, TechnicalFault
from derms_bridge.flows import enrollment_request
from derms_bridge.flows.ports import FlowContext
from derms_bridge.schemas.common import overall_ack_type
from derms_bridge.schemas.cpmcs import EnrollProgramRequest, EnrollProgramResponse
from derms_bridge.schemas.derms import EnrollmentRequest, EnrollmentRequestMessage
from tests.fakes import LOOKUPS, FakeCpmcs, FakeErrors, FakeRun, fakes
from tests.payloads import enrollment_message
from tests.payloads import enrollment_request as er_payload


def er(message_id: str, **changes: str) -> EnrollmentRequest:
    return EnrollmentRequest.model_validate(er_payload(message_id, **changes))


class SlowCpmcs(FakeCpmcs):
    """Answers by messageId: a prepared error, else a new PENDING enrollment; later
    requests answer sooner, so completion order differs from request order."""

    def __init__(self, errors: dict[str, Exception] | None = None, delay: float = 0.0) -> None:
        super().__init__()
        self.errors = errors or {}
        self.delay = delay
        self.received: list[EnrollProgramRequest] = []

    async def enroll_program(self, body: EnrollProgramRequest) -> EnrollProgramResponse:
        self.received.append(body)
        await asyncio.sleep(self.delay / (len(self.received)))
        if body.transactionId in self.errors:
            raise self.errors[body.transactionId]
        return EnrollProgramResponse(enrollmentId=f"E-{body.transactionId}", status="PENDING")


def context(cpmcs: FakeCpmcs, concurrency: int = 4) -> tuple[FlowContext, FakeErrors, FakeRun]:
    made = fakes(cpmcs, concurrency=concurrency)
    return made.context, made.errors, made.run


def message(*ids: str) -> EnrollmentRequestMessage:
    return EnrollmentRequestMessage.model_validate(
        enrollment_message(*(er_payload(i) for i in ids))
    )


class TestMapping:
    def test_transaction_id_dates_and_lookups(self) -> None:
        body = enrollment_request.to_enroll_program(er("M-1"), LOOKUPS)

        assert body.transactionId == "M-1"
        assert body.programInfo.startDate == "2026-12-01"
        assert body.programInfo.endDate == "2027-11-30"
        assert body.programInfo.programCode == "BYOT"
        asset = body.assetInfo.assetList[0]
        assert asset.specification == "X1ECOBEE5"
        assert asset.assetType == "X1TH"
        assert (asset.nicId, asset.headEndSystem, asset.serialNo) == ("NIC-M-1", "ECOBEE", "SN-1")

    def test_enrollment_source_defaults_to_config_props(self) -> None:
        assert enrollment_request.to_enroll_program(er("M-1"), LOOKUPS).enrollmentSource == "X1BY"
        given = enrollment_request.to_enroll_program(er("M-1", source="X1CC"), LOOKUPS)
        assert given.enrollmentSource == "X1CC"

    def test_an_unknown_specification_names_the_lookup(self) -> None:
        with pytest.raises(LookupMiss) as miss:
            enrollment_request.to_enroll_program(er("M-1", specification="ACME!ROCKET"), LOOKUPS)

        assert miss.value.lookup == "OUTL-BRT-DACS_DRMS_AssetSpec"
        assert miss.value.field == "assetInfo.assetList[0].specification"
        assert "ACME!ROCKET" in str(miss.value)

    @pytest.mark.parametrize(
        "start",
        ["20261201T080000Z", "2026-W49-2T08:00:00Z", "2026-12-01T08:00:00,5+01:00"],
        ids=["basic", "week date", "comma fraction"],
    )
    def test_the_start_date_is_the_calendar_date_of_any_iso_form(self, start: str) -> None:
        request = EnrollmentRequest.model_validate(er_payload("M-1", start=start))

        body = enrollment_request.to_enroll_program(request, LOOKUPS)

        assert body.programInfo.startDate == "2026-12-01"

    def test_the_date_is_where_the_time_was_written_not_in_utc(self) -> None:
        late_evening = er_payload("M-1", start="2026-12-01T23:30:00-05:00")

        body = enrollment_request.to_enroll_program(
            EnrollmentRequest.model_validate(late_evening), LOOKUPS
        )

        assert body.programInfo.startDate == "2026-12-01"

    def test_an_offset_in_seconds_is_refused_naming_the_field(self) -> None:
        with pytest.raises(ValidationError) as invalid:
            EnrollmentRequest.model_validate(
                er_payload("M-1", start="2026-12-01T08:00:00+05:30:15")
            )

        [error] = invalid.value.errors()
        assert error["loc"] == ("programInfo", "startDateTimeISO")
        assert "CPMCS takes whole minutes" in error["msg"]

    def test_an_unknown_asset_type_names_the_lookup(self) -> None:
        with pytest.raises(LookupMiss, match="OUTL-BRT-DACS_DRMS_AssetType"):
            enrollment_request.to_enroll_program(er("M-1", asset_type="ROCKET"), LOOKUPS)


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        (["SUCCESS", "SUCCESS"], "SUCCESS"),
        (["SUCCESS", "ERROR"], "ERROR"),
        (["ERROR", "FAILURE", "SUCCESS"], "FAILURE"),
        (["FAILURE"], "FAILURE"),
    ],
)
def test_overall_ack_type(codes: list[str], expected: str) -> None:
    assert overall_ack_type(codes) == expected  # type: ignore[arg-type]


async def test_responses_keep_the_request_order_though_answers_come_in_any_order() -> None:
    cpmcs = SlowCpmcs(delay=0.01)
    ctx, _, run = context(cpmcs)
    ids = [f"M-{n}" for n in range(10)]

    result = await enrollment_request.run(message(*ids), ctx)

    assert result.reply is not None
    responses = result.reply.MsgAck.responses.response
    assert [r.id for r in responses] == ids
    assert [r.dacsMessageId for r in responses] == [f"E-{i}" for i in ids]
    assert {r.value for r in responses} == {"PENDING"}
    assert result.status == "succeeded"
    assert ("enrollmentId", "E-M-3") in run.keys


async def test_at_most_the_configured_number_in_flight() -> None:
    in_flight = 0
    peak = 0

    class CountingCpmcs(SlowCpmcs):
        async def enroll_program(self, body: EnrollProgramRequest) -> EnrollProgramResponse:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.001)
            in_flight -= 1
            return EnrollProgramResponse(enrollmentId="E", status="PENDING")

    ctx, _, _ = context(CountingCpmcs(), concurrency=3)
    await enrollment_request.run(message(*(f"M-{n}" for n in range(12))), ctx)

    assert peak == 3


async def test_each_kind_of_answer() -> None:
    cpmcs = SlowCpmcs(
        errors={
            "DUP": BusinessError("already enrolled", message_number=10589),
            "BAD": BusinessError(
                "Program X is not defined", status="VAL-ERROR", message_number=10010
            ),
            "DOWN": TechnicalFault("CPMCS answered HTTP 500 to enrollProgram", http_status=500),
        }
    )
    ctx, errors, _ = context(cpmcs)

    result = await enrollment_request.run(message("OK", "DUP", "BAD", "DOWN"), ctx)

    assert result.reply is not None
    responses = {r.id: r for r in result.reply.MsgAck.responses.response}
    assert responses["OK"].responseCode == "SUCCESS"
    assert responses["DUP"].responseCode == "SUCCESS"
    assert responses["BAD"].responseCode == "ERROR"
    assert responses["BAD"].value == "VAL-ERROR 10010: Program X is not defined"
    assert responses["DOWN"].responseCode == "FAILURE"
    assert result.reply.MsgAck.ackType == "FAILURE"
    assert result.status == "failed"
    assert errors.reported == ["CPMCS answered HTTP 500 to enrollProgram"]
    assert result.error is not None
    assert "BAD" in result.error


async def test_once_cpmcs_is_unreachable_the_rest_are_not_sent() -> None:
    unreachable = TechnicalFault("CPMCS unreachable at http://cpmcs: refused", unreachable=True)
    cpmcs = SlowCpmcs(errors={f"M-{n}": unreachable for n in range(10)})
    ctx, _, _ = context(cpmcs, concurrency=1)

    result = await enrollment_request.run(message(*(f"M-{n}" for n in range(10))), ctx)

    assert len(cpmcs.received) == 1
    assert result.reply is not None
    responses = result.reply.MsgAck.responses.response
    assert {r.responseCode for r in responses} == {"FAILURE"}
    assert responses[5].value.startswith("not sent: CPMCS unreachable")


def test_crash_reply_fails_every_request() -> None:
    ack = enrollment_request.crash_reply(message("A", "B"), "the flow stopped: boom")

    assert ack.MsgAck.ackType == "FAILURE"
    assert [(r.id, r.responseCode) for r in ack.MsgAck.responses.response] == [
        ("A", "FAILURE"),
        ("B", "FAILURE"),
    ]


def batch(*records: object) -> EnrollmentRequestMessage:
    return EnrollmentRequestMessage.model_validate(
        {"drmsInstanceId": "DRMS-1", "enrollmentRequests": list(records)}
    )


async def test_a_bad_record_is_answered_error_alone_and_the_others_go_on() -> None:
    cpmcs = SlowCpmcs()
    ctx, errors, _ = context(cpmcs)
    too_long = er_payload("M" * 121)
    no_program = er_payload("NO-PROGRAM")
    del no_program["programInfo"]["programCode"]

    result = await enrollment_request.run(
        batch(er_payload("OK-1"), too_long, "M-9", no_program, er_payload("OK-2")), ctx
    )

    assert result.reply is not None
    assert result.reply.MsgAck.ackType == "ERROR"
    responses = result.reply.MsgAck.responses.response
    assert [(r.id, r.responseCode) for r in responses] == [
        ("OK-1", "SUCCESS"),
        ("M" * 121, "ERROR"),
        ("enrollmentRequests[2]", "ERROR"),
        ("NO-PROGRAM", "ERROR"),
        ("OK-2", "SUCCESS"),
    ]
    assert responses[1].value == (
        "enrollmentRequests[1].messageId: String should have at most 120 characters"
    )
    assert responses[2].value.startswith("enrollmentRequests[2]: Input should be")
    assert responses[3].value == "enrollmentRequests[3].programInfo.programCode: Field required"
    assert sorted(body.transactionId for body in cpmcs.received) == ["OK-1", "OK-2"]
    # A record DERMS must correct is answered, not emailed.
    assert errors.reported == []
    assert result.status == "failed"
    assert result.error is not None and "3 of 5" in result.error


async def test_a_lookup_miss_is_the_records_error_naming_the_field() -> None:
    cpmcs = SlowCpmcs()
    ctx, errors, _ = context(cpmcs)

    result = await enrollment_request.run(
        batch(er_payload("OK-1"), er_payload("L-1", asset_type="ROCKET")), ctx
    )

    assert result.reply is not None
    ok, missed = result.reply.MsgAck.responses.response
    assert (ok.responseCode, missed.responseCode) == ("SUCCESS", "ERROR")
    assert missed.value == (
        "enrollmentRequests[1].assetInfo.assetList[0].assetType: "
        "lookup OUTL-BRT-DACS_DRMS_AssetType has no row for 'ROCKET'"
    )
    assert [body.transactionId for body in cpmcs.received] == ["OK-1"]
    # Only an operator can add the row: the error email says what is missing.
    assert errors.reported == [missed.value]


async def test_records_of_one_account_or_device_go_one_after_the_other_in_order() -> None:
    in_flight: dict[str, int] = {}
    overlaps: list[str] = []
    arrived: list[str] = []
    records_in_flight = 0
    peak = 0

    class KeyWatchingCpmcs(SlowCpmcs):
        async def enroll_program(self, body: EnrollProgramRequest) -> EnrollProgramResponse:
            nonlocal records_in_flight, peak
            keys = [f"account {body.customerInfo.cisAccountId}"] + [
                f"device {asset.nicId}" for asset in body.assetInfo.assetList
            ]
            arrived.append(body.transactionId)
            overlaps.extend(key for key in keys if in_flight.get(key))
            for key in keys:
                in_flight[key] = in_flight.get(key, 0) + 1
            records_in_flight += 1
            peak = max(peak, records_in_flight)
            # Earlier records take longer, so a free-for-all would reorder them.
            await asyncio.sleep(0.02 if body.transactionId.endswith("1") else 0.001)
            for key in keys:
                in_flight[key] -= 1
            records_in_flight -= 1
            return EnrollProgramResponse(enrollmentId=f"E-{body.transactionId}", status="PENDING")

    ctx, _, _ = context(KeyWatchingCpmcs(), concurrency=8)
    records = [
        er_payload("ACCT-1", account="A"),
        er_payload("OTHER-1"),
        er_payload("ACCT-2", account="A"),
        er_payload("DEV-1", nic_id="N"),
        er_payload("DEV-2", nic_id="N"),
        er_payload("OTHER-2"),
        er_payload("ACCT-3", account="A"),
    ]

    result = await enrollment_request.run(batch(*records), ctx)

    assert result.status == "succeeded"
    assert overlaps == []
    assert [t for t in arrived if t.startswith("ACCT")] == ["ACCT-1", "ACCT-2", "ACCT-3"]
    assert [t for t in arrived if t.startswith("DEV")] == ["DEV-1", "DEV-2"]
    # The other records did not wait for them.
    assert arrived.index("OTHER-2") < arrived.index("ACCT-2")
    assert peak > 1


def test_in_turns_joins_records_linked_through_another() -> None:
    # 0 and 2 share nothing, but each shares a key with 1: all three go in turn.
    groups = enrollment_request.in_turns([{"a"}, {"a", "b"}, {"b"}, {"c"}])

    assert groups == [[0, 1, 2], [3]]
