"""Flow 1 through the hub's HTTP API, against the CPMCS simulator and an SMTP sink on loopback."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from derms_bridge.api.app import create_app
from derms_bridge.bootstrap import build_hub
from derms_bridge.lookups import Lookups
from derms_bridge.sandbox.servers import free_port
from derms_bridge.sandbox.smtp_sink import SmtpSink
from derms_bridge.settings.connections import Caller
from tests.conftest import DERMS_AUTH, OPERATOR_AUTH, HubUnderTest, hub_settings
from tests.payloads import enrollment_message, enrollment_request


async def send(hub: HubUnderTest, message: dict[str, Any]) -> httpx.Response:
    return await hub.client.post("/enroll-to-dacs", json=message, auth=DERMS_AUTH)


def responses_of(reply: httpx.Response) -> list[dict[str, Any]]:
    responses: list[dict[str, Any]] = reply.json()["MsgAck"]["responses"]["response"]
    return responses


async def test_every_request_is_enrolled_and_answered_in_order(
    hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    # Latency makes later requests finish before earlier ones would in a naive loop.
    cpmcs_sim.put("/_sim/faults", json={"latency_ms": 5}).raise_for_status()
    ids = [f"M-{n}" for n in range(40)]

    reply = await send(hub, enrollment_message(*(enrollment_request(i) for i in ids)))

    assert reply.status_code == 200
    assert reply.json()["MsgAck"]["ackType"] == "SUCCESS"
    responses = responses_of(reply)
    assert [r["id"] for r in responses] == ids
    assert {r["responseCode"] for r in responses} == {"SUCCESS"}
    assert {r["value"] for r in responses} == {"PENDING"}
    kept = cpmcs_sim.get("/_sim/state/enrollments").json()
    assert sorted(e["transactionId"] for e in kept) == sorted(ids)
    by_transaction = {e["transactionId"]: e["enrollmentId"] for e in kept}
    assert [r["dacsMessageId"] for r in responses] == [by_transaction[i] for i in ids]


async def test_cpmcs_receives_the_mapped_enrollment(
    hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    await send(hub, enrollment_message(enrollment_request("M-MAP", specification="GOOGLE!NEST3")))

    body = cpmcs_sim.get("/_sim/state/enrollments").json()[0]["body"]
    assert body["transactionId"] == "M-MAP"
    assert body["enrollmentSource"] == "X1BY"
    assert body["programInfo"]["startDate"] == "2026-12-01"
    assert body["programInfo"]["endDate"] == "2027-11-30"
    asset = body["assetInfo"]["assetList"][0]
    assert (asset["specification"], asset["assetType"]) == ("X1NEST3", "X1TH")
    assert body["customerInfo"]["name"] == "Ada Lovelace"
    assert body["locationInfo"]["cisPremiseId"] == "4567890123"


async def test_a_business_error_is_an_error_response_and_the_rest_go_on(
    hub: HubUnderTest, mailbox: SmtpSink
) -> None:
    reply = await send(
        hub,
        enrollment_message(
            enrollment_request("M-OK-1"),
            enrollment_request("M-BAD", program="NOSUCH"),
            enrollment_request("M-OK-2"),
        ),
    )

    assert reply.json()["MsgAck"]["ackType"] == "ERROR"
    codes = [(r["id"], r["responseCode"]) for r in responses_of(reply)]
    assert codes == [("M-OK-1", "SUCCESS"), ("M-BAD", "ERROR"), ("M-OK-2", "SUCCESS")]
    assert "Program NOSUCH is not defined" in responses_of(reply)[1]["value"]
    assert "VAL-ERROR" in responses_of(reply)[1]["value"]
    # A business error is answered, not emailed.
    assert mailbox.messages() == []


async def test_already_enrolled_counts_as_success(hub: HubUnderTest) -> None:
    first = await send(hub, enrollment_message(enrollment_request("M-TWICE")))
    again = await send(hub, enrollment_message(enrollment_request("M-TWICE")))

    assert first.json()["MsgAck"]["ackType"] == "SUCCESS"
    assert again.json()["MsgAck"]["ackType"] == "SUCCESS"
    assert responses_of(again)[0]["responseCode"] == "SUCCESS"
    assert "already exists" in responses_of(again)[0]["value"]


async def test_a_technical_fault_is_a_failure_emailed_once(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    cpmcs_sim.put("/_sim/faults", json={"status_code": 503}).raise_for_status()

    reply = await send(hub, enrollment_message(*(enrollment_request(f"F-{n}") for n in range(5))))

    assert reply.status_code == 200
    assert reply.json()["MsgAck"]["ackType"] == "FAILURE"
    assert {r["responseCode"] for r in responses_of(reply)} == {"FAILURE"}
    assert "HTTP 503" in responses_of(reply)[0]["value"]
    mails = mailbox.wait_for(1)
    assert len(mails) == 1
    mail = mails[0]
    assert mail.rcpt_tos == ("integration-errors@utility.example",)
    assert "Enrollment Request" in mail.subject
    assert reply.headers["X-Instance-Id"] in mail.body_text
    assert "F-0" in mail.body_text and "DRMS-1" in mail.body_text
    assert "HTTP 503" in mail.body_text


async def test_a_mixed_batch_is_a_failure_overall(
    hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    cpmcs_sim.put("/_sim/faults", json={"error_rate": 0.5}).raise_for_status()

    reply = await send(
        hub,
        enrollment_message(
            *(enrollment_request(f"X-{n}") for n in range(30)),
            enrollment_request("X-BAD", program="NOSUCH"),
        ),
    )

    codes = {r["responseCode"] for r in responses_of(reply)}
    assert "FAILURE" in codes and "SUCCESS" in codes
    assert reply.json()["MsgAck"]["ackType"] == "FAILURE"


async def test_unreachable_cpmcs_gives_a_failure_ack_and_one_email(
    database_url: str,
    derms_sim: httpx.Client,
    mailbox: SmtpSink,
    callers: dict[str, Caller],
    default_lookups: Lookups,
) -> None:
    from tests.conftest import empty_tables

    empty_tables(database_url)
    nowhere = f"http://127.0.0.1:{free_port()}"
    settings = hub_settings(database_url, nowhere, str(derms_sim.base_url), mailbox, callers)
    built = build_hub(settings, default_lookups)
    transport = httpx.ASGITransport(app=create_app(built))
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
        message = enrollment_message(*(enrollment_request(f"U-{n}") for n in range(100)))
        reply = await client.post("/enroll-to-dacs", json=message, auth=DERMS_AUTH)
        detail = (
            await client.get(f"/ops/instances/{reply.headers['X-Instance-Id']}", auth=OPERATOR_AUTH)
        ).json()
    await built.aclose()

    assert reply.status_code == 200
    assert reply.json()["MsgAck"]["ackType"] == "FAILURE"
    assert all("unreachable" in r["value"] for r in responses_of(reply))
    assert len(mailbox.wait_for(1)) == 1
    # Once CPMCS is known to be down, the records not yet sent are not tried.
    assert len(detail["activities"]) < 100
    assert detail["status"] == "failed"


async def test_a_timeout_is_a_failure(hub: HubUnderTest, cpmcs_sim: httpx.Client) -> None:
    cpmcs_sim.put("/_sim/faults", json={"latency_ms": 3500}).raise_for_status()

    reply = await send(hub, enrollment_message(enrollment_request("SLOW-1")))

    assert reply.json()["MsgAck"]["ackType"] == "FAILURE"
    assert "did not answer enrollProgram within 3 s" in responses_of(reply)[0]["value"]


async def test_a_lookup_miss_names_the_lookup_and_value(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    reply = await send(hub, enrollment_message(enrollment_request("L-1", specification="ACME!X1")))

    response = responses_of(reply)[0]
    assert response["responseCode"] == "ERROR"
    assert response["value"] == (
        "enrollmentRequests[0].assetInfo.assetList[0].specification: "
        "lookup OUTL-BRT-DACS_DRMS_AssetSpec has no row for 'ACME!X1'"
    )
    assert cpmcs_sim.get("/_sim/state/enrollments").json() == []
    assert "ACME!X1" in mailbox.wait_for(1)[0].body_text


async def test_the_instance_is_found_by_each_business_identifier(hub: HubUnderTest) -> None:
    reply = await send(
        hub, enrollment_message(enrollment_request("FIND-ME"), drms_instance_id="DRMS-77")
    )
    instance_id = reply.headers["X-Instance-Id"]
    enrollment_id = responses_of(reply)[0]["dacsMessageId"]

    for key in ("FIND-ME", "DRMS-77", enrollment_id):
        found = await hub.client.get("/ops/instances", params={"key": key}, auth=OPERATOR_AUTH)
        assert [i["id"] for i in found.json()["items"]] == [instance_id], key

    detail = await hub.detail(instance_id)
    assert detail["status"] == "succeeded"
    assert detail["flow_identifier"] == "OUTL-BA-DRMS_DACS_ENROLLRQ"
    assert detail["reply"]["MsgAck"]["ackType"] == "SUCCESS"
    assert detail["payload"]["enrollmentRequests"][0]["messageId"] == "FIND-ME"
    [activity] = detail["activities"]
    assert activity["target"] == "CPMCS"
    assert activity["operation"] == "enrollProgram"
    assert activity["http_status"] == 200


async def test_resubmit_runs_again_and_links_to_the_failed_run(
    hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    cpmcs_sim.put("/_sim/faults", json={"status_code": 500}).raise_for_status()
    failed = await send(hub, enrollment_message(enrollment_request("R-1")))
    old_id = failed.headers["X-Instance-Id"]
    assert (await hub.detail(old_id))["status"] == "failed"
    cpmcs_sim.delete("/_sim/faults").raise_for_status()

    resubmitted = await hub.client.post(f"/ops/instances/{old_id}/resubmit", auth=OPERATOR_AUTH)

    assert resubmitted.status_code == 200
    new = resubmitted.json()
    assert new["status"] == "succeeded"
    assert new["resubmit_of"] == old_id
    assert new["attempts"] == 2
    assert new["reply"]["MsgAck"]["ackType"] == "SUCCESS"
    assert (await hub.detail(old_id))["resubmitted_as"] == [new["id"]]
    assert len(cpmcs_sim.get("/_sim/state/enrollments").json()) == 1


async def test_resubmit_of_an_unknown_instance_is_404(hub: HubUnderTest) -> None:
    reply = await hub.client.post("/ops/instances/nope/resubmit", auth=OPERATOR_AUTH)

    assert reply.status_code == 404
    assert reply.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(("error_flag", "email_type"), [("false", "email"), ("true", "none")])
async def test_no_error_email_unless_both_flags_say_so(
    hub: HubUnderTest,
    cpmcs_sim: httpx.Client,
    mailbox: SmtpSink,
    default_lookups: Lookups,
    error_flag: str,
    email_type: str,
) -> None:
    from dataclasses import replace

    props = default_lookups.tables["ConfigProps"]
    rows = {
        **props.rows,
        "notification.email.error.flag": error_flag,
        "notification.type.email": email_type,
    }
    hub.hub.lookups.current = Lookups(
        tables={**default_lookups.tables, "ConfigProps": replace(props, rows=rows)}
    )
    cpmcs_sim.put("/_sim/faults", json={"status_code": 500}).raise_for_status()

    reply = await send(hub, enrollment_message(enrollment_request("Q-1")))

    assert reply.json()["MsgAck"]["ackType"] == "FAILURE"
    with pytest.raises(TimeoutError):
        mailbox.wait_for(1, timeout=0.5)


async def test_bad_records_are_answered_alone_and_the_batch_goes_on(
    hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    bad_start = enrollment_request("BAD-START", start="next Tuesday")
    reply = await send(
        hub,
        enrollment_message(
            enrollment_request("GOOD-1"),
            bad_start,
            enrollment_request("BAD-SPEC", specification="ACME!X1"),
            "not a record",  # type: ignore[arg-type]
            enrollment_request("GOOD-2"),
        ),
    )

    assert reply.status_code == 200
    assert reply.json()["MsgAck"]["ackType"] == "ERROR"
    assert [(r["id"], r["responseCode"]) for r in responses_of(reply)] == [
        ("GOOD-1", "SUCCESS"),
        ("BAD-START", "ERROR"),
        ("BAD-SPEC", "ERROR"),
        ("enrollmentRequests[3]", "ERROR"),
        ("GOOD-2", "SUCCESS"),
    ]
    assert responses_of(reply)[1]["value"].startswith(
        "enrollmentRequests[1].programInfo.startDateTimeISO: "
    )
    kept = cpmcs_sim.get("/_sim/state/enrollments").json()
    assert sorted(e["transactionId"] for e in kept) == ["GOOD-1", "GOOD-2"]
    detail = await hub.detail(reply.headers["X-Instance-Id"])
    assert detail["status"] == "failed"
    assert detail["payload"]["enrollmentRequests"][3] == "not a record"
    assert detail["error"].startswith("3 of 5 enrollment requests not accepted")


@pytest.mark.parametrize(
    "start", ["20261201T080000Z", "2026-W49-2T08:00:00Z"], ids=["basic", "week date"]
)
async def test_cpmcs_gets_the_calendar_date_of_any_iso_form(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, start: str
) -> None:
    reply = await send(hub, enrollment_message(enrollment_request("D-1", start=start)))

    assert reply.json()["MsgAck"]["ackType"] == "SUCCESS"
    body = cpmcs_sim.get("/_sim/state/enrollments").json()[0]["body"]
    assert body["programInfo"]["startDate"] == "2026-12-01"


async def test_an_error_email_goes_when_the_email_type_is_true(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, mailbox: SmtpSink, default_lookups: Lookups
) -> None:
    from dataclasses import replace

    props = default_lookups.tables["ConfigProps"]
    rows = {**props.rows, "notification.type.email": "true"}
    hub.hub.lookups.current = Lookups(
        tables={**default_lookups.tables, "ConfigProps": replace(props, rows=rows)}
    )
    cpmcs_sim.put("/_sim/faults", json={"status_code": 500}).raise_for_status()

    await send(hub, enrollment_message(enrollment_request("T-1")))

    assert "HTTP 500" in mailbox.wait_for(1)[0].body_text
