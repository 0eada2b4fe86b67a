"""The console's pages: dashboard, instances, an instance, bulk resubmit, lookups, schedules,
connections."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse, RedirectResponse, Response

from derms_bridge.catalog import BY_KEY, FLOWS
from derms_bridge.console.web import (
    CSRF_CHECKED,
    ROOT,
    ConsoleState,
    OperatorDep,
    StateDep,
    is_htmx,
    render,
)
from derms_bridge.engine.bulk_resubmit import resubmit_many
from derms_bridge.engine.connectivity import endpoints_of, probe_all
from derms_bridge.engine.redaction import Redactor, mask_secret_fields
from derms_bridge.engine.runner import InstanceNotFound, NotResubmittable
from derms_bridge.engine.schedules import AlreadyRunning, UnknownScheduledFlow
from derms_bridge.flows.registry import SCHEDULED_FLOWS
from derms_bridge.lookup_tables import (
    Row,
    StaleEdit,
    changes_between,
    path_of,
    problems_in,
    read_lookup_file,
    save_lookup,
)
from derms_bridge.lookups import REQUIRED, LookupFileError
from derms_bridge.schemas.ops import INSTANCE_STATUSES, InstanceFilter
from derms_bridge.schemas.schedules import ScheduleView

router = APIRouter(dependencies=CSRF_CHECKED)

WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
PAGE_SIZE = 25
#: The most one bulk resubmit runs; a larger selection is worked through in several.
BULK_LIMIT = 200
BLANK_ROWS = 3


def _window(value: str | None) -> str:
    return value if value in WINDOWS else "24h"


@router.get("/", response_class=HTMLResponse)
async def dashboard(request: Request, state: StateDep, operator: OperatorDep) -> Response:
    window = _window(request.query_params.get("window"))
    since = datetime.now(UTC) - WINDOWS[window]
    operations = state.hub.operations
    counts = await operations.counts_by_flow(since)
    failures = await operations.failing_now(since)
    runs = await operations.scheduled_runs(SCHEDULED_FLOWS, since)
    return render(
        request,
        "dashboard.html",
        {
            "window": window,
            "windows": list(WINDOWS),
            "flows": FLOWS,
            "counts": counts,
            "failures": failures,
            "by_key": BY_KEY,
            "schedules": await state.hub.scheduler.overview(),
            "runs": runs,
            "processes": await state.hub.liveness.alive(),
            "redact": state.redact,
        },
    )


@dataclass(frozen=True)
class InstanceQuery:
    """The instances list's filters as the operator typed them, and what was wrong in them."""

    flow: str = ""
    status: str = ""
    key: str = ""
    window: str = ""
    received_from: str = ""
    received_to: str = ""
    page: int = 1
    problems: tuple[str, ...] = ()

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> InstanceQuery:
        def text(name: str) -> str:
            value = params.get(name)
            return value.strip() if isinstance(value, str) else ""

        problems: list[str] = []
        flow, status, window = text("flow"), text("status"), text("window")
        if flow and flow not in BY_KEY:
            problems.append(f"there is no flow {flow!r}")
            flow = ""
        if status and status not in INSTANCE_STATUSES:
            problems.append(f"there is no status {status!r}")
            status = ""
        if window and window not in WINDOWS:
            problems.append(f"there is no window {window!r}")
            window = ""
        page_text = text("page") or "1"
        page = int(page_text) if page_text.isdigit() and int(page_text) >= 1 else 1
        query = cls(
            flow=flow,
            status=status,
            key=text("key"),
            window=window,
            received_from=text("received_from"),
            received_to=text("received_to"),
            page=page,
        )
        if query.received_from and _moment(query.received_from) is None:
            problems.append("from is not a date and time")
            query = replace(query, received_from="")
        if query.received_to and _moment(query.received_to) is None:
            problems.append("to is not a date and time")
            query = replace(query, received_to="")
        return replace(query, problems=tuple(problems))

    def instance_filter(self, limit: int = PAGE_SIZE) -> InstanceFilter:
        received_from = _moment(self.received_from)
        if self.window:
            since = datetime.now(UTC) - WINDOWS[self.window]
            received_from = max(received_from, since) if received_from else since
        return InstanceFilter(
            flows=(self.flow,) if self.flow else (),
            status=self.status or None,
            business_key=self.key or None,
            received_from=received_from,
            received_to=_moment(self.received_to),
            limit=limit,
            offset=(self.page - 1) * limit,
        )

    def query_string(self, **changes: Any) -> str:
        fields = {
            "flow": self.flow,
            "status": self.status,
            "key": self.key,
            "window": self.window,
            "received_from": self.received_from,
            "received_to": self.received_to,
            "page": self.page,
        }
        fields.update(changes)
        return urlencode({name: value for name, value in fields.items() if value not in ("", 1)})


