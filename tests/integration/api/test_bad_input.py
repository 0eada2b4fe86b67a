"""Input the hub refuses on `POST /enroll-to-dacs`: a problem document, a rejected instance
(tests/integration/api/test_rejected.py), no call out.

Every case is sent with a valid DERMS credential, so what refuses it is the body check
and not the guard; each also shows that nothing was written and CPMCS heard nothing. A bad
record within a batch is not refused so: it is answered ERROR in the MsgAck, alone.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from derms_bridge.api.app import create_app
from derms_bridge.bootstrap import build_hub
from derms_bridge.lookups import Lookups
from derms_bridge.sandbox.servers import ServerThread
from derms_bridge.sandbox.smtp_sink import SmtpSink
from derms_bridge.settings.connections import Caller
from tests.conftest import (
    CPMCS_AUTH,
    DERMS_AUTH,
    OPERATOR_AUTH,
    HubUnderTest,
    cpmcs_received,
    empty_tables,
    hub_settings,
)
from tests.payloads import (
    enrollment_message,
    enrollment_request,
    event_opt_out_message,
    program_rule_sync_message,
)

PROBLEM_JSON = "application/problem+json"
SMALL_BODY_LIMIT = 2048

Message = dict[str, Any]


def one_request_message() -> Message:
    return enrollment_message(enrollment_request("BAD-1"))


async def instance_total(client: httpx.AsyncClient) -> int:
    listed = await client.get("/ops/instances", auth=OPERATOR_AUTH)
    assert listed.status_code == 200
    total: int = listed.json()["total"]
    return total


def problem_of(reply: httpx.Response, status: int) -> dict[str, Any]:
    """The RFC 9457 body of `reply`, after checking the status and the members every one has."""
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == PROBLEM_JSON
    problem: dict[str, Any] = reply.json()
    assert problem["status"] == status
    # RFC 9457: `type` is a URI; an absolute one names its scheme before a colon.
    assert isinstance(problem["type"], str) and ":" in problem["type"]
    assert isinstance(problem["title"], str) and problem["title"]
    assert isinstance(problem["detail"], str) and problem["detail"]
    return problem


async def assert_nothing_happened(client: httpx.AsyncClient, cpmcs_sim: httpx.Client) -> None:
    assert await instance_total(client) == 0
    assert cpmcs_sim.get("/_sim/state/calls").json() == {}
    assert cpmcs_sim.get("/_sim/state/enrollments").json() == []


async def assert_kept_as_rejected_only(client: httpx.AsyncClient, cpmcs_sim: httpx.Client) -> None:
    """The refused message is one rejected instance; nothing was sent."""
    listed = await client.get("/ops/instances", auth=OPERATOR_AUTH)
    assert [item["status"] for item in listed.json()["items"]] == ["rejected"]
    assert cpmcs_sim.get("/_sim/state/calls").json() == {}
    assert cpmcs_sim.get("/_sim/state/enrollments").json() == []


def fields_of(problem: dict[str, Any]) -> list[str]:
    return [error["field"] for error in problem["errors"]]


def first_request(message: Message) -> dict[str, Any]:
    request: dict[str, Any] = message["enrollmentRequests"][0]
    return request


def without_program_code(message: Message) -> None:
    del first_request(message)["programInfo"]["programCode"]


def requests_as_a_string(message: Message) -> None:
    message["enrollmentRequests"] = "M-1"


def sequence_not_a_number(message: Message) -> None:
    first_request(message)["assetInfo"]["assetList"][0]["sequence"] = "abc"


def message_id_of_121_chars(message: Message) -> None:
    first_request(message)["messageId"] = "M" * 121


def unknown_enrollment_source(message: Message) -> None:
    first_request(message)["enrollmentSource"] = "X1ZZ"


def unknown_asset_ownership(message: Message) -> None:
    first_request(message)["assetInfo"]["assetOwnership"] = "W1XX"


def start_not_a_date_time(message: Message) -> None:
    first_request(message)["programInfo"]["startDateTimeISO"] = "next Tuesday"


def start_without_offset(message: Message) -> None:
    first_request(message)["programInfo"]["startDateTimeISO"] = "2026-12-01T08:00:00"


def no_requests(message: Message) -> None:
    message["enrollmentRequests"] = []


def no_drms_instance_id(message: Message) -> None:
    del message["drmsInstanceId"]


# A body that is not a batch at all is refused whole; a bad record within one is not.
NOT_A_BATCH: list[tuple[str, Callable[[Message], None], str, str]] = [
    ("mistyped list", requests_as_a_string, "enrollmentRequests", "valid list"),
    ("empty list", no_requests, "enrollmentRequests", "at least 1 item"),
    ("no instance id", no_drms_instance_id, "drmsInstanceId", "Field required"),
]

ER = "enrollmentRequests[0]"
INVALID_RECORDS: list[tuple[str, Callable[[Message], None], str, str]] = [
    ("missing", without_program_code, f"{ER}.programInfo.programCode", "Field required"),
    (
        "mistyped number",
        sequence_not_a_number,
        f"{ER}.assetInfo.assetList[0].sequence",
        "valid integer",
    ),
    ("too long", message_id_of_121_chars, f"{ER}.messageId", "at most 120 characters"),
    ("source", unknown_enrollment_source, f"{ER}.enrollmentSource", "'X1BY', 'X1CC' or 'X1SS'"),
    ("ownership", unknown_asset_ownership, f"{ER}.assetInfo.assetOwnership", "'W1CO' or 'W1OW'"),
    ("not ISO", start_not_a_date_time, f"{ER}.programInfo.startDateTimeISO", "not an ISO 8601"),
    ("no offset", start_without_offset, f"{ER}.programInfo.startDateTimeISO", "no time zone"),
]


@pytest.mark.parametrize(
    ("spoil", "field", "message_fragment"),
    [pytest.param(spoil, field, fragment, id=name) for name, spoil, field, fragment in NOT_A_BATCH],
)
async def test_a_body_that_is_not_a_batch_is_named_and_nothing_is_sent(
    hub: HubUnderTest,
    cpmcs_sim: httpx.Client,
    spoil: Callable[[Message], None],
    field: str,
    message_fragment: str,
) -> None:
    message = one_request_message()
    spoil(message)

    reply = await hub.client.post("/enroll-to-dacs", json=message, auth=DERMS_AUTH)

    problem = problem_of(reply, 422)
    assert fields_of(problem) == [field]
    assert message_fragment in problem["errors"][0]["message"]
    assert field in problem["detail"]
    await assert_kept_as_rejected_only(hub.client, cpmcs_sim)


@pytest.mark.parametrize(
    ("spoil", "field", "message_fragment"),
    [
        pytest.param(spoil, field, fragment, id=name)
        for name, spoil, field, fragment in INVALID_RECORDS
    ],
)
async def test_an_invalid_field_is_its_records_error_and_the_record_is_not_sent(
    hub: HubUnderTest,
    cpmcs_sim: httpx.Client,
    spoil: Callable[[Message], None],
    field: str,
    message_fragment: str,
) -> None:
    message = one_request_message()
    spoil(message)

    reply = await hub.client.post("/enroll-to-dacs", json=message, auth=DERMS_AUTH)

    assert reply.status_code == 200
    ack = reply.json()["MsgAck"]
    assert ack["ackType"] == "ERROR"
    [response] = ack["responses"]["response"]
    assert response["responseCode"] == "ERROR"
    assert response["value"].startswith(f"{field}: ")
    assert message_fragment in response["value"]
    assert cpmcs_sim.get("/_sim/state/calls").json() == {}
    detail = await hub.client.get(
        f"/ops/instances/{reply.headers['X-Instance-Id']}", auth=OPERATOR_AUTH
    )
    assert detail.json()["status"] == "failed"
    assert field in detail.json()["error"]


async def test_a_message_id_of_exactly_120_chars_is_accepted(
    hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    # The other side of the 121-character refusal: the limit is CPMCS's own, not tighter.
    message_id = "M" * 120

    reply = await hub.client.post(
        "/enroll-to-dacs",
        json=enrollment_message(enrollment_request(message_id)),
        auth=DERMS_AUTH,
    )

    assert reply.status_code == 200
    kept = cpmcs_sim.get("/_sim/state/enrollments").json()
    assert [e["transactionId"] for e in kept] == [message_id]


async def test_one_bad_request_in_a_batch_is_answered_alone(
    hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    message = enrollment_message(
        enrollment_request("GOOD-1"), enrollment_request("M" * 121), enrollment_request("GOOD-2")
    )

    reply = await hub.client.post("/enroll-to-dacs", json=message, auth=DERMS_AUTH)

    assert reply.status_code == 200
    responses = reply.json()["MsgAck"]["responses"]["response"]
    assert [r["responseCode"] for r in responses] == ["SUCCESS", "ERROR", "SUCCESS"]
    assert responses[1]["value"].startswith("enrollmentRequests[1].messageId: ")
    kept = cpmcs_sim.get("/_sim/state/enrollments").json()
    assert sorted(e["transactionId"] for e in kept) == ["GOOD-1", "GOOD-2"]


async def test_every_bad_field_of_a_record_is_listed(
    hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    message = one_request_message()
    unknown_enrollment_source(message)
    unknown_asset_ownership(message)

    reply = await hub.client.post("/enroll-to-dacs", json=message, auth=DERMS_AUTH)

    [response] = reply.json()["MsgAck"]["responses"]["response"]
    assert f"{ER}.assetInfo.assetOwnership: " in response["value"]
    assert f"{ER}.enrollmentSource: " in response["value"]
    assert cpmcs_sim.get("/_sim/state/calls").json() == {}


async def test_malformed_json_is_named_as_such(hub: HubUnderTest, cpmcs_sim: httpx.Client) -> None:
    reply = await hub.client.post(
        "/enroll-to-dacs",
        content=b'{"drmsInstanceId": "DRMS-1", "enrollmentRequests": [',
        headers={"content-type": "application/json"},
        auth=DERMS_AUTH,
    )

    problem = problem_of(reply, 422)
    assert fields_of(problem) == ["body"]
    assert problem["errors"][0]["message"].startswith("malformed JSON")
    assert "malformed JSON" in problem["detail"]
    await assert_kept_as_rejected_only(hub.client, cpmcs_sim)


@pytest.mark.parametrize("body", ["[]", '"enroll me"', "null"], ids=["array", "string", "null"])
async def test_json_that_is_not_an_object_is_refused(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, body: str
) -> None:
    reply = await hub.client.post(
        "/enroll-to-dacs",
        content=body.encode(),
        headers={"content-type": "application/json"},
        auth=DERMS_AUTH,
    )

    assert fields_of(problem_of(reply, 422)) == ["body"]
    await assert_kept_as_rejected_only(hub.client, cpmcs_sim)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", json.dumps(enrollment_message(enrollment_request("T-1")))),
        ("application/x-www-form-urlencoded", "drmsInstanceId=DRMS-1&enrollmentRequests=M-1"),
    ],
    ids=["text", "form"],
)
async def test_a_body_that_is_not_json_is_415(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, content_type: str, body: str
) -> None:
    reply = await hub.client.post(
        "/enroll-to-dacs",
        content=body.encode(),
        headers={"content-type": content_type},
        auth=DERMS_AUTH,
    )

    assert "application/json" in problem_of(reply, 415)["detail"]
    await assert_kept_as_rejected_only(hub.client, cpmcs_sim)


async def test_json_with_a_charset_parameter_is_accepted(
    hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    # The 415 cases above must be about the media type, not about any parameter after it.
    reply = await hub.client.post(
        "/enroll-to-dacs",
        content=json.dumps(one_request_message()).encode(),
        headers={"content-type": "application/json; charset=utf-8"},
        auth=DERMS_AUTH,
    )

    assert reply.status_code == 200
    assert len(cpmcs_sim.get("/_sim/state/enrollments").json()) == 1


async def test_a_message_is_read_alike_in_either_json_media_type(
    hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    # application/json is read by the route class itself, a +json type by FastAPI's reading
    # (api/guard.py): the caller cannot tell which.
    replies = [
        await hub.client.post(
            "/enroll-to-dacs",
            content=json.dumps(enrollment_message(enrollment_request(f"MEDIA-{n}"))).encode(),
            headers={"content-type": content_type},
            auth=DERMS_AUTH,
        )
        for n, content_type in enumerate(("application/json", "application/vnd.derms+json"))
    ]

    assert [reply.status_code for reply in replies] == [200, 200]
    assert replies[0].json().keys() == replies[1].json().keys()
    assert len(cpmcs_sim.get("/_sim/state/enrollments").json()) == 2


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_an_unknown_route_is_a_404_problem(hub: HubUnderTest, method: str) -> None:
    reply = await hub.client.request(
        method, "/enroll-to-nowhere", json=one_request_message(), auth=DERMS_AUTH
    )

    problem_of(reply, 404)


@pytest.fixture
async def small_limit_hub(
    database_url: str,
    cpmcs_server: ServerThread,
    derms_server: ServerThread,
    cpmcs_sim: httpx.Client,
    mailbox: SmtpSink,
    callers: dict[str, Caller],
    default_lookups: Lookups,
) -> AsyncIterator[HubUnderTest]:
    """The hub with a JSON body limit of 2 KiB, so that a few enrollments exceed it."""
    empty_tables(database_url)
    settings = hub_settings(
        database_url,
        cpmcs_server.url,
        derms_server.url,
        mailbox,
        callers,
        max_json_body_bytes=SMALL_BODY_LIMIT,
    )
    built = build_hub(settings, default_lookups)
    transport = httpx.ASGITransport(app=create_app(built))
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
        yield HubUnderTest(hub=built, client=client, settings=settings)
    await built.aclose()


def encoded(message: Message) -> bytes:
    return json.dumps(message).encode()


def message_over_the_small_limit() -> Message:
    message = enrollment_message(*(enrollment_request(f"BIG-{n}") for n in range(4)))
    assert len(encoded(message)) > SMALL_BODY_LIMIT
    return message


async def test_a_body_within_the_limit_is_accepted(
    small_limit_hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    # Shows that the small limit refuses by size, not everything.
    message = one_request_message()
    assert len(encoded(message)) < SMALL_BODY_LIMIT

    reply = await small_limit_hub.client.post("/enroll-to-dacs", json=message, auth=DERMS_AUTH)

    assert reply.status_code == 200
    assert len(cpmcs_sim.get("/_sim/state/enrollments").json()) == 1


async def test_a_body_over_the_limit_is_413(
    small_limit_hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    reply = await small_limit_hub.client.post(
        "/enroll-to-dacs", json=message_over_the_small_limit(), auth=DERMS_AUTH
    )

    assert str(SMALL_BODY_LIMIT) in problem_of(reply, 413)["detail"]
    await assert_kept_as_rejected_only(small_limit_hub.client, cpmcs_sim)


async def test_a_chunked_body_over_the_limit_is_413(
    small_limit_hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    body = encoded(message_over_the_small_limit())

    async def in_chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 256):
            yield body[start : start + 256]

    request = small_limit_hub.client.build_request(
        "POST",
        "/enroll-to-dacs",
        content=in_chunks(),
        headers={"content-type": "application/json"},
    )
    # Without a declared length the hub can only find the size by reading.
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"

    reply = await small_limit_hub.client.send(request, auth=DERMS_AUTH)

    problem_of(reply, 413)
    await assert_kept_as_rejected_only(small_limit_hub.client, cpmcs_sim)


async def test_a_chunked_body_within_the_limit_is_accepted(
    small_limit_hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    body = encoded(one_request_message())

    async def in_chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 256):
            yield body[start : start + 256]

    reply = await small_limit_hub.client.post(
        "/enroll-to-dacs",
        content=in_chunks(),
        headers={"content-type": "application/json"},
        auth=DERMS_AUTH,
    )

    assert reply.status_code == 200
    assert len(cpmcs_sim.get("/_sim/state/enrollments").json()) == 1


@pytest.mark.parametrize(
    ("route", "auth", "message", "field"),
    [
        (
            "/enroll-to-dacs",
            DERMS_AUTH,
            {"drmsInstanceId": "DRMS\x00-1", "enrollmentRequests": [enrollment_request("NUL-1")]},
            "drmsInstanceId",
        ),
        (
            "/cpmcs/outbound/X1-EPOPTOMSG",
            CPMCS_AUTH,
            event_opt_out_message("OPT-\x00-1"),
            "messageId",
        ),
    ],
)
async def test_a_nul_character_is_refused_naming_its_field(
    hub: HubUnderTest, route: str, auth: tuple[str, str], message: Message, field: str
) -> None:
    reply = await hub.client.post(route, json=message, auth=auth)

    problem = problem_of(reply, 422)
    assert f"{field} contains a NUL character" in problem["detail"]
    assert (await hub.detail(problem["instanceId"]))["status"] == "rejected"


async def test_a_small_body_of_countless_records_is_refused_in_a_small_answer(
    hub: HubUnderTest,
) -> None:
    body = '{"drmsInstanceId":"x","enrollmentRequests":[' + ",".join(["{}"] * 200_000) + "]}"

    reply = await hub.client.post(
        "/enroll-to-dacs",
        content=body,
        headers={"Content-Type": "application/json"},
        auth=DERMS_AUTH,
    )

    problem = problem_of(reply, 422)
    assert problem["errors"][0]["field"] == "enrollmentRequests"
    assert "at most 1000 items" in problem["errors"][0]["message"]
    assert len(reply.content) < 2048
    assert (await hub.detail(problem["instanceId"]))["status"] == "rejected"


async def test_a_problem_lists_the_first_hundred_field_errors_and_counts_the_rest(
    hub: HubUnderTest,
) -> None:
    # Each device misses what a device must hold: hundreds of errors.
    message = {"dacsMessageId": "SR-BAD", "ackType": "SUCCESS", "devices": [{}] * 300}

    reply = await hub.client.post("/enroll-ack-all-to-dacs", json=message, auth=DERMS_AUTH)

    problem = problem_of(reply, 422)
    assert len(problem["errors"]) == 101
    assert problem["errors"][-1]["message"].startswith("and ")
    assert problem["errors"][-1]["message"].endswith(" more errors")


@pytest.mark.parametrize(
    ("body", "message_fragment"),
    [
        pytest.param(b'{"drmsInstanceId": "DRMS-\xff-1"}', "not UTF-8", id="invalid UTF-8"),
        pytest.param(b"[" * 10_000 + b"]" * 10_000, "nested deeper", id="10,000 deep"),
        pytest.param(
            b'{"drmsInstanceId": "DRMS-1", "enrollmentRequests": [' + b"7" * 5000 + b"]}",
            "more digits",
            id="5,000-digit integer",
        ),
    ],
)
async def test_a_body_that_cannot_be_read_as_json_is_a_422_naming_the_body(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, body: bytes, message_fragment: str
) -> None:
    reply = await hub.client.post(
        "/enroll-to-dacs",
        content=body,
        headers={"content-type": "application/json"},
        auth=DERMS_AUTH,
    )

    problem = problem_of(reply, 422)
    assert fields_of(problem) == ["body"]
    assert problem["errors"][0]["message"].startswith("malformed JSON: ")
    assert message_fragment in problem["errors"][0]["message"]
    await assert_kept_as_rejected_only(hub.client, cpmcs_sim)


@pytest.mark.parametrize(
    ("number", "kind"), [(False, "true or false"), ("10010", "a string")], ids=["false", "text"]
)
async def test_an_integer_field_takes_only_a_json_number(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, number: object, kind: str
) -> None:
    message = {
        "dacsMessageId": "SR-STRICT",
        "ackType": "ERROR",
        "errors": [{"messageNumber": number, "message": "the head-end refused"}],
    }

    reply = await hub.client.post("/enroll-ack-all-to-dacs", json=message, auth=DERMS_AUTH)

    problem = problem_of(reply, 422)
    assert fields_of(problem) == ["errors[0].messageNumber"]
    assert problem["errors"][0]["message"] == f"Input should be a valid integer, not {kind}"
    await assert_kept_as_rejected_only(hub.client, cpmcs_sim)


async def test_a_whole_number_written_with_a_fraction_is_an_integer(
    hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    # JSON Schema's integer, as the OpenAPI document says: 10010.0 is 10010.
    message = {
        "dacsMessageId": "SR-WHOLE",
        "ackType": "ERROR",
        "errors": [{"messageNumber": 10010.0, "message": "the head-end refused"}],
    }

    reply = await hub.client.post("/enroll-ack-all-to-dacs", json=message, auth=DERMS_AUTH)

    assert reply.status_code == 200, reply.text
    [acknowledgement] = cpmcs_received(cpmcs_sim, "acknowledgements")
    assert acknowledgement["exceptionInfo"][0]["messageNumber"] == 10010


async def test_a_false_sequence_is_its_records_error(
    hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    message = one_request_message()
    first_request(message)["assetInfo"]["assetList"][0]["sequence"] = False

    reply = await hub.client.post("/enroll-to-dacs", json=message, auth=DERMS_AUTH)

    [response] = reply.json()["MsgAck"]["responses"]["response"]
    assert response["responseCode"] == "ERROR"
    assert response["value"].startswith(f"{ER}.assetInfo.assetList[0].sequence: ")
    assert cpmcs_sim.get("/_sim/state/calls").json() == {}


@pytest.mark.parametrize("sync_request_id", ["SR/1", ".", ".."])
async def test_a_sync_request_id_that_is_no_url_segment_is_refused_before_derms_hears(
    hub: HubUnderTest, derms_sim: httpx.Client, sync_request_id: str
) -> None:
    # F1-SyncRequest puts it in CPMCS's URL path, where it would name another resource.
    reply = await hub.client.post(
        "/cpmcs/outbound/X1-GEDPGRMSG",
        json=program_rule_sync_message(sync_request_id),
        auth=CPMCS_AUTH,
    )

    problem = problem_of(reply, 422)
    assert fields_of(problem) == ["sendDetails.syncRequestId"]
    assert "one segment of CPMCS's URL" in problem["errors"][0]["message"]
    assert derms_sim.get("/_sim/state/received").json() == {}
