"""The purge's archive (settings `retention.archive`) on a local folder and on the real FTP
server: `derms-bridge purge` writes what it removes there first, `derms-bridge archive show`
reads it back, and a store that refuses leaves the batch in place."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from derms_bridge.sandbox.ftp_server import FtpServer
from derms_bridge.sandbox.servers import LOOPBACK
from tests.conftest import OPERATOR_AUTH, HubUnderTest
from tests.integration.cli.test_operator_cli import cli, config  # noqa: F401
from tests.integration.engine.test_retention import age, found, unavailability
from tests.stores import PASSWORD, USER, WRONG_PASSWORD

FLOW = "customer_unavailability"


def with_archive(settings_file: Path, store: dict[str, Any], folder: str) -> Path:
    settings = yaml.safe_load(settings_file.read_text())
    settings["retention"]["archive"] = {"store": store, "folder": folder}
    settings_file.write_text(yaml.safe_dump(settings))
    return settings_file


def ftp_store(server: FtpServer) -> dict[str, Any]:
    return {
        "type": "ftp",
        "host": LOOPBACK,
        "port": server.port,
        "username": USER,
        "password": PASSWORD,
        "timeout": 10,
    }


def records(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines()]


async def received_day(hub: HubUnderTest, instance_id: str) -> str:
    detail = await found(hub, instance_id)
    assert detail is not None
    day: str = detail["received_at"][:10]
    return day


async def test_what_the_purge_removes_is_archived_on_a_local_folder_first(
    hub: HubUnderTest,
    config: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    (tmp_path / "archive").mkdir()
    with_archive(config, {"type": "local", "root": str(tmp_path)}, "archive")
    first = await unavailability(hub, "ARCH-LOCAL-1")
    second = await unavailability(hub, "ARCH-LOCAL-2")
    before = await found(hub, first)
    assert before is not None
    await age(hub.hub, 8)
    day = await received_day(hub, first)

    code, output = await cli(config, "purge")

    assert code == 0, output
    assert "2 payloads purged, 0 instances deleted" in output
    code, shown = await cli(config, "archive", "show", "--day", day, "--flow", FLOW)
    assert code == 0, shown
    archived = records(shown)
    assert sorted(each["id"] for each in archived) == sorted([first, second])
    [one] = [each for each in archived if each["id"] == first]
    assert (one["purged"], one["status"], one["flow"]) == ("payload", "succeeded", FLOW)
    assert one["payload"] == before["payload"]
    assert datetime.fromisoformat(one["received_at"]).utcoffset() == timedelta(0)
    assert one["reply"] == before["reply"]
    assert {"kind": "messageId", "value": "ARCH-LOCAL-1"} in one["business_keys"]
    assert [each["operation"] for each in one["activities"]] == [
        each["operation"] for each in before["activities"]
    ]

    await age(hub.hub, 83)
    day = await received_day(hub, first)
    code, output = await cli(config, "purge")

    assert code == 0, output
    # The payload purged now is the first purge run's own.
    assert "1 payloads purged, 2 instances deleted" in output
    assert await found(hub, first) is None
    code, shown = await cli(config, "archive", "show", "--day", day, "--flow", FLOW)
    assert code == 0, shown
    deleted = [each for each in records(shown) if each["purged"] == "instance"]
    assert sorted(each["id"] for each in deleted) == sorted([first, second])
    assert all(each["payload"] is None for each in deleted)
    [name] = [path.name for path in (tmp_path / "archive").iterdir() if ".instance-" in path.name]
    code, shown = await cli(config, "archive", "show", "--object", name)
    assert code == 0, shown
    assert records(shown) == deleted


async def test_the_archive_on_ftp_holds_what_went_and_an_empty_day_says_so(
    hub: HubUnderTest,
    config: Path,  # noqa: F811
    ftp_server: FtpServer,
) -> None:
    folder = f"archive-{uuid.uuid4().hex[:8]}"
    (ftp_server.root / folder).mkdir()
    with_archive(config, ftp_store(ftp_server), f"/{folder}")
    instance_id = await unavailability(hub, "ARCH-FTP-1")
    await age(hub.hub, 100)
    day = await received_day(hub, instance_id)

    code, output = await cli(config, "purge")

    assert code == 0, output
    assert "0 payloads purged, 1 instances deleted" in output
    code, shown = await cli(config, "archive", "show", "--day", day, "--flow", FLOW)
    assert code == 0, shown
    # Its payload and the instance expired together: archived once, payload and all.
    [archived] = records(shown)
    assert (archived["id"], archived["purged"]) == (instance_id, "instance")
    assert archived["payload"]["sendDetails"]["messageId"] == "ARCH-FTP-1"

    code, shown = await cli(config, "archive", "show", "--day", "2001-01-01", "--flow", FLOW)
    assert code == 1
    assert f"nothing archived for flow {FLOW} on 2001-01-01" in shown


@pytest.mark.parametrize(
    ("password", "folder", "named"),
    [
        (PASSWORD, "/no-such-folder", "no-such-folder"),
        (WRONG_PASSWORD, "/", "login as 'cpmcs' refused"),
    ],
    ids=["missing folder", "wrong password"],
)
async def test_an_archive_that_refuses_leaves_the_instances_in_place(
    hub: HubUnderTest,
    config: Path,  # noqa: F811
    ftp_server: FtpServer,
    password: str,
    folder: str,
    named: str,
) -> None:
    with_archive(config, {**ftp_store(ftp_server), "password": password}, folder)
    instance_id = await unavailability(hub, "ARCH-REFUSED-1")
    await age(hub.hub, 100)

    code, output = await cli(config, "purge")

    assert code == 1, output
    assert "archiving failed, so its batch was not removed" in output
    assert named in output
    assert password not in output
    kept = await found(hub, instance_id)
    assert kept is not None
    assert kept["payload"] is not None
    assert kept["payload_purged_at"] is None
    runs = await hub.client.get("/ops/instances", params={"flow": "purge"}, auth=OPERATOR_AUTH)
    [run] = runs.json()["items"]
    assert run["status"] == "failed"
