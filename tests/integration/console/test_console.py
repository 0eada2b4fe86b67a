"""The console over HTTP as a browser would use it: login, CSRF, cookies, pages, edits."""

from __future__ import annotations

import asyncio
import html
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncssh
import httpx
import pytest
from sqlalchemy import func, select, update

from derms_bridge.console.pages import dashboard
from derms_bridge.lookups import PREFIX, Lookups
from derms_bridge.sandbox.object_store import write_api_signing_key
from derms_bridge.sandbox.servers import free_port
from derms_bridge.settings import Segments, Smtp
from derms_bridge.settings.connections import (
    BasicAuth,
    Connection,
    Connections,
    OAuth2ClientCredentials,
)
from derms_bridge.settings.file_storage import (
    FileStorageSettings,
    FtpSettings,
    OciObjectStorageSettings,
    S3Settings,
    SftpSettings,
)
from derms_bridge.store import overview
from derms_bridge.store.instances import as_utc
from derms_bridge.store.processes import ProcessStore
from derms_bridge.store.tables import ActivityRow, FileJobRow, InstanceRow, SegmentRow
from tests.conftest import DERMS_AUTH, OPERATOR_AUTH, PASSWORDS
from tests.csv_files import Corruption, write_reservation_csv
from tests.integration.api.test_instance_paging import FLOW, newest_first, stored
from tests.integration.console.conftest import (
    ConsoleUnderTest,
    chart_bars,
    console_for,
    console_settings,
    copy_of_lookups,
    csrf_of,
    page_text,
    table_rows,
)
from tests.payloads import enrollment_message, enrollment_request

SEGMENT_TITLE = re.compile(r"<title>([a-z]+): (\d+) segments?</title>")
PAGES = (
    "/console/",
    "/console/instances",
    "/console/lookups",
    "/console/connections",
    "/console/schedules",
)


async def enroll(console: ConsoleUnderTest, message_id: str) -> str:
    message = enrollment_message(enrollment_request(message_id))
    reply = await console.client.post("/enroll-to-dacs", json=message, auth=DERMS_AUTH)
    return reply.headers["X-Instance-Id"]


async def failed_enrollment(
    console: ConsoleUnderTest, cpmcs_sim: httpx.Client, message_id: str
) -> str:
    cpmcs_sim.put("/_sim/faults", json={"status_code": 503}).raise_for_status()
    instance_id = await enroll(console, message_id)
    cpmcs_sim.delete("/_sim/faults").raise_for_status()
    return instance_id


@pytest.mark.parametrize("path", PAGES)
async def test_every_page_sends_a_stranger_to_the_login(
    console: ConsoleUnderTest, path: str
) -> None:
    reply = await console.client.get(path)

    assert reply.status_code == 303
    assert reply.headers["location"].startswith("/console/login?next=")


async def test_htmx_asks_a_stranger_to_go_to_the_login(console: ConsoleUnderTest) -> None:
    reply = await console.client.get("/console/instances", headers={"HX-Request": "true"})

    assert reply.headers["HX-Redirect"] == "/console/login"


async def test_an_operator_logs_in_and_sees_the_dashboard(console: ConsoleUnderTest) -> None:
    reply = await console.log_in()

    assert (reply.status_code, reply.headers["location"]) == (303, "/console/")
    dashboard = await console.client.get("/console/")
    assert dashboard.status_code == 200
    assert "Failing now" in dashboard.text


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("operator", "not-the-password"),
        ("nobody", PASSWORDS["operator"]),
        ("derms", PASSWORDS["derms"]),
    ],
    ids=["wrong-password", "unknown-user", "not-an-operator"],
)
async def test_a_wrong_login_is_refused_saying_only_that(
    console: ConsoleUnderTest, username: str, password: str
) -> None:
    reply = await console.log_in(username, password)

    assert reply.status_code == 401
    assert "Wrong username or password." in reply.text
    assert (await console.client.get("/console/")).status_code == 303


async def test_repeated_failures_pause_logins_even_with_the_right_password(
    console: ConsoleUnderTest,
) -> None:
    allowed = console.settings.login_throttle.per_user_and_address
    for _ in range(allowed):
        assert (await console.log_in(password="guess")).status_code == 401

    paused = await console.log_in()

    assert paused.status_code == 429
    assert "Too many failed logins" in paused.text


async def test_failed_logins_count_across_hub_processes(
    console: ConsoleUnderTest, default_lookups: Lookups
) -> None:
    allowed = console.settings.login_throttle.per_user_and_address
    for _ in range(allowed - 1):
        assert (await console.log_in(password="guess")).status_code == 401

    async for other in console_for(console.settings, default_lookups, "http://hub.test"):
        # Another hub process on the same database: the last failure allowed, then paused.
        assert (await other.log_in(password="guess")).status_code == 401
        assert (await other.log_in()).status_code == 429
    assert (await console.log_in()).status_code == 429


