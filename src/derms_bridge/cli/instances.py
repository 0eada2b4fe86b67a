"""The commands that find, read and resubmit instances: instances list|show, resubmit."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from derms_bridge.cli.common import (
    EXIT_FAILED,
    EXIT_REFUSED,
    ConfigOption,
    database_or_exit,
    err,
    log_as_json_lines,
    lookups_or_exit,
    out,
    settings_or_exit,
    with_operations,
)
from derms_bridge.settings import DEFAULT_SETTINGS_FILE

_AGE = re.compile(r"^(\d+)\s*([smhd])$")
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _since(value: str | None) -> datetime | None:
    """An ISO date-time (UTC when it has no offset) or an age: 30m, 2h, 7d."""
    if value is None:
        return None
    age = _AGE.match(value.strip())
    if age:
        return datetime.now(UTC) - timedelta(**{_AGE_UNITS[age[2]]: int(age[1])})
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is neither an ISO date-time nor an age like 30m, 2h, 7d",
            param_hint="--since",
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _flow_keys(flow: str | None) -> tuple[str, ...]:
    from derms_bridge.catalog import flows_named

    if flow is None:
        return ()
    found = flows_named(flow)
    if not found:
        raise typer.BadParameter(f"no flow is called {flow!r}", param_hint="--flow")
    return tuple(f.key for f in found)


StatusOption = Annotated[
    str | None,
    typer.Option(help="in_progress, succeeded, failed, skipped, resolved or rejected"),
]
FlowOption = Annotated[str | None, typer.Option(help="a flow key or identifier")]
SinceOption = Annotated[
    str | None, typer.Option(help="received at or after: an ISO date-time, or an age (2h, 7d)")
]


def _filter(
    flow: str | None, status: str | None, since: str | None, key: str | None, limit: int
) -> Any:
    from derms_bridge.schemas.ops import INSTANCE_STATUSES, InstanceFilter

    if status is not None and status not in INSTANCE_STATUSES:
        raise typer.BadParameter(f"{status!r} is not a status", param_hint="--status")
    return InstanceFilter(
        flows=_flow_keys(flow),
        status=status,
        business_key=key,
        received_from=_since(since),
        limit=limit,
    )


instances_app = typer.Typer(help="Find and read instances (one per message received).")


@instances_app.command("list")
def instances_list(
    config: ConfigOption = DEFAULT_SETTINGS_FILE,
    flow: FlowOption = None,
    status: StatusOption = None,
    since: SinceOption = None,
    key: Annotated[
        str | None, typer.Option(help="any business identifier: messageId, enrollmentId, ...")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON, for scripts")] = False,
) -> None:
    """The instances that match, newest first."""
    from rich.table import Table

    where = _filter(flow, status, since, key, limit)
    page = with_operations(config, lambda operations: operations.search(where))
    if as_json:
        out.print_json(page.model_dump_json())
        return
    total = f"{page.total}" if page.total_exact else f"more than {page.total}"
    table = Table(title=f"{len(page.items)} of {total} instances", title_justify="left")
    for column in ("received (UTC)", "id", "flow", "status", "tries", "identifiers", "error"):
        table.add_column(column, overflow="fold")
    colours = {
        "succeeded": "green",
        "resolved": "green",
        "failed": "red",
        "rejected": "red",
        "in_progress": "yellow",
    }
    for item in page.items:
        table.add_row(
            item.received_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            item.id,
            item.flow,
            f"[{colours.get(item.status, 'white')}]{item.status}[/]",
            str(item.attempts),
            ", ".join(f"{k.kind}={k.value}" for k in item.business_keys[:4]),
            (item.error or "")[:120],
        )
    out.print(table)


@instances_app.command("show")
def instances_show(
    instance_id: Annotated[str, typer.Argument(metavar="ID")],
    config: ConfigOption = DEFAULT_SETTINGS_FILE,
    as_json: Annotated[bool, typer.Option("--json", help="JSON, for scripts")] = False,
) -> None:
    """One instance: its activities in order, its error, and a file's progress."""
    detail = with_operations(config, lambda operations: operations.detail(instance_id))
    if detail is None:
        err.print(f"[red]error[/] instance {instance_id} does not exist", highlight=False)
        raise typer.Exit(EXIT_REFUSED)
    if as_json:
        out.print_json(detail.model_dump_json())
        return
    _print_detail(detail)


