"""derms-bridge purge: the retention's purge run now, or what it would remove."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from derms_bridge.cli.common import (
    EXIT_FAILED,
    ConfigOption,
    database_or_exit,
    err,
    lookups_or_exit,
    out,
    settings_or_exit,
)
from derms_bridge.settings import DEFAULT_SETTINGS_FILE

if TYPE_CHECKING:
    from derms_bridge.flows.ports import FlowResult
    from derms_bridge.schemas.retention import PurgeCandidates, PurgeReport


def purge(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="say what would go, and remove nothing")
    ] = False,
    config: ConfigOption = DEFAULT_SETTINGS_FILE,
) -> None:
    """Purge what outlived the retention now, as its schedule would (settings `retention`).

    The run is an instance of the flow `purge`, whose reply counts what went per table.
    Exit code 0 when it ran, 1 when it failed (the archive refused a batch, which stayed)
    or another purge was still going, 2 for unusable settings or database.
    """
    from derms_bridge.bootstrap import build_hub
    from derms_bridge.engine.schedules import AlreadyRunning
    from derms_bridge.store.database import migrate as run_migrations

    settings = settings_or_exit(config)
    lookups = lookups_or_exit(settings.lookups_dir)

    async def candidates() -> tuple[list[PurgeCandidates], dict[str, int]]:
        hub = build_hub(settings, lookups, command="run")
        try:
            other_rows = await hub.purge.file_rows_waiting()
            other_rows["schedule_ticks"] = await hub.purge.skipped_ticks_waiting()
            return await hub.purge.candidates(), other_rows
        finally:
            await hub.aclose()

    async def run() -> tuple[str, FlowResult[PurgeReport]]:
        hub = build_hub(settings, lookups, command="run")
        hub.liveness.start()
        try:
            started = await hub.scheduler.run_now("purge", caller="cli")
            out.print(f"purge: instance {started.instance_id}", highlight=False)
            with out.status("purging", spinner="dots"):
                result: FlowResult[PurgeReport] = await started.done
            return started.instance_id, result
        finally:
            await hub.liveness.stop()
            await hub.aclose()

    if settings.database.migrate_on_start:
        run_migrations(settings.database.url.get_secret_value())
    if dry_run:
        found, other_rows = database_or_exit(candidates)
        _show_candidates(found, other_rows)
        return
    try:
        instance_id, result = database_or_exit(run)
    except AlreadyRunning as exc:
        err.print(f"[red]error[/] {exc}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    if result.reply is None or result.status != "succeeded":
        err.print(f"[red]{result.status}[/] {result.error or ''}", highlight=False)
        raise typer.Exit(EXIT_FAILED)
    report = result.reply
    out.print(
        f"[green]{result.status}[/] {report.payloadsPurged} payloads purged, "
        f"{report.removed.get('instances', 0)} instances deleted, in {report.batches} batches",
        highlight=False,
    )
    for table, rows in sorted(report.removed.items()):
        out.print(f"  {table:<20} {rows:>10,}", highlight=False)
    out.print(f"details: GET /ops/instances/{instance_id}", highlight=False)


def _show_candidates(found: list[PurgeCandidates], other_rows: dict[str, int]) -> None:
    """`other_rows`: rows of no expired instance that would go too, by table."""
    waiting = ", ".join(f"{rows:,} {table}" for table, rows in other_rows.items() if rows)
    if not found and not waiting:
        out.print("nothing would go: no instance outlived its retention", highlight=False)
        return
    if found:
        table = Table(title="would go now (dry run: nothing removed)", title_justify="left")
        for column in ("flow", "outcome", "payload days", "instance days"):
            table.add_column(column)
        for column in ("payloads", "instances"):
            table.add_column(column, justify="right")
        for each in found:
            table.add_row(
                each.flow,
                each.outcome,
                str(each.payloadDays),
                str(each.instanceDays),
                f"{each.payloads:,}",
                f"{each.instances:,}",
            )
        out.print(table)
    if waiting:
        out.print(
            f"rows of purged payloads and skipped schedule ticks still to delete: {waiting}",
            highlight=False,
        )