def _moment(text: str) -> datetime | None:
    """A date-time as an operator types it; one without an offset is UTC, as the pages show."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@router.get("/instances", response_class=HTMLResponse)
async def instances(request: Request, state: StateDep, operator: OperatorDep) -> Response:
    query = InstanceQuery.of(request.query_params)
    found = await state.hub.operations.search(query.instance_filter())
    pages = max(1, -(-found.total // PAGE_SIZE))
    context = {
        "query": query,
        "found": found,
        "pages": pages,
        "flows": FLOWS,
        "statuses": INSTANCE_STATUSES,
        "windows": list(WINDOWS),
    }
    # htmx asks for the results only when the filters change; going back in the browser's
    # history it asks for the whole page again.
    fragment = is_htmx(request) and "HX-History-Restore-Request" not in request.headers
    response = render(request, "_instance_results.html" if fragment else "instances.html", context)
    response.headers["Vary"] = "HX-Request"
    return response


def _shown(value: Any, redact: Redactor) -> str:
    """A payload as an operator may read it: fields named like secrets masked, then any
    configured secret masked wherever it appears."""
    if value is None:
        return ""
    return redact(json.dumps(mask_secret_fields(value), indent=2, ensure_ascii=False))


@router.get("/instances/{instance_id}", response_class=HTMLResponse)
async def instance(
    request: Request, instance_id: str, state: StateDep, operator: OperatorDep
) -> Response:
    detail = await state.hub.operations.detail(instance_id)
    if detail is None:
        return render(
            request, "not_found.html", {"what": f"instance {instance_id}"}, status_code=404
        )
    info = BY_KEY.get(detail.flow)
    return render(
        request,
        "instance.html",
        {
            "instance": detail,
            "info": info,
            "payload": _shown(detail.payload, state.redact),
            "reply": _shown(detail.reply, state.redact),
            "error": state.redact(detail.error) if detail.error else None,
            "received_body": (
                state.redact(detail.payload["receivedBody"])
                if detail.status == "rejected"
                else None
            ),
            "redact": state.redact,
        },
    )


@router.post("/instances/{instance_id}/resubmit", response_class=HTMLResponse)
async def resubmit(
    request: Request, instance_id: str, state: StateDep, operator: OperatorDep
) -> Response:
    try:
        outcome = await state.hub.engine.resubmit(instance_id, caller=operator)
    except InstanceNotFound as exc:
        return render(request, "_resubmitted.html", {"refused": str(exc)}, status_code=404)
    except NotResubmittable as exc:
        return render(request, "_resubmitted.html", {"refused": str(exc)}, status_code=409)
    new = await state.hub.operations.detail(outcome.instance_id)
    return render(
        request,
        "_resubmitted.html",
        {
            "new": new,
            "same_instance": outcome.instance_id == instance_id,
            "error": state.redact(outcome.error) if outcome.error else None,
        },
    )


@router.get("/bulk-resubmit", response_class=HTMLResponse)
async def bulk_confirm(request: Request, state: StateDep, operator: OperatorDep) -> Response:
    query = InstanceQuery.of(request.query_params)
    ids, total = await state.hub.operations.failures_to_resubmit(
        query.instance_filter(), limit=BULK_LIMIT
    )
    return render(
        request,
        "bulk_confirm.html",
        {"query": query, "count": len(ids), "total": total, "limit": BULK_LIMIT},
    )


@router.post("/bulk-resubmit", response_class=HTMLResponse)
async def bulk_run(request: Request, state: StateDep, operator: OperatorDep) -> Response:
    query = InstanceQuery.of(await request.form())
    ids, total = await state.hub.operations.failures_to_resubmit(
        query.instance_filter(), limit=BULK_LIMIT
    )
    outcome = await resubmit_many(state.hub.engine, ids, caller=operator)
    return render(
        request,
        "bulk_result.html",
        {
            "query": query,
            "outcome": outcome,
            "count": len(ids),
            "left": total - len(ids),
            "refused": [state.redact(reason) for reason in outcome.refused],
        },
    )


@router.get("/lookups", response_class=HTMLResponse)
async def lookups(request: Request, state: StateDep, operator: OperatorDep) -> Response:
    tables = state.hub.lookups.current.tables
    names = [name for name in REQUIRED if name in tables]
    names += sorted(name for name in tables if name not in REQUIRED)
    return render(request, "lookups.html", {"tables": tables, "names": names})


async def _lookup_page(
    request: Request,
    state: ConsoleState,
    name: str,
    *,
    rows: list[Row] | None = None,
    problems: list[str] | None = None,
    saved: bool = False,
    status_code: int = 200,
) -> Response:
    try:
        current = read_lookup_file(path_of(state.hub.settings.lookups_dir, name))
    except LookupFileError:
        return render(request, "not_found.html", {"what": f"lookup {name}"}, status_code=404)
    shown = rows if rows is not None else list(current.rows)
    blank: Row = ("",) * len(current.columns)
    return render(
        request,
        "lookup.html",
        {
            "lookup": current,
            "rows": shown + [blank] * BLANK_ROWS,
            "problems": problems or [],
            "saved": saved,
            "edits": await state.hub.operations.lookup_edits(name),
        },
        status_code=status_code,
    )


@router.get("/lookups/{name}", response_class=HTMLResponse)
async def lookup(request: Request, name: str, state: StateDep, operator: OperatorDep) -> Response:
    if name not in state.hub.lookups.current.tables:
        return render(request, "not_found.html", {"what": f"lookup {name}"}, status_code=404)
    return await _lookup_page(request, state, name)


def _rows_of(form: FormData, width: int) -> list[Row]:
    """The rows the form holds, in order: a row ticked for removal and an empty row left out."""
    count_text = str(form.get("rows", "0"))
    count = int(count_text) if count_text.isdigit() else 0
    rows: list[Row] = []
    for index in range(count):
        if form.get(f"remove-{index}") is not None:
            continue
        cells = tuple(
            str(form.get(f"cell-{index}-{column}", "")).strip() for column in range(width)
        )
        if any(cells):
            rows.append(cells)
    return rows


@router.post("/lookups/{name}", response_class=HTMLResponse)
async def save(request: Request, name: str, state: StateDep, operator: OperatorDep) -> Response:
    if name not in state.hub.lookups.current.tables:
        return render(request, "not_found.html", {"what": f"lookup {name}"}, status_code=404)
    directory = state.hub.settings.lookups_dir
    form = await request.form()
    async with state.lookup_edits:
        current = read_lookup_file(path_of(directory, name))
        rows = _rows_of(form, len(current.columns))
        problems = problems_in(
            name, current.columns, rows, state.hub.settings.connections.derms.keys()
        )
        if problems:
            return await _lookup_page(
                request, state, name, rows=rows, problems=problems, status_code=422
            )
        changes = changes_between(current.rows, rows)
        if not changes:
            return await _lookup_page(request, state, name, saved=True)
        try:
            state.hub.lookups.current = save_lookup(
                directory, name, str(form.get("version", "")), rows
            )
        except StaleEdit as exc:
            return await _lookup_page(request, state, name, problems=[str(exc)], status_code=409)
        except LookupFileError as exc:
            return await _lookup_page(
                request, state, name, rows=rows, problems=exc.problems, status_code=422
            )
        await state.hub.operations.record_lookup_edit(name, operator, changes)
    return await _lookup_page(request, state, name, saved=True)


async def _schedule_of(state: ConsoleState, flow: str) -> ScheduleView | None:
    return next((each for each in await state.hub.scheduler.overview() if each.flow == flow), None)


@router.get("/schedules", response_class=HTMLResponse)
async def schedules(request: Request, state: StateDep, operator: OperatorDep) -> Response:
    return render(
        request,
        "schedules.html",
        {
            "schedules": await state.hub.scheduler.overview(),
            "by_key": BY_KEY,
            "redact": state.redact,
        },
    )


@router.get("/schedules/{flow}", response_class=HTMLResponse)
async def schedule_row(
    request: Request, flow: str, state: StateDep, operator: OperatorDep
) -> Response:
    """A schedule's row as it stands now: what a running row asks for until its run ends."""
    if not is_htmx(request):
        return RedirectResponse(ROOT + "/schedules", status_code=303)
    found = await _schedule_of(state, flow)
    if found is None:
        return render(
            request, "not_found.html", {"what": f"scheduled flow {flow}"}, status_code=404
        )
    return render(
        request,
        "_schedule_row.html",
        {"schedule": found, "by_key": BY_KEY, "redact": state.redact},
    )


