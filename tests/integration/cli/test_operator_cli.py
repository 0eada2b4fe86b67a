"""The operator's commands against a real database (SQLite and PostgreSQL): instances,
resubmit, lookups. Instances are made by sending messages through the hub."""

from __future__ import annotations

import asyncio
import getpass
import json
import shutil
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from derms_bridge.cli import app
from derms_bridge.store.lookup_audit import recent_edits
from tests.conftest import LOOKUPS_DIR, HubUnderTest
from tests.integration.api.test_ops import enroll

runner = CliRunner()


@pytest.fixture
def config(hub: HubUnderTest, tmp_path: Path) -> Path:
    """A settings file for the hub under test's database, simulators and a copy of its lookups."""
    lookups = tmp_path / "lookups"
    shutil.copytree(LOOKUPS_DIR, lookups)
    settings = json.loads(hub.settings.model_dump_json())
    settings["database"]["url"] = hub.settings.database.url.get_secret_value()
    settings["callers"] = {}
    settings["lookups_dir"] = str(lookups)
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


async def cli(config: Path, *arguments: str) -> tuple[int, str]:
    """The command's exit code and output; in a thread, as it runs its own event loop."""
    result = await asyncio.to_thread(
        runner.invoke, app, [*arguments, "--config", str(config)], env={"COLUMNS": "250"}
    )
    return result.exit_code, result.output


async def test_instances_are_listed_by_business_key(hub: HubUnderTest, config: Path) -> None:
    instance_id = await enroll(hub, "CLI-1")
    await enroll(hub, "CLI-2")

    code, output = await cli(config, "instances", "list", "--key", "CLI-1", "--json")
    assert code == 0, output
    page = json.loads(output)
    assert [item["id"] for item in page["items"]] == [instance_id]

    code, output = await cli(
        config, "instances", "list", "--flow", "enrollment_request", "--since", "1h"
    )
    assert code == 0, output
    assert "2 of 2 instances" in output


async def test_a_bad_filter_is_exit_2_naming_it(hub: HubUnderTest, config: Path) -> None:
    for arguments, named in (
        (("--flow", "nosuch"), "no flow is called 'nosuch'"),
        (("--status", "done"), "'done' is not a status"),
        (("--since", "yesterday"), "neither an ISO date-time nor an age"),
    ):
        code, output = await cli(config, "instances", "list", *arguments)
        assert code == 2
        assert named in output
        assert "Traceback" not in output


async def test_an_instance_is_shown_with_its_activities(hub: HubUnderTest, config: Path) -> None:
    instance_id = await enroll(hub, "CLI-SHOW")

    code, output = await cli(config, "instances", "show", instance_id, "--json")
    assert code == 0, output
    detail = json.loads(output)
    assert detail["activities"][0]["operation"] == "enrollProgram"

    code, output = await cli(config, "instances", "show", instance_id)
    assert code == 0, output
    assert "enrollProgram" in output
    assert "messageId=CLI-SHOW" in output

    code, output = await cli(config, "instances", "show", "no-such-id")
    assert (code, output.strip()) == (2, "error instance no-such-id does not exist")


async def test_resubmit_exits_1_while_cpmcs_fails_and_0_once_it_recovers(
    hub: HubUnderTest, config: Path, cpmcs_sim: httpx.Client
) -> None:
    cpmcs_sim.put("/_sim/faults", json={"status_code": 503}).raise_for_status()
    failed = await enroll(hub, "CLI-RS")

    code, output = await cli(config, "resubmit", failed)
    assert code == 1, output
    assert "0 of 1 resubmitted without failing" in output

    cpmcs_sim.delete("/_sim/faults").raise_for_status()
    code, output = await cli(
        config, "resubmit", "--flow", "enrollment_request", "--status", "failed"
    )
    assert code == 0, output
    # Only the latest run of the message is resubmitted: the first was, already.
    assert "1 of 1 resubmitted without failing" in output
    found = await hub.found_by("CLI-RS")
    assert sorted(item["status"] for item in found) == ["resolved", "resolved", "succeeded"]


async def test_resubmit_run_twice_never_sends_again_what_succeeded(
    hub: HubUnderTest, config: Path, cpmcs_sim: httpx.Client
) -> None:
    cpmcs_sim.put("/_sim/faults", json={"status_code": 503}).raise_for_status()
    failed = [await enroll(hub, f"CLI-TWICE-{n}") for n in range(3)]
    cpmcs_sim.delete("/_sim/faults").raise_for_status()

    code, output = await cli(config, "resubmit", "--status", "failed")
    assert code == 0, output
    assert "3 of 3 resubmitted without failing" in output
    calls_after_first = cpmcs_sim.get("/_sim/state/calls").json()
    code, output = await cli(config, "resubmit", "--status", "failed")

    assert code == 0, output
    assert "nothing to resubmit" in output
    assert cpmcs_sim.get("/_sim/state/calls").json() == calls_after_first
    assert len(cpmcs_sim.get("/_sim/state/enrollments").json()) == 3
    code, output = await cli(config, "instances", "list", "--status", "resolved", "--json")
    assert sorted(item["id"] for item in json.loads(output)["items"]) == sorted(failed)
    code, output = await cli(config, "instances", "list", "--status", "failed", "--json")
    assert json.loads(output)["total"] == 0
    code, output = await cli(config, "resubmit", failed[0])
    assert code == 1
    assert "which succeeded" in output
    assert cpmcs_sim.get("/_sim/state/calls").json() == calls_after_first