async def test_logging_out_ends_the_session(console: ConsoleUnderTest) -> None:
    await console.log_in()

    reply = await console.post("/console/logout")

    assert (reply.status_code, reply.headers["location"]) == (303, "/console/login")
    assert (await console.client.get("/console/")).status_code == 303


async def test_a_copy_of_the_cookie_is_refused_after_logout_by_every_hub_process(
    console: ConsoleUnderTest, default_lookups: Lookups
) -> None:
    await console.log_in()
    copied = console.client.cookies["derms_console_session"]

    await console.post("/console/logout")

    # Another hub process on the same database, shown the copy.
    async for other in console_for(console.settings, default_lookups, "http://hub.test"):
        other.client.cookies.set("derms_console_session", copied, path="/console")
        assert (await other.client.get("/console/")).status_code == 303
        other.client.cookies.clear()
        await other.log_in()
        assert (await other.client.get("/console/")).status_code == 200
    console.client.cookies.set("derms_console_session", copied, path="/console")
    assert (await console.client.get("/console/")).status_code == 303


async def test_a_tampered_session_cookie_counts_as_none(console: ConsoleUnderTest) -> None:
    await console.log_in()
    cookie = console.client.cookies["derms_console_session"]
    console.client.cookies.clear()
    # A character well inside the signature: the last ones of base64 can carry padding
    # bits, which a decoder ignores.
    at = len(cookie) - 5
    tampered = cookie[:at] + ("A" if cookie[at] != "A" else "B") + cookie[at + 1 :]
    console.client.cookies.set("derms_console_session", tampered, path="/console")

    assert (await console.client.get("/console/")).status_code == 303


@pytest.mark.parametrize(
    "path", ["/console/logout", "/console/lookups/ConfigProps", "/console/bulk-resubmit"]
)
@pytest.mark.parametrize("token", [None, "wrong", "from-another-session"])
async def test_a_form_without_the_sessions_csrf_token_is_refused(
    console: ConsoleUnderTest, path: str, token: str | None
) -> None:
    await console.log_in()
    if token == "from-another-session":
        stranger = httpx.AsyncClient(
            transport=console.client._transport, base_url="http://hub.test"
        )
        async with stranger:
            token = csrf_of((await stranger.get("/console/login")).text)
    data = {"csrf_token": token} if token else {}

    reply = await console.client.post(path, data=data)

    assert reply.status_code == 403
    assert "Nothing was done" in reply.text
    # Still logged in: the refusal did not log the operator out.
    assert (await console.client.get("/console/")).status_code == 200


async def test_an_htmx_post_with_a_wrong_token_header_is_refused(
    console: ConsoleUnderTest, cpmcs_sim: httpx.Client
) -> None:
    await console.log_in()
    instance_id = await failed_enrollment(console, cpmcs_sim, "CSRF-1")

    reply = await console.client.post(
        f"/console/instances/{instance_id}/resubmit",
        headers={"HX-Request": "true", "X-CSRF-Token": "wrong"},
    )

    assert reply.status_code == 403
    assert (await console.hub.store.get(instance_id)).resubmitted_as == []  # type: ignore[union-attr]


async def test_the_login_form_itself_needs_its_csrf_token(console: ConsoleUnderTest) -> None:
    await console.client.get("/console/login")

    reply = await console.client.post(
        "/console/login", data={"username": "operator", "password": PASSWORDS["operator"]}
    )

    assert reply.status_code == 403


def set_cookie_of(reply: httpx.Response) -> str:
    [header] = [v for k, v in reply.headers.multi_items() if k == "set-cookie"]
    return header.lower()


async def test_the_session_cookie_is_httponly_samesite_and_not_secure_over_http(
    console: ConsoleUnderTest,
) -> None:
    cookie = set_cookie_of(await console.log_in())

    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "path=/console" in cookie
    assert "secure" not in cookie


async def login_cookie(
    settings_console: dict[str, object],
    base_url: str,
    headers: dict[str, str],
    console: ConsoleUnderTest,
    tmp_path: Path,
) -> str:
    settings = console_settings(
        console.settings, copy_of_lookups(tmp_path / "l2"), **settings_console
    )
    async for other in console_for(settings, console.hub.lookups.current, base_url):
        other.client.headers.update(headers)
        # The login page's own cookie: a Secure one would not come back over plain HTTP.
        return set_cookie_of(await other.client.get("/console/login"))
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    ("behind_proxy", "base_url", "headers", "secure"),
    [
        (False, "https://hub.test", {}, True),
        (False, "http://hub.test", {"X-Forwarded-Proto": "https"}, False),
        (True, "http://hub.test", {"X-Forwarded-Proto": "https"}, True),
        (True, "http://hub.test", {}, False),
    ],
    ids=["tls", "untrusted-forwarded-proto", "proxy-with-tls", "proxy-without-tls"],
)
async def test_the_session_cookie_is_secure_when_the_request_came_over_tls(
    console: ConsoleUnderTest,
    tmp_path: Path,
    behind_proxy: bool,
    base_url: str,
    headers: dict[str, str],
    secure: bool,
) -> None:
    cookie = await login_cookie(
        {"behind_proxy": behind_proxy}, base_url, headers, console, tmp_path
    )

    assert ("; secure" in cookie) is secure


