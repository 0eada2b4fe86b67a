"""The operations API and the routes around it: finding instances, reading them, health, docs."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from derms_bridge.api.app import create_app
from derms_bridge.bootstrap import build_hub
from derms_bridge.lookups import Lookups
from derms_bridge.sandbox.servers import ServerThread, free_port
from derms_bridge.sandbox.smtp_sink import SmtpSink
from derms_bridge.settings.connections import Caller
from derms_bridge.store import overview
from derms_bridge.store.tables import ActivityRow
from tests.conftest import DERMS_AUTH, OPERATOR_AUTH, HubUnderTest, hub_settings
from tests.payloads import enrollment_message, enrollment_request

PROBLEM_JSON = "application/problem+json"
FLOW_KEY = "enrollment_request"
FLOW_IDENTIFIER = "OUTL-BA-DRMS_DACS_ENROLLRQ"


async def enroll(hub: HubUnderTest, *message_ids: str) -> str:
    """Sends one message with an enrollment per id; the id of the instance it made."""
    message = enrollment_message(*(enrollment_request(m) for m in message_ids))
    reply = await hub.client.post("/enroll-to-dacs", json=message, auth=DERMS_AUTH)
    assert reply.status_code == 200
    return reply.headers["X-Instance-Id"]


async def listing(hub: HubUnderTest, **params: str | int) -> dict[str, Any]:
    reply = await hub.client.get("/ops/instances", params=params, auth=OPERATOR_AUTH)
    assert reply.status_code == 200, reply.text
    page: dict[str, Any] = reply.json()
    return page


async def listed_ids(hub: HubUnderTest, **params: str | int) -> list[str]:
    return [item["id"] for item in (await listing(hub, **params))["items"]]


async def refused_listing(hub: HubUnderTest, **params: str | int) -> dict[str, Any]:
    reply = await hub.client.get("/ops/instances", params=params, auth=OPERATOR_AUTH)
    assert reply.status_code == 422, reply.text
    assert reply.headers["content-type"] == PROBLEM_JSON
    problem: dict[str, Any] = reply.json()
    assert problem["status"] == 422
    return problem


async def test_instances_are_found_by_flow_key_and_identifier(hub: HubUnderTest) -> None:
    instance_id = await enroll(hub, "FLOW-1")

    assert await listed_ids(hub, flow=FLOW_KEY) == [instance_id]
    assert await listed_ids(hub, flow=FLOW_IDENTIFIER) == [instance_id]
    # A flow that exists but ran nothing finds nothing, so the filter does filter.
    assert (await listing(hub, flow="enrollment_sync"))["total"] == 0
    assert (await listing(hub, flow="OUTL-BA-DACS_DRMS_ENROLL_SYNC"))["total"] == 0


async def test_an_unknown_flow_is_a_422_problem(hub: HubUnderTest) -> None:
    problem = await refused_listing(hub, flow="no_such_flow")

    assert "no_such_flow" in problem["detail"]


async def test_an_unknown_flow_is_listed_as_a_bad_field(hub: HubUnderTest) -> None:
    problem = await refused_listing(hub, flow="no_such_flow")

    assert [error["field"] for error in problem["errors"]] == ["flow"]


async def test_instances_are_found_by_status(hub: HubUnderTest, cpmcs_sim: httpx.Client) -> None:
    succeeded_id = await enroll(hub, "OK-1")
    cpmcs_sim.put("/_sim/faults", json={"status_code": 500}).raise_for_status()
    failed_id = await enroll(hub, "FAIL-1")
    cpmcs_sim.delete("/_sim/faults").raise_for_status()

    assert await listed_ids(hub, status="succeeded") == [succeeded_id]
    assert await listed_ids(hub, status="failed") == [failed_id]
    assert (await listing(hub, status="in_progress"))["total"] == 0


async def test_an_unknown_status_is_a_422_naming_status(hub: HubUnderTest) -> None:
    problem = await refused_listing(hub, status="done")

    assert [error["field"] for error in problem["errors"]] == ["status"]


async def test_instances_are_found_by_business_key(hub: HubUnderTest) -> None:
    await enroll(hub, "KEY-A")
    wanted_id = await enroll(hub, "KEY-B", "KEY-C")
    await enroll(hub, "KEY-D")

    assert await listed_ids(hub, key="KEY-C") == [wanted_id]
    assert (await listing(hub, key="KEY-Z"))["total"] == 0
    # Exact, not a prefix: "KEY" is part of every messageId above.
    assert (await listing(hub, key="KEY"))["total"] == 0


async def test_instances_are_found_by_time_received(hub: HubUnderTest) -> None:
    instance_id = await enroll(hub, "TIME-1")
    [item] = (await listing(hub))["items"]
    received_at = datetime.fromisoformat(item["received_at"])
    before = (received_at - timedelta(minutes=1)).isoformat()
    after = (received_at + timedelta(minutes=1)).isoformat()

    assert await listed_ids(hub, received_from=before) == [instance_id]
    assert await listed_ids(hub, received_to=after) == [instance_id]
    assert await listed_ids(hub, received_from=before, received_to=after) == [instance_id]
    assert await listed_ids(hub, received_to=before) == []
    assert await listed_ids(hub, received_from=after) == []


async def test_a_time_window_in_the_future_finds_nothing(hub: HubUnderTest) -> None:
    await enroll(hub, "FUTURE-1")
    tomorrow = datetime.now(UTC) + timedelta(days=1)

    page = await listing(hub, received_from=tomorrow.isoformat())

    assert (page["total"], page["items"]) == (0, [])


# Only on SQLite: PostgreSQL's timestamptz compares instants, so there the test passes.
@pytest.mark.parametrize("hours_east", [5, -5], ids=["east-of-utc", "west-of-utc"])
async def test_a_time_with_another_offset_means_the_same_moment(
    hub: HubUnderTest, hours_east: int
) -> None:
    # An operator may well write local time with its offset; it names the same instant.
    instance_id = await enroll(hub, "ZONE-1")
    [item] = (await listing(hub))["items"]
    received_at = datetime.fromisoformat(item["received_at"])
    local = timezone(timedelta(hours=hours_east))
    before = (received_at - timedelta(minutes=1)).astimezone(local).isoformat()
    after = (received_at + timedelta(minutes=1)).astimezone(local).isoformat()

    assert await listed_ids(hub, received_from=before, received_to=after) == [instance_id]
    assert await listed_ids(hub, received_from=after) == []
    assert await listed_ids(hub, received_to=before) == []


@pytest.mark.parametrize("moment", ["yesterday", "0.0", "1764000000", "2026-12-01T08:00:00"])
async def test_a_time_that_is_not_a_date_time_is_a_422(hub: HubUnderTest, moment: str) -> None:
    problem = await refused_listing(hub, received_from=moment)

    assert [error["field"] for error in problem["errors"]] == ["received_from"]


async def test_newest_instance_comes_first(hub: HubUnderTest) -> None:
    sent = [await enroll(hub, f"ORDER-{n}") for n in range(4)]

    assert await listed_ids(hub) == list(reversed(sent))


async def test_pages_cover_every_instance_once(hub: HubUnderTest) -> None:
    sent = [await enroll(hub, f"PAGE-{n}") for n in range(5)]

    pages = [await listing(hub, limit=2, offset=offset) for offset in (0, 2, 4)]

    assert [page["total"] for page in pages] == [5, 5, 5]
    assert [(page["limit"], page["offset"]) for page in pages] == [(2, 0), (2, 2), (2, 4)]
    assert [len(page["items"]) for page in pages] == [2, 2, 1]
    assert [item["id"] for page in pages for item in page["items"]] == list(reversed(sent))
    past_the_end = await listing(hub, limit=2, offset=5)
    assert (past_the_end["total"], past_the_end["items"]) == (5, [])


async def test_the_default_page_is_50(hub: HubUnderTest) -> None:
    page = await listing(hub)

    assert (page["limit"], page["offset"]) == (50, 0)


async def test_the_largest_page_is_500(hub: HubUnderTest) -> None:
    assert (await listing(hub, limit=500))["limit"] == 500

    problem = await refused_listing(hub, limit=501)

    assert [error["field"] for error in problem["errors"]] == ["limit"]


@pytest.mark.parametrize(
    ("param", "value"), [("limit", 0), ("offset", -1), ("limit", "ten")], ids=str
)
async def test_a_bad_page_is_a_422_naming_it(
    hub: HubUnderTest, param: str, value: str | int
) -> None:
    problem = await refused_listing(hub, **{param: value})

    assert [error["field"] for error in problem["errors"]] == [param]


async def test_an_unknown_instance_is_a_404_problem(hub: HubUnderTest) -> None:
    reply = await hub.client.get("/ops/instances/no-such-instance", auth=OPERATOR_AUTH)

    assert reply.status_code == 404
    assert reply.headers["content-type"] == PROBLEM_JSON
    problem = reply.json()
    assert problem["status"] == 404
    assert "no-such-instance" in problem["detail"]


async def test_an_instance_shows_each_call_in_order(hub: HubUnderTest) -> None:
    message_ids = [f"ACT-{n}" for n in range(3)]
    instance_id = await enroll(hub, *message_ids)

    reply = await hub.client.get(f"/ops/instances/{instance_id}", auth=OPERATOR_AUTH)

    assert reply.status_code == 200
    detail = reply.json()
    assert detail["id"] == instance_id
    assert detail["flow"] == FLOW_KEY
    assert detail["flow_identifier"] == FLOW_IDENTIFIER
    assert detail["caller"] == "derms"
    activities = detail["activities"]
    assert [a["seq"] for a in activities] == [1, 2, 3]
    assert {(a["target"], a["operation"], a["http_status"]) for a in activities} == {
        ("CPMCS", "enrollProgram", 200)
    }
    assert {a["method"] for a in activities} == {"POST"}
    assert all(a["path"].endswith("/programEnrollments/enroll") for a in activities)
    assert all(isinstance(a["duration_ms"], float) and a["duration_ms"] > 0 for a in activities)
    moments = [datetime.fromisoformat(a["at"]) for a in activities]
    assert moments == sorted(moments)
    received_at = datetime.fromisoformat(detail["received_at"])
    finished_at = datetime.fromisoformat(detail["finished_at"])
    assert received_at <= moments[0] and moments[-1] <= finished_at
    assert {k["value"] for k in detail["business_keys"]} >= set(message_ids)


async def test_a_failed_call_shows_its_status_and_error(
    hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    cpmcs_sim.put("/_sim/faults", json={"status_code": 500}).raise_for_status()
    instance_id = await enroll(hub, "ACT-FAIL")

    detail = (await hub.client.get(f"/ops/instances/{instance_id}", auth=OPERATOR_AUTH)).json()

    assert detail["status"] == "failed"
    [call] = [a for a in detail["activities"] if a["target"] == "CPMCS"]
    assert (call["operation"], call["http_status"]) == ("enrollProgram", 500)
    assert "500" in call["error"]


async def test_only_a_file_run_has_an_acknowledgement_to_send_again(hub: HubUnderTest) -> None:
    instance_id = await enroll(hub, "ACK-AGAIN")

    reply = await hub.client.post(
        f"/ops/instances/{instance_id}/acknowledgement", auth=OPERATOR_AUTH
    )

    assert reply.status_code == 409
    assert reply.headers["content-type"] == PROBLEM_JSON
    assert "not a file flow's" in reply.json()["detail"]


async def test_healthz_answers_without_a_credential(hub: HubUnderTest) -> None:
    reply = await hub.client.get("/healthz")

    assert reply.status_code == 200
    assert reply.json() == {"status": "ok"}


async def test_readyz_reports_the_database(hub: HubUnderTest) -> None:
    reply = await hub.client.get("/readyz")

    assert reply.status_code == 200
    assert reply.json() == {"status": "ready", "database": "ok"}


@pytest.fixture
async def hub_without_database(
    cpmcs_server: ServerThread,
    derms_server: ServerThread,
    mailbox: SmtpSink,
    callers: dict[str, Caller],
    default_lookups: Lookups,
) -> AsyncIterator[httpx.AsyncClient]:
    """The hub pointed at a PostgreSQL port that nothing listens on."""
    gone = f"postgresql://postgres@127.0.0.1:{free_port()}/gone"
    settings = hub_settings(gone, cpmcs_server.url, derms_server.url, mailbox, callers)
    built = build_hub(settings, default_lookups)
    transport = httpx.ASGITransport(app=create_app(built))
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
        yield client
    await built.aclose()


async def test_readyz_is_503_when_the_database_is_gone(
    hub_without_database: httpx.AsyncClient,
) -> None:
    ready = await hub_without_database.get("/readyz")
    alive = await hub_without_database.get("/healthz")

    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    # Alive but not ready: an orchestrator should stop routing to it, not restart it.
    assert alive.status_code == 200


async def test_docs_are_served_as_html(hub: HubUnderTest) -> None:
    reply = await hub.client.get("/docs")

    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in reply.text


async def test_openapi_lists_the_routes_and_how_to_authenticate(hub: HubUnderTest) -> None:
    reply = await hub.client.get("/openapi.json")

    assert reply.status_code == 200
    document = reply.json()
    assert "post" in document["paths"]["/enroll-to-dacs"]
    assert "get" in document["paths"]["/ops/instances"]
    assert "get" in document["paths"]["/ops/instances/{instance_id}"]
    send_again = document["paths"]["/ops/instances/{instance_id}/acknowledgement"]["post"]
    assert {"202", "404", "409"} <= set(send_again["responses"])
    schemes = document["components"]["securitySchemes"]
    assert schemes["HTTPBasic"] == {"type": "http", "scheme": "basic"}
    assert schemes["HTTPBearer"] == {"type": "http", "scheme": "bearer"}
    required = document["paths"]["/enroll-to-dacs"]["post"]["security"]
    assert {name for requirement in required for name in requirement} == {
        "HTTPBasic",
        "HTTPBearer",
    }
    assert "security" not in document["paths"]["/healthz"]["get"]


@pytest.mark.parametrize(
    "route", ["/device-reservation-to-dacs", "/device-outcome-to-dacs", "/network-model-to-dacs"]
)
async def test_openapi_describes_the_file_routes_form(hub: HubUnderTest, route: str) -> None:
    document = (await hub.client.get("/openapi.json")).json()

    body = document["paths"][route]["post"]["requestBody"]
    form = body["content"]["multipart/form-data"]["schema"]
    assert body["required"] is True
    assert form["required"] == ["message", "file"]
    assert form["properties"]["message"]["type"] == "string"
    assert form["properties"]["file"]["contentMediaType"] == "application/octet-stream"


@pytest.mark.parametrize("offset", ["9223372036854775808", "100001", "9" * 5000])
async def test_an_offset_past_what_a_search_pages_to_is_a_problem(
    hub: HubUnderTest, offset: str
) -> None:
    reply = await hub.client.get("/ops/instances", params={"offset": offset}, auth=OPERATOR_AUTH)

    assert reply.status_code == 422, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["errors"][0]["field"] == "offset"


async def test_openapi_names_every_answer_a_guarded_route_may_give(hub: HubUnderTest) -> None:
    document = (await hub.client.get("/openapi.json")).json()

    for path in (
        "/ops/instances/{instance_id}",
        "/ops/instances/{instance_id}/resubmit",
        "/ops/instances/{instance_id}/set-aside.csv",
        "/ops/schedules/{flow}/run",
    ):
        [operation] = document["paths"][path].values()
        assert {"401", "404", "422", "503"} <= set(operation["responses"]), path
    enroll = document["paths"]["/enroll-to-dacs"]["post"]["responses"]
    assert {"401", "413", "415", "422", "500", "503"} <= set(enroll)
    assert "400" in document["paths"]["/device-reservation-to-dacs"]["post"]["responses"]


async def test_openapi_describes_every_error_as_a_problem(hub: HubUnderTest) -> None:
    document = (await hub.client.get("/openapi.json")).json()

    problem = {"$ref": "#/components/schemas/Problem"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                if int(status) >= 400 and path != "/readyz":
                    assert answer["content"] == {PROBLEM_JSON: {"schema": problem}}, (
                        f"{method} {path} {status}"
                    )
    schemas = document["components"]["schemas"]
    assert set(schemas["Problem"]["required"]) == {"type", "title", "status", "detail"}
    assert "HTTPValidationError" not in schemas


async def test_openapi_gives_date_times_their_format(hub: HubUnderTest) -> None:
    schemas = (await hub.client.get("/openapi.json")).json()["components"]["schemas"]

    def formats(model: str, field: str) -> list[str | None]:
        found = schemas[model]["properties"][field]
        return [option.get("format") for option in found.get("anyOf", [found])]

    assert "date-time" in formats("StageStatusMessage", "endDateTimeISO")
    assert "date-time" in formats("MsgAckBody", "whenISO")
    assert "date-time" in formats("UnavailabilityDetails", "startDateTime")
    assert "date-time" in formats("InstanceSummary", "received_at")


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/ops/instances/" + "a" * 37, {}),
        ("/ops/instances/bad%20id", {}),
        ("/ops/instances", {"key": "k" * 201}),
        ("/ops/instances", {"key": "NUL\x00"}),
        ("/ops/instances", {"flow": "f" * 5000}),
    ],
    ids=["id too long", "id with a space", "key too long", "key with NUL", "unknown flow"],
)
async def test_a_parameter_out_of_bounds_is_a_422_problem(
    hub: HubUnderTest, path: str, params: dict[str, str]
) -> None:
    reply = await hub.client.get(path, params=params, auth=OPERATOR_AUTH)

    assert reply.status_code == 422, reply.text
    assert reply.headers["content-type"] == PROBLEM_JSON


def nearest_rank(durations: list[float], percent: int) -> float:
    ordered = sorted(durations)
    return ordered[math.ceil(len(ordered) * percent / 100) - 1]


async def latency(hub: HubUnderTest, **params: str) -> dict[str, Any]:
    reply = await hub.client.get("/ops/latency", params=params, auth=OPERATOR_AUTH)
    assert reply.status_code == 200, reply.text
    answer: dict[str, Any] = reply.json()
    return answer


async def test_latency_per_target_is_the_median_and_95th_percentile_of_the_window_calls(
    hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    instance_ids = [await enroll(hub, *(f"LAT-{n}-{m}" for m in range(n + 1))) for n in range(4)]
    cpmcs_sim.put("/_sim/faults", json={"status_code": 503}).raise_for_status()
    instance_ids.append(await enroll(hub, "LAT-FAIL"))
    cpmcs_sim.delete("/_sim/faults").raise_for_status()
    # Two days ago: in the last 7 days, not in the last 24 hours.
    old_id = await enroll(hub, "LAT-OLD")
    async with hub.hub.store.engine.begin() as connection:
        await connection.execute(
            update(ActivityRow)
            .where(ActivityRow.instance_id == old_id)
            .values(at=datetime.now(UTC) - timedelta(days=2))
        )
    calls = [a for i in instance_ids for a in (await hub.detail(i))["activities"]]
    old_calls = (await hub.detail(old_id))["activities"]
    durations = [a["duration_ms"] for a in calls]
    week = [a["duration_ms"] for a in calls + old_calls]

    day = await latency(hub)
    last_week = await latency(hub, window="7d")

    assert len(calls) == 11
    assert day["window"] == "24h"
    assert (day["newest_only"], last_week["newest_only"]) == (False, False)
    assert datetime.fromisoformat(day["since"]) < datetime.now(UTC) - timedelta(hours=23)
    assert day["targets"] == [
        {
            "target": "CPMCS",
            "calls": 11,
            "failed": 1,
            "p50_ms": nearest_rank(durations, 50),
            "p95_ms": nearest_rank(durations, 95),
        }
    ]
    assert last_week["targets"] == [
        {
            "target": "CPMCS",
            "calls": 12,
            "failed": 1,
            "p50_ms": nearest_rank(week, 50),
            "p95_ms": nearest_rank(week, 95),
        }
    ]


async def test_latency_of_a_window_with_more_calls_than_it_reads_is_of_the_newest(
    hub: HubUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As with more than 20,000 calls in the window, which a test would take minutes to make.
    monkeypatch.setattr(overview, "LATENCY_CALLS", 5)
    instance_ids = [await enroll(hub, f"NEWEST-{n}") for n in range(8)]
    calls = [a for i in instance_ids for a in (await hub.detail(i))["activities"]]
    newest = sorted(calls, key=lambda a: a["at"])[-5:]
    durations = [a["duration_ms"] for a in newest]

    day = await latency(hub)

    assert len(calls) == 8
    assert day["newest_only"] is True
    assert day["targets"] == [
        {
            "target": "CPMCS",
            "calls": 5,
            "failed": 0,
            "p50_ms": nearest_rank(durations, 50),
            "p95_ms": nearest_rank(durations, 95),
        }
    ]


async def test_latency_over_a_window_without_calls_lists_no_target(hub: HubUnderTest) -> None:
    assert (await latency(hub, window="1h"))["targets"] == []


async def test_openapi_describes_the_latency_answer_and_its_windows(hub: HubUnderTest) -> None:
    document = (await hub.client.get("/openapi.json")).json()

    latency = document["paths"]["/ops/latency"]["get"]
    [window] = latency["parameters"]
    assert (window["name"], window["schema"]["enum"]) == ("window", ["1h", "24h", "7d"])
    answer = latency["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/LatencyByTarget"}
    target = document["components"]["schemas"]["TargetLatency"]
    assert set(target["properties"]) == {"target", "calls", "failed", "p50_ms", "p95_ms"}


async def test_a_latency_window_not_offered_is_a_422_naming_window(hub: HubUnderTest) -> None:
    reply = await hub.client.get("/ops/latency", params={"window": "2d"}, auth=OPERATOR_AUTH)

    assert reply.status_code == 422
    assert reply.headers["content-type"] == PROBLEM_JSON
    assert "window" in reply.text
