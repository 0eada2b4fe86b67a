"""The lookups, and one lookup read and edited in place."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse, Response

from derms_bridge.console.web import CSRF_CHECKED, ConsoleState, OperatorDep, StateDep, render
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

router = APIRouter(dependencies=CSRF_CHECKED)

BLANK_ROWS = 3


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