async def test_a_session_expires(console: ConsoleUnderTest, tmp_path: Path) -> None:
    settings = console_settings(
        console.settings, copy_of_lookups(tmp_path / "l3"), session_hours=3 / 3600
    )
    async for short in console_for(settings, console.hub.lookups.current, "http://hub.test"):
        await short.log_in()
        assert (await short.client.get("/console/")).status_code == 200
        await asyncio.sleep(4.1)
        assert (await short.client.get("/console/")).status_code == 303


async def test_without_a_session_secret_the_console_says_how_to_turn_it_on(
    console: ConsoleUnderTest,
) -> None:
    settings = console.settings.model_copy(
        update={"console": console.settings.console.model_copy(update={"session_secret": None})}
    )
    async for off in console_for(settings, console.hub.lookups.current, "http://hub.test"):
        reply = await off.client.get("/console/")
        assert reply.status_code == 503
        assert "console.session_secret" in reply.text


async def test_the_dashboard_counts_each_flows_instances(
    console: ConsoleUnderTest, cpmcs_sim: httpx.Client
) -> None:
    await enroll(console, "DASH-OK-1")
    await enroll(console, "DASH-OK-2")
    failed_id = await failed_enrollment(console, cpmcs_sim, "DASH-FAIL-1")
    await console.log_in()

    page = (await console.client.get("/console/", params={"window": "1h"})).text

    # By flow number: received, succeeded, failed, resolved, rejected, in progress, skipped.
    counts = page.split('<table class="counts">', 1)[1].split("</table>", 1)[0]
    rows = {row[0]: row[2:] for row in table_rows(counts)}
    assert rows["1"] == ["3", "2", "1", "0", "0", "0", "0"]
    assert rows["2"] == ["0", "0", "0", "0", "0", "0", "0"]
    assert set(rows) == {"#", *(str(n) for n in range(1, 21))}
    assert f"/console/instances/{failed_id}" in page
    assert "CPMCS answered HTTP 503" in page
    assert "<title>Dashboard · derms-bridge console</title>" in page