@router.post("/schedules/{flow}/run", response_class=HTMLResponse)
async def run_schedule_now(
    request: Request, flow: str, state: StateDep, operator: OperatorDep
) -> Response:
    """Start the flow now; the answer says which instance, and replaces the flow's row so that
    it follows the run until it ends."""
    try:
        started = await state.hub.scheduler.run_now(flow, caller=operator)
    except UnknownScheduledFlow as exc:
        return render(request, "_run_started.html", {"refused": str(exc)}, status_code=404)
    except AlreadyRunning as exc:
        return render(
            request,
            "_run_started.html",
            {
                "running": exc.instance_id,
                "schedule": await _schedule_of(state, exc.flow),
                "by_key": BY_KEY,
                "redact": state.redact,
            },
            status_code=409,
        )
    return render(
        request,
        "_run_started.html",
        {
            "started": started.instance_id,
            "schedule": await _schedule_of(state, started.flow),
            "by_key": BY_KEY,
            "redact": state.redact,
        },
    )


@router.get("/connections", response_class=HTMLResponse)
async def connections(request: Request, state: StateDep, operator: OperatorDep) -> Response:
    checks = await probe_all(endpoints_of(state.hub.settings), state.hub.stores)
    return render(request, "connections.html", {"checks": checks, "redact": state.redact})
