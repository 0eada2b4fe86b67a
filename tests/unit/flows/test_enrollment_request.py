"""Flow 1's steps with fake connectors: the mapping, the responses and the ackType rule."""

from __future__ import annotations

import asyncio

import pytest

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
        assert (asset.nicId, asset.headEndSystem, asset.serialNo) == ("NIC-1", "ECOBEE", "SN-1")

    def test_enrollment_source_defaults_to_config_props(self) -> None:
        assert enrollment_request.to_enroll_program(er("M-1"), LOOKUPS).enrollmentSource == "X1BY"
        given = enrollment_request.to_enroll_program(er("M-1", source="X1CC"), LOOKUPS)
        assert given.enrollmentSource == "X1CC"

    def test_an_unknown_specification_names_the_lookup(self) -> None:
        with pytest.raises(LookupMiss) as miss:
            enrollment_request.to_enroll_program(er("M-1", specification="ACME!ROCKET"), LOOKUPS)

        assert miss.value.lookup == "OUTL-BRT-DACS_DRMS_AssetSpec"
        assert "ACME!ROCKET" in str(miss.value)

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