async def test_the_dashboard_says_when_its_latency_is_of_the_windows_newest_calls(
    console: ConsoleUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    await enroll(console, "LATENCY-1")
    await enroll(console, "LATENCY-2")
    await console.log_in()
    all_calls = page_text((await console.client.get("/console/")).text)
    monkeypatch.setattr(overview, "LATENCY_CALLS", 1)
    monkeypatch.setattr(dashboard, "LATENCY_CALLS", 1)

    newest_only = page_text((await console.client.get("/console/")).text)

    assert "newest" not in all_calls
    assert "the newest 1 calls of the window" in newest_only


async def test_the_dashboard_charts_each_hours_messages_as_the_api_counts_them(
    console: ConsoleUnderTest, cpmcs_sim: httpx.Client
) -> None:
    await enroll(console, "CHART-OK-1")
    await enroll(console, "CHART-OK-2")
    await failed_enrollment(console, cpmcs_sim, "CHART-FAIL-1")
    await console.log_in()

    page = (await console.client.get("/console/", params={"window": "24h"})).text

    bars = chart_bars(page)
    assert {(flow, status) for flow, status, _, _ in bars} == {
        ("Enrollment Request", "succeeded"),
        ("Enrollment Request", "failed"),
    }
    assert sum(n for *_, n in bars) == 3
    for _, status, hour, count in bars:
        listed = await console.client.get(
            "/ops/instances",
            params={
                "flow": "enrollment_request",
                "status": status,
                "received_from": hour.isoformat(),
                "received_to": (hour + timedelta(hours=1)).isoformat(),
                "limit": 1,
            },
            auth=OPERATOR_AUTH,
        )
        assert listed.json()["total"] == count


async def test_the_dashboard_says_when_there_is_nothing_to_chart(
    console: ConsoleUnderTest,
) -> None:
    await console.log_in()
    page = (await console.client.get("/console/", params={"window": "1h"})).text
    assert chart_bars(page) == []
    assert "No message in the last 1h." in page


async def test_the_dashboard_shows_the_hub_processes_heard_from(
    console: ConsoleUnderTest,
) -> None:
    stopped = ProcessStore(console.hub.store)
    await stopped.beat("old-host:1:gone01", "worker")
    await stopped.stopped("old-host:1:gone01")
    console.hub.liveness.start()
    try:
        await console.log_in()
        page = (await console.client.get("/console/")).text
    finally:
        await console.hub.liveness.stop()

    processes = page.split('<table class="processes">', 1)[1].split("</table>", 1)[0]
    [header, row] = table_rows(processes)
    assert header == ["process", "started as", "since", "last heard"]
    assert row[:2] == [console.hub.liveness.name, "serve"]


async def test_an_instance_is_found_by_its_business_identifier(
    console: ConsoleUnderTest, cpmcs_sim: httpx.Client
) -> None:
    await enroll(console, "FIND-OTHER")
    wanted = await failed_enrollment(console, cpmcs_sim, "FIND-ME")
    await console.log_in()

    page = await console.client.get(
        "/console/instances", params={"key": "FIND-ME"}, headers={"HX-Request": "true"}
    )

    assert page.status_code == 200
    assert "<html" not in page.text
    assert f"/console/instances/{wanted}" in page.text
    assert '<span id="total">1</span>' in page.text


async def test_instances_are_filtered_by_flow_and_status_and_paged(
    console: ConsoleUnderTest, cpmcs_sim: httpx.Client
) -> None:
    for n in range(3):
        await enroll(console, f"PAGED-{n}")
    await failed_enrollment(console, cpmcs_sim, "PAGED-FAIL")
    await console.log_in()

    succeeded = await console.client.get(
        "/console/instances", params={"flow": "enrollment_request", "status": "succeeded"}
    )
    other_flow = await console.client.get("/console/instances", params={"flow": "enrollment_sync"})
    bad = await console.client.get("/console/instances", params={"status": "done"})

    assert '<span id="total">3</span>' in succeeded.text
    assert '<span id="total">0</span>' in other_flow.text
    assert "No instance matches." in page_text(other_flow.text)
    assert "there is no status &#39;done&#39;" in bad.text


async def test_older_pages_are_read_from_where_the_page_before_ended(
    console: ConsoleUnderTest,
) -> None:
    made = newest_first(await stored(console.hub.store, 30))
    await console.log_in()

    first = (await console.client.get("/console/instances", params={"flow": FLOW})).text
    older = html.unescape(re.findall(r'href="([^"]+)">older', first)[0])
    second = (await console.client.get(older)).text
    tampered = await console.client.get(
        "/console/instances", params={"flow": FLOW, "page": "2", "cursor": "fA"}
    )

    assert "cursor=" in older
    assert [f"/console/instances/{each}" in first for each in made] == [True] * 25 + [False] * 5
    assert [f"/console/instances/{each}" in second for each in made] == [False] * 25 + [True] * 5
    assert "page 2 of 2" in page_text(second)
    assert "older" not in page_text(second)
    assert "page 1 of 2" in page_text(tampered.text)
    assert "was not made by this console" in tampered.text


async def test_the_instance_page_shows_activities_error_and_resubmits(
    console: ConsoleUnderTest, cpmcs_sim: httpx.Client
) -> None:
    failed_id = await failed_enrollment(console, cpmcs_sim, "PAGE-1")
    await console.log_in()

    page = (await console.client.get(f"/console/instances/{failed_id}")).text
    resubmitted = await console.client.post(
        f"/console/instances/{failed_id}/resubmit",
        headers={"HX-Request": "true", "X-CSRF-Token": console.csrf_token},
    )

    assert "enrollProgram" in page
    assert "CPMCS answered HTTP 503" in page
    assert "PAGE-1" in page
    assert resubmitted.status_code == 200
    assert "succeeded" in resubmitted.text
    [new_id] = (await console.hub.store.get(failed_id)).resubmitted_as  # type: ignore[union-attr]
    assert f"/console/instances/{new_id}" in resubmitted.text
    new_page = (await console.client.get(f"/console/instances/{new_id}")).text
    assert f"/console/instances/{failed_id}" in new_page


async def test_the_instance_page_shows_the_trace_its_caller_began(
    console: ConsoleUnderTest,
) -> None:
    # Tracing is off in this hub: the caller's trace is continued, not exported.
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    traced = await console.client.post(
        "/enroll-to-dacs",
        json=enrollment_message(enrollment_request("PAGE-TRACE")),
        auth=DERMS_AUTH,
        headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"},
    )
    untraced_id = await enroll(console, "PAGE-NO-TRACE")
    await console.log_in()

    page = (await console.client.get(f"/console/instances/{traced.headers['X-Instance-Id']}")).text
    untraced_page = (await console.client.get(f"/console/instances/{untraced_id}")).text

    assert f'<code id="trace-id" title="find it in the tracing backend">{trace_id}</code>' in page
    assert 'id="trace-id"' not in untraced_page


RESERVATION_MESSAGE = {
    "messageId": "CONSOLE-ACK",
    "eventId": "EV-1",
    "eventStartDateTime": "2026-12-01T14:00:00Z",
    "eventEndDateTime": "2026-12-01T18:00:00Z",
}


async def test_a_finished_files_acknowledgement_is_sent_again_from_its_page(
    console: ConsoleUnderTest, derms_sim: httpx.Client, cpmcs_sim: httpx.Client, tmp_path: Path
) -> None:
    sent = await console.client.post(
        "/device-reservation-to-dacs",
        data={"message": json.dumps(RESERVATION_MESSAGE)},
        files={"file": ("r.csv", write_reservation_csv(tmp_path / "r.csv", 5).read_bytes())},
        auth=DERMS_AUTH,
    )
    file_id = sent.json()["instanceId"]
    while await console.hub.workers.worker.step():
        pass
    enrollment_id = await failed_enrollment(console, cpmcs_sim, "PAGE-ACK")
    await console.log_in()

    page = (await console.client.get(f"/console/instances/{file_id}")).text
    enrollment_page = (await console.client.get(f"/console/instances/{enrollment_id}")).text
    asked = await console.client.post(
        f"/console/instances/{file_id}/acknowledgement",
        headers={"HX-Request": "true", "X-CSRF-Token": console.csrf_token},
    )
    refused = await console.client.post(
        f"/console/instances/{enrollment_id}/acknowledgement",
        headers={"HX-Request": "true", "X-CSRF-Token": console.csrf_token},
    )
    while await console.hub.workers.worker.step():
        pass

    assert "Send the acknowledgement again" in page
    assert "Send the acknowledgement again" not in enrollment_page
    assert asked.status_code == 200
    assert "The acknowledgement goes to DERMS again" in page_text(asked.text)
    assert refused.status_code == 409
    assert "is not a file flow" in page_text(refused.text)
    received = derms_sim.get("/_sim/state/received").json()["/device-reservation-ack"]
    assert len(received) == 2
    assert received[0] == received[1]


async def test_the_instance_page_of_a_file_offers_its_rows_set_aside(
    console: ConsoleUnderTest, tmp_path: Path
) -> None:
    corrupt = {2: Corruption.LONG_NIC_ID}
    csv_file = write_reservation_csv(tmp_path / "r.csv", 5, corrupt=corrupt)
    message = {
        "messageId": "RSV-PAGE",
        "eventId": "EV-1",
        "eventStartDateTime": "2026-12-01T14:00:00Z",
        "eventEndDateTime": "2026-12-01T18:00:00Z",
    }
    sent = await console.client.post(
        "/device-reservation-to-dacs",
        data={"message": json.dumps(message)},
        files={"file": ("r.csv", csv_file.read_bytes(), "text/csv")},
        auth=DERMS_AUTH,
    )
    while await console.hub.workers.worker.step():
        pass
    await console.log_in()

    instance_id = sent.json()["instanceId"]
    page = (await console.client.get(f"/console/instances/{instance_id}")).text
    link = f"/console/instances/{instance_id}/set-aside.csv"
    download = await console.client.get(link)

    assert "1 row set aside, not sent" in page
    assert "line 3 (recordId 2): nicId: 101 characters, CPMCS takes at most 100" in page
    assert f'href="{link}"' in page
    assert download.status_code == 200
    header, row = download.text.splitlines()
    assert (
        header == "recordId,nicId,headEndSystemId,reservationStartDateTime,reservationEndDateTime"
    )
    assert row.startswith("2,NIC-000002XXX")


async def test_a_files_page_says_how_many_segments_went_more_than_once_as_the_api_does(
    console: ConsoleUnderTest, tmp_path: Path
) -> None:
    settings = console.settings.model_copy(update={"segments": Segments(size=2, parallelism=1)})
    message = {**RESERVATION_MESSAGE, "messageId": "RSV-AGAIN"}
    async for small in console_for(settings, console.hub.lookups.current, "http://hub.test"):
        sent = await small.client.post(
            "/device-reservation-to-dacs",
            data={"message": json.dumps(message)},
            files={"file": ("r.csv", write_reservation_csv(tmp_path / "r.csv", 6).read_bytes())},
            auth=DERMS_AUTH,
        )
        instance_id = sent.json()["instanceId"]
        while await small.hub.workers.worker.step():
            pass
        await small.log_in()
        page_before = page_text((await small.client.get(f"/console/instances/{instance_id}")).text)
        # As a worker marks the segments it took up after another's lease ran out mid-call.
        async with small.hub.store.engine.begin() as connection:
            await connection.execute(
                update(SegmentRow)
                .where(SegmentRow.instance_id == instance_id, SegmentRow.seq < 3)
                .values(sent_again=True)
            )
        page = page_text((await small.client.get(f"/console/instances/{instance_id}")).text)
        detail = (
            await small.client.get(f"/ops/instances/{instance_id}", auth=OPERATOR_AUTH)
        ).json()

    assert "more than once" not in page_before
    assert detail["file"]["segments_sent_again"] == 2
    assert "2 segments sent to CPMCS more than once" in page


async def test_a_file_in_progress_shows_its_segments_pace_and_time_left_as_the_api_gives(
    console: ConsoleUnderTest, tmp_path: Path
) -> None:
    settings = console.settings.model_copy(update={"segments": Segments(size=2, parallelism=1)})
    csv_file = write_reservation_csv(tmp_path / "r.csv", 9)
    message = {
        "messageId": "RSV-PACE",
        "eventId": "EV-PACE",
        "eventStartDateTime": "2026-12-01T14:00:00Z",
        "eventEndDateTime": "2026-12-01T18:00:00Z",
    }
    async for paced in console_for(settings, console.hub.lookups.current, "http://hub.test"):
        sent = await paced.client.post(
            "/device-reservation-to-dacs",
            data={"message": json.dumps(message)},
            files={"file": ("r.csv", csv_file.read_bytes(), "text/csv")},
            auth=DERMS_AUTH,
        )
        instance_id = sent.json()["instanceId"]
        while await paced.hub.workers.worker.step():
            pass
        # Caught mid-run, received 20 s before its latest call: the first segment taken,
        # the others waiting, as a worker that stopped after its first call leaves them.
        async with paced.hub.store.engine.begin() as connection:
            latest_call = await connection.scalar(
                select(func.max(ActivityRow.at)).where(ActivityRow.instance_id == instance_id)
            )
            assert latest_call is not None
            await connection.execute(
                update(InstanceRow)
                .where(InstanceRow.id == instance_id)
                .values(received_at=as_utc(latest_call) - timedelta(seconds=20))
            )
            await connection.execute(
                update(SegmentRow)
                .where(SegmentRow.instance_id == instance_id, SegmentRow.seq > 1)
                .values(status="pending")
            )
            await connection.execute(
                update(FileJobRow)
                .where(FileJobRow.instance_id == instance_id)
                .values(state="running", outcome=None)
            )
        await paced.log_in()

        page = (await paced.client.get(f"/console/instances/{instance_id}")).text
        detail = (
            await paced.client.get(f"/ops/instances/{instance_id}", auth=OPERATOR_AUTH)
        ).json()
        # Then no call for ten minutes, as when the workers stop mid-file.
        async with paced.hub.store.engine.begin() as connection:
            ten_minutes_ago = datetime.now(UTC) - timedelta(minutes=10)
            await connection.execute(
                update(ActivityRow)
                .where(ActivityRow.instance_id == instance_id)
                .values(at=ten_minutes_ago)
            )
            await connection.execute(
                update(InstanceRow)
                .where(InstanceRow.id == instance_id)
                .values(received_at=ten_minutes_ago - timedelta(seconds=20))
            )
        stalled_page = (await paced.client.get(f"/console/instances/{instance_id}")).text

    assert 'id="quiet"' not in page
    assert page_text(stalled_page.split('<p id="quiet" class="error">', 1)[1]).startswith(
        "No call for 10 min 0 s: the pace and time left above are as of the latest call."
    )
    file = detail["file"]
    assert file["state"] == "running"
    parts = dict(SEGMENT_TITLE.findall(page))
    assert parts == {state: str(n) for state, n in file["segments"].items() if n}
    assert parts["pending"]
    received = datetime.fromisoformat(detail["received_at"])
    latest = max(datetime.fromisoformat(a["at"]) for a in detail["activities"])
    rate = file["rows_sent"] / (latest - received).total_seconds()
    left = int((file["total_rows"] - file["rows_sent"]) / rate)
    shown_left = f"{left} s" if left < 60 else f"{left // 60} min {left % 60} s"
    assert rate == pytest.approx(0.1)
    assert left in (69, 70)
    assert page_text(page.split('<p id="pace">', 1)[1].split("</p>", 1)[0]) == (
        f"{rate:.1f} rows/s since the file came; at that pace, {shown_left} left"
    )


async def test_bulk_resubmit_confirms_the_count_then_reports_outcomes(
    console: ConsoleUnderTest, cpmcs_sim: httpx.Client
) -> None:
    await enroll(console, "BULK-OK")
    for n in range(3):
        await failed_enrollment(console, cpmcs_sim, f"BULK-{n}")
    await console.log_in()
    chosen = {"flow": "enrollment_request", "status": "failed"}

    confirm = await console.client.get("/console/bulk-resubmit", params=chosen)
    done = await console.post("/console/bulk-resubmit", data=chosen)
    again = await console.client.get("/console/bulk-resubmit", params=chosen)

    assert '<strong id="bulk-total">3</strong>' in confirm.text
    assert '<td class="n" id="bulk-succeeded">3</td>' in done.text
    assert '<td class="n" id="bulk-failed">0</td>' in done.text
    assert '<strong id="bulk-total">0</strong>' in again.text


async def test_bulk_resubmit_counts_no_further_than_a_search_does(
    console: ConsoleUnderTest, cpmcs_sim: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As with more than COUNT_LIMIT (10,000) failures, which a test would take minutes to make.
    monkeypatch.setattr(overview, "COUNT_LIMIT", 2)
    for n in range(4):
        await failed_enrollment(console, cpmcs_sim, f"BULK-MANY-{n}")
    await console.log_in()
    chosen = {"flow": "enrollment_request", "status": "failed"}

    confirm = await console.client.get("/console/bulk-resubmit", params=chosen)

    assert '<strong id="bulk-total">more than 2</strong> failed instances' in confirm.text
    assert "Resubmit 4 instances" in confirm.text


def lookup_form(
    console: ConsoleUnderTest, rows: list[tuple[str, str]], version: str
) -> dict[str, str]:
    form = {"rows": str(len(rows)), "version": version}
    for index, (key, value) in enumerate(rows):
        form[f"cell-{index}-0"] = key
        form[f"cell-{index}-1"] = value
    return form


async def config_props_form(console: ConsoleUnderTest) -> tuple[list[tuple[str, str]], str]:
    page = (await console.client.get("/console/lookups/ConfigProps")).text
    version = page.split('name="version" value="', 1)[1].split('"', 1)[0]
    rows = list(console.hub.lookups.current.tables["ConfigProps"].rows.items())
    return rows, version


async def test_a_lookup_edit_is_saved_put_in_force_and_audited(console: ConsoleUnderTest) -> None:
    await console.log_in()
    rows, version = await config_props_form(console)
    edited = [(k, "false" if k == "notification.email.error.flag" else v) for k, v in rows] + [
        ("dacs.new.property", "42")
    ]

    reply = await console.post(
        "/console/lookups/ConfigProps", lookup_form(console, edited, version)
    )

    assert reply.status_code == 200, page_text(reply.text)
    assert "Saved." in reply.text
    assert console.hub.lookups.current.flag("notification.email.error.flag") is False
    assert console.hub.lookups.current.prop("dacs.new.property") == "42"
    written = (console.settings.lookups_dir / f"{PREFIX}ConfigProps.csv").read_text()
    assert "notification.email.error.flag,false" in written
    audit = page_text(reply.text)
    assert "operator" in audit
    assert "notification.email.error.flag : true → false" in audit
    assert "added dacs.new.property = 42" in audit


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda rows: [*rows, ("notification.email.process.complete.flag", "x")], "already on row"),
        (
            lambda rows: [(k, "maybe" if k.endswith("error.flag") else v) for k, v in rows],
            "must be true or false",
        ),
        (lambda rows: [*rows, ("", "orphan value")], "property is empty"),
        (
            lambda rows: [r for r in rows if r[0] != "notification.type.email"],
            "property notification.type.email is required",
        ),
    ],
    ids=["duplicate-key", "flag-not-boolean", "empty-key", "required-key-missing"],
)
async def test_a_wrong_lookup_edit_is_refused_and_nothing_changes(
    console: ConsoleUnderTest, change: object, problem: str
) -> None:
    await console.log_in()
    rows, version = await config_props_form(console)
    path = console.settings.lookups_dir / f"{PREFIX}ConfigProps.csv"
    before = path.read_bytes()
    in_force = console.hub.lookups.current

    reply = await console.post(
        "/console/lookups/ConfigProps",
        lookup_form(console, change(rows), version),  # type: ignore[operator]
    )

    assert reply.status_code == 422
    assert problem in page_text(reply.text)
    assert path.read_bytes() == before
    assert console.hub.lookups.current is in_force
    assert "Not changed from the console yet." in reply.text