async def test_resubmit_by_filter_takes_failed_instances_only(
    hub: HubUnderTest, config: Path
) -> None:
    await enroll(hub, "CLI-OK")

    code, output = await cli(config, "resubmit", "--status", "succeeded")

    assert code == 2
    assert "resubmit selects failed instances" in output
    assert len(await hub.found_by("CLI-OK")) == 1


async def test_resubmit_refuses_unknown_ids_and_mixed_selection(
    hub: HubUnderTest, config: Path
) -> None:
    instance_id = await enroll(hub, "CLI-MIX")

    code, output = await cli(config, "resubmit", instance_id, "no-such-id")
    assert code == 2
    assert "instance no-such-id does not exist" in output
    assert len(await hub.found_by("CLI-MIX")) == 1

    code, output = await cli(config, "resubmit", instance_id, "--status", "failed")
    assert code == 2
    assert "one or the other" in output


async def test_lookups_export_and_import_the_cloud_layout(
    hub: HubUnderTest, config: Path, tmp_path: Path
) -> None:
    code, output = await cli(config, "lookups", "export", str(tmp_path / "out"))
    assert code == 0, output
    exported = tmp_path / "out" / "OUTL-BRT-DACS_DRMS_EventType.csv"
    assert exported.read_text().splitlines()[:2] == ["DERMS,CPMCS", "ECONOMIC,X1EC"]

    cloud = tmp_path / "from-oic.csv"
    cloud.write_text(
        "DVM,OUTL-BRT-DACS_DRMS_EventType\nDescription,event types\n"
        "DERMS,CPMCS,comment\nECONOMIC,X1EC,\nEMERGENCY,X1EM,\nRELIABILITY,X1RL,new\n"
    )
    code, output = await cli(config, "lookups", "import", str(cloud))
    assert code == 0, output
    installed = tmp_path / "lookups" / "OUTL-BRT-DACS_DRMS_EventType.csv"
    assert installed.read_text().splitlines() == [
        "DERMS,CPMCS,comment",
        "ECONOMIC,X1EC,",
        "EMERGENCY,X1EM,",
        "RELIABILITY,X1RL,new",
    ]
    code, output = await cli(config, "check-config")
    assert code == 0, output
    [edit] = await recent_edits(hub.hub.store, "EventType")
    assert edit.operator == f"cli:{getpass.getuser()}"
    assert [(c.key, c.before, c.after) for c in edit.changes] == [
        ("ECONOMIC", ("X1EC",), ("X1EC", "")),
        ("EMERGENCY", ("X1EM",), ("X1EM", "")),
        ("RELIABILITY", ("X1RE",), ("X1RL", "new")),
        ("DEVICE_TEST", ("X1DT",), None),
    ]


async def test_a_bad_lookup_file_is_refused_whole_naming_row_and_column(
    hub: HubUnderTest, config: Path, tmp_path: Path
) -> None:
    installed = tmp_path / "lookups" / "OUTL-BRT-DACS_DRMS_EventType.csv"
    before = installed.read_text()
    bad = tmp_path / "OUTL-BRT-DACS_DRMS_EventType.csv"
    bad.write_text("DERMS,CPMCS\nECONOMIC,X1EC\n,X1EM\nECONOMIC,X1XX\n")

    code, output = await cli(config, "lookups", "import", str(bad))

    assert code == 2
    assert f"{bad}:3: column 'DERMS' is empty" in output
    assert f"{bad}:4: column 'DERMS': 'ECONOMIC' is already on line 2" in output
    assert installed.read_text() == before


async def test_an_import_the_console_would_refuse_is_refused(
    hub: HubUnderTest, config: Path, tmp_path: Path
) -> None:
    installed = tmp_path / "lookups" / "OUTL-BRT-DACS_DRMS_ConfigProps.csv"
    before = installed.read_text()
    edited = tmp_path / installed.name
    edited.write_text(
        before.replace("notification.email.error.flag,true", "notification.email.error.flag,yes")
    )

    code, output = await cli(config, "lookups", "import", str(edited))

    assert code == 2
    assert "notification.email.error.flag is a flag; its value must be true or false" in output
    assert installed.read_text() == before
    assert await recent_edits(hub.hub.store, "ConfigProps") == []


async def test_an_import_breaking_the_lookups_in_force_writes_nothing(
    hub: HubUnderTest, config: Path, tmp_path: Path
) -> None:
    routing = tmp_path / "OUTL-BRT-DACS_DRMS_Routing.csv"
    routing.write_text("division,connection\nNORTH,default\n")

    code, output = await cli(config, "lookups", "import", str(routing))

    assert code == 2
    assert "a '*' row is required, for every other division" in output
    assert "NORTH" not in (tmp_path / "lookups" / routing.name).read_text()