def _print_detail(detail: Any) -> None:
    from rich.table import Table

    out.print(f"[bold]{detail.id}[/]  {detail.flow} ({detail.flow_identifier})", highlight=False)
    facts = [
        ("status", detail.status),
        ("attempts", str(detail.attempts)),
        ("caller", detail.caller or "-"),
        ("received", detail.received_at.isoformat()),
        ("finished", detail.finished_at.isoformat() if detail.finished_at else "-"),
        ("identifiers", ", ".join(f"{k.kind}={k.value}" for k in detail.business_keys) or "-"),
        ("resubmit of", detail.resubmit_of or "-"),
        ("resubmitted as", ", ".join(detail.resubmitted_as) or "-"),
        ("parent", detail.parent_id or "-"),
        ("children", ", ".join(detail.children) or "-"),
    ]
    for label, value in facts:
        out.print(f"  {label:<15}{value}", highlight=False)
    if detail.error:
        out.print(f"  [red]{'error':<15}{detail.error}[/]", highlight=False)
    if detail.skipped_reason:
        out.print(f"  {'skipped':<15}{detail.skipped_reason}", highlight=False)
    if detail.file is not None:
        file = detail.file
        segments = ", ".join(f"{n} {state}" for state, n in file.segments.items())
        out.print(
            f"  {'file':<15}{file.state}, run {file.run}, {file.rows_sent} of "
            f"{file.total_rows} rows sent; segments: {segments}",
            highlight=False,
        )
        for problem in [*file.segment_errors, *([file.ack_error] if file.ack_error else [])]:
            out.print(f"  [red]{'':<15}{problem}[/]", highlight=False)
    table = Table(title="activities", title_justify="left")
    for column in ("#", "at (UTC)", "target", "operation", "call", "status", "ms", "error"):
        table.add_column(column, overflow="fold")
    for n, activity in enumerate(detail.activities, start=1):
        table.add_row(
            str(n),
            activity.at.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3],
            activity.target,
            activity.operation,
            " ".join(p for p in (activity.method, activity.path) if p),
            str(activity.http_status or "-"),
            f"{activity.duration_ms:.0f}",
            activity.error or "",
        )
    out.print(table)


def resubmit(
    instance_ids: Annotated[list[str] | None, typer.Argument(metavar="[ID]...")] = None,
    config: ConfigOption = DEFAULT_SETTINGS_FILE,
    flow: FlowOption = None,
    status: StatusOption = None,
    since: SinceOption = None,
    key: Annotated[str | None, typer.Option(help="a business identifier")] = None,
) -> None:
    """Run instances again from their stored payloads: those named, or the failed ones a
    filter selects (e.g. --flow enrollment_request --since 2h) that were not resubmitted
    yet, as the console's bulk resubmit: run twice, it never sends again what its first
    run resubmitted with success (those are resolved). Exit 0 when every one succeeded, 1
    when any failed or was refused, 2 for a mistake in the command or an unknown
    instance."""
    from rich.progress import Progress
    from rich.table import Table

    from derms_bridge.bootstrap import build_hub
    from derms_bridge.engine.runner import InstanceNotFound, NotResubmittable

    filtering = any(v is not None for v in (flow, status, since, key))
    if bool(instance_ids) == filtering:
        err.print(
            "[red]error[/] name instance ids, or select them with --flow/--status/--since/--key "
            "(one or the other)",
            highlight=False,
        )
        raise typer.Exit(EXIT_REFUSED)
    if status not in (None, "failed"):
        err.print(
            "[red]error[/] resubmit selects failed instances not resubmitted yet; name the ids "
            "of others to resubmit them",
            highlight=False,
        )
        raise typer.Exit(EXIT_REFUSED)
    where = _filter(flow, "failed", since, key, 500) if filtering else None
    settings = settings_or_exit(config)
    lookups = lookups_or_exit(settings.lookups_dir)
    log_as_json_lines(settings, "warning")
    results: list[tuple[str, str, str, str]] = []

    async def run() -> None:
        hub = build_hub(settings, lookups)
        try:
            chosen = list(instance_ids or [])
            if where is not None:
                chosen = (await hub.operations.failures_to_resubmit(where, None)).ids
            missing = [i for i in chosen if not await hub.operations.exists(i)]
            if missing:
                for instance_id in missing:
                    err.print(f"[red]error[/] instance {instance_id} does not exist")
                raise typer.Exit(EXIT_REFUSED)
            with Progress(console=err, transient=True) as progress:
                task = progress.add_task("resubmitting", total=len(chosen))
                for instance_id in chosen:
                    try:
                        outcome = await hub.engine.resubmit(instance_id, caller="cli")
                        results.append(
                            (instance_id, outcome.instance_id, outcome.status, outcome.error or "")
                        )
                    except (InstanceNotFound, NotResubmittable) as exc:
                        results.append((instance_id, "-", "refused", str(exc)))
                    progress.advance(task)
        finally:
            await hub.aclose()

    database_or_exit(run)
    if not results:
        out.print("nothing to resubmit: no instance matches")
        return
    table = Table(title="resubmitted", title_justify="left")
    for column in ("instance", "new run", "status", "error"):
        table.add_column(column, overflow="fold")
    for old, new, outcome_status, error in results:
        table.add_row(old, new, outcome_status, error[:160])
    out.print(table)
    failed = [r for r in results if r[2] in ("failed", "refused")]
    out.print(
        f"{len(results) - len(failed)} of {len(results)} resubmitted without failing",
        highlight=False,
    )
    if failed:
        raise typer.Exit(EXIT_FAILED)