async def test_an_edit_of_a_lookup_changed_meanwhile_is_refused(console: ConsoleUnderTest) -> None:
    await console.log_in()
    rows, version = await config_props_form(console)
    path = console.settings.lookups_dir / f"{PREFIX}ConfigProps.csv"
    path.write_text(path.read_text() + "someone.else,was.here\n")

    reply = await console.post("/console/lookups/ConfigProps", lookup_form(console, rows, version))

    assert reply.status_code == 409
    assert "was changed since this page was opened" in reply.text


async def test_a_routing_row_must_name_a_derms_connection(console: ConsoleUnderTest) -> None:
    await console.log_in()
    page = (await console.client.get("/console/lookups/Routing")).text
    version = page.split('name="version" value="', 1)[1].split('"', 1)[0]

    reply = await console.post(
        "/console/lookups/Routing",
        lookup_form(console, [("*", "default"), ("EAST", "nowhere")], version),
    )

    assert reply.status_code == 422
    assert "which is not a DERMS connection" in page_text(reply.text)


SECRETS = ("cpmcs-basic-pw-1234", "derms-oauth-secret-5678", "smtp-pw-9012", PASSWORDS["operator"])
STORE_SECRETS = ("ftp-pw-3456", "sftp-pw-2468", "sftp-key-passphrase-7890", "s3-secret-key-1357")


