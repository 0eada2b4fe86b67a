"""derms-bridge purge against a real database (SQLite and PostgreSQL): a dry run says what
would go and removes nothing; a purge removes it and is an instance of its own."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import OPERATOR_AUTH, HubUnderTest
from tests.integration.cli.test_operator_cli import cli, config  # noqa: F401
from tests.integration.engine.test_retention import age, unavailability


async def test_a_dry_run_lists_what_would_go_and_a_purge_removes_it(
    hub: HubUnderTest,
    config: Path,  # noqa: F811
) -> None:
    kept = await unavailability(hub, "CLI-PURGE-1")
    await unavailability(hub, "CLI-PURGE-2")
    await age(hub.hub, 100)

    code, dry = await cli(config, "purge", "--dry-run")

    assert code == 0, dry
    assert "would go now (dry run: nothing removed)" in dry
    [row] = [line for line in dry.splitlines() if "customer_unavailability" in line]
    assert row.split("│")[1:-1] == [
        " customer_unavailability ",
        " succeeded ",
        " 7            ",
        " 90            ",
        "        0 ",
        "         2 ",
    ]
    assert len(await hub.found_by("CLI-PURGE-1")) == 1

    code, output = await cli(config, "purge")

    assert code == 0, output
    assert "succeeded 0 payloads purged, 2 instances deleted" in output
    assert await hub.found_by("CLI-PURGE-1") == []
    gone = await hub.client.get(f"/ops/instances/{kept}", auth=OPERATOR_AUTH)
    assert gone.status_code == 404
    runs = await hub.client.get("/ops/instances", params={"flow": "purge"}, auth=OPERATOR_AUTH)
    [run] = runs.json()["items"]
    assert (run["status"], run["caller"]) == ("succeeded", "cli")

    code, output = await cli(config, "purge", "--dry-run")
    assert (code, output.strip()) == (0, "nothing would go: no instance outlived its retention")