def secretive_stores(kind: str, folder: Path, port: int) -> tuple[FileStorageSettings, list[str]]:
    """File stores whose settings hold every kind of secret, on a closed port; and the
    secrets, with a line of each private key file among them."""
    folder.mkdir()
    if kind == "sftp-and-s3":
        key_file = folder / "id_ed25519"
        asyncssh.generate_private_key("ssh-ed25519").write_private_key(
            key_file, format_name="pkcs8-pem", passphrase=STORE_SECRETS[2]
        )
        stores = FileStorageSettings(
            ftp=SftpSettings(
                host="127.0.0.1",
                port=port,
                username="cpmcs",
                password=STORE_SECRETS[1],
                private_key=key_file,
                private_key_passphrase=STORE_SECRETS[2],
            ),
            object_storage=S3Settings(
                endpoint=f"http://127.0.0.1:{port}",
                access_key_id="hub",
                secret_access_key=STORE_SECRETS[3],
            ),
        )
    else:
        key_file = folder / "oci-api-key.pem"
        fingerprint = write_api_signing_key(key_file)
        stores = FileStorageSettings(
            ftp=FtpSettings(
                host="127.0.0.1", port=port, username="cpmcs", password=STORE_SECRETS[0]
            ),
            object_storage=OciObjectStorageSettings(
                region="us-ashburn-1",
                tenancy="ocid1.tenancy.oc1..hub",
                user="ocid1.user.oc1..hub",
                fingerprint=fingerprint,
                key_file=key_file,
                endpoint=f"http://127.0.0.1:{port}",
            ),
        )
    return stores, [*STORE_SECRETS, key_file.read_text().splitlines()[1]]


@pytest.mark.parametrize("stores_kind", ["sftp-and-s3", "ftp-and-oci"])
async def test_no_page_shows_a_secret(
    console: ConsoleUnderTest,
    cpmcs_sim: httpx.Client,
    cpmcs_server: object,
    tmp_path: Path,
    stores_kind: str,
) -> None:
    closed_port = free_port()
    stores, store_secrets = secretive_stores(stores_kind, tmp_path / "keys", closed_port)
    connections = Connections(
        cpmcs=Connection(
            base_url=console.settings.connections.cpmcs.base_url,
            auth=BasicAuth(username="hub", password=SECRETS[0]),
        ),
        derms={
            "default": console.settings.connections.derms["default"],
            "west": Connection(
                base_url=f"http://127.0.0.1:{closed_port}/api",
                auth=OAuth2ClientCredentials(
                    token_url=f"http://127.0.0.1:{closed_port}/token",
                    client_id="hub",
                    client_secret=SECRETS[1],
                ),
            ),
        },
    )
    settings = console_settings(
        console.settings.model_copy(
            update={
                "connections": connections,
                "smtp": Smtp(
                    host="127.0.0.1", port=closed_port, username="hub", password=SECRETS[2]
                ),
                "file_stores": stores,
            }
        ),
        copy_of_lookups(tmp_path / "l4"),
    )
    async for secretive in console_for(settings, console.hub.lookups.current, "http://hub.test"):
        await secretive.log_in()
        failed_id = await failed_enrollment(secretive, cpmcs_sim, "SECRET-1")
        pages = [
            *PAGES,
            f"/console/instances/{failed_id}",
            "/console/lookups/ConfigProps",
            "/console/?window=7d",
        ]
        shown = [(await secretive.client.get(path)).text for path in pages]
        connections_page = shown[3]

        for text in shown:
            assert not [secret for secret in (*SECRETS, *store_secrets) if secret in text]
        rows = {row[0]: row for row in table_rows(connections_page)}
        assert rows["CPMCS"][2] == console.settings.connections.cpmcs.base_url.unicode_string()
        assert rows["CPMCS"][3] == "yes"
        assert rows["DERMS west"][2] == f"http://127.0.0.1:{closed_port}/api"
        assert rows["DERMS west"][3].startswith("no")
        assert rows["SMTP"][2] == f"127.0.0.1:{closed_port}"
        assert rows["SMTP"][3].startswith("no")
        assert rows["CPMCS FTP server"][3].startswith("no")
        assert rows["CPMCS object storage"][3].startswith("no")


@pytest.mark.parametrize("page", ["0", "-3", "x", "9" * 30, "9" * 5000])
async def test_a_page_number_of_any_size_is_answered_with_a_page(
    console: ConsoleUnderTest, page: str
) -> None:
    await enroll(console, "PAGE-BOUND")
    await console.log_in()

    reply = await console.client.get("/console/instances", params={"page": page})

    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/html")
