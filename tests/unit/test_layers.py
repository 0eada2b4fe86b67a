"""The layers of docs/architecture.md hold: every import between the package's parts runs
downward (entry points -> engine -> flows -> connectors -> schemas and settings; the store
beside the engine, never imported by flows or connectors; the sandbox reached only over the
wire and from the CLI), and a flow imports no web framework, database, HTTP or tracing library."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "derms_bridge"

ENTRY_POINTS = {"api", "console", "cli"}

#: For each part, the parts it must never import.
NEVER = {
    "schemas": {"connectors", "flows", "engine", "store", "bootstrap", "metrics", "sandbox"}
    | ENTRY_POINTS,
    "connectors": {"flows", "engine", "store", "bootstrap", "metrics", "sandbox"} | ENTRY_POINTS,
    # A flow reads like the reference's steps: the engine makes their spans (tracing.py).
    "flows": {
        "engine",
        "store",
        "bootstrap",
        "metrics",
        "sandbox",
        "tracing",
        "tracing_export",
        "otlp_protobuf",
    }
    | ENTRY_POINTS,
    "store": {"connectors", "flows", "engine", "bootstrap", "metrics", "sandbox"} | ENTRY_POINTS,
    "credentials": {"connectors", "flows", "engine", "store", "bootstrap", "sandbox"}
    | ENTRY_POINTS,
    "login_throttle": {"connectors", "flows", "engine", "bootstrap", "sandbox"} | ENTRY_POINTS,
    "engine": {"bootstrap", "sandbox"} | ENTRY_POINTS,
    "metrics": {"bootstrap", "sandbox"} | ENTRY_POINTS,
    "tracing": {"connectors", "flows", "engine", "store", "bootstrap", "metrics", "sandbox"}
    | ENTRY_POINTS,
    "tracing_export": {
        "connectors",
        "flows",
        "engine",
        "store",
        "bootstrap",
        "metrics",
        "sandbox",
    }
    | ENTRY_POINTS,
    "otlp_protobuf": {
        "connectors",
        "flows",
        "engine",
        "store",
        "bootstrap",
        "metrics",
        "sandbox",
        "tracing",
        "tracing_export",
    }
    | ENTRY_POINTS,
    "bootstrap": {"sandbox"} | ENTRY_POINTS,
    "sandbox": {"connectors", "flows", "engine", "store", "bootstrap", "metrics"} | ENTRY_POINTS,
    "api": {"cli", "sandbox", "store"},
    "console": {"cli", "sandbox", "api", "store"},
}

#: The few imports of the store that entry points keep, and why.
STORE_FROM_ENTRY_POINTS = {
    # Schema migrations are plumbing run before anything serves, not a query.
    "derms_bridge.store.database",
    # The console's logout record.
    "derms_bridge.store.console_security",
}

#: The sandbox's demo plays CPMCS putting score files on FTP and in OCI Object Storage:
#: it writes and reads them back over the wire with the hub's own clients of those stores.
DEMO_CLIENTS = "derms_bridge.connectors.file_storage"

#: What a flow module never imports: it reads like the reference's steps.
NOT_IN_FLOWS = (
    "fastapi",
    "starlette",
    "sqlalchemy",
    "aiohttp",
    "httpx",
    "psycopg",
    "aiosqlite",
    "opentelemetry",
)


def part_of(module: str) -> str:
    return module.split(".")[1] if module.count(".") else module


def imports() -> Iterator[tuple[str, str]]:
    """(the importing file, the module it imports), for every file of the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield path.relative_to(PACKAGE).as_posix(), node.module
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    yield path.relative_to(PACKAGE).as_posix(), alias.name


def test_every_import_between_parts_runs_downward() -> None:
    upward = []
    for source, module in imports():
        if not module.startswith("derms_bridge."):
            continue
        part = source.split("/")[0].removesuffix(".py")
        target = part_of(module)
        if source.startswith("sandbox/demo") and module.startswith(DEMO_CLIENTS):
            continue
        if target in NEVER.get(part, set()) and module not in STORE_FROM_ENTRY_POINTS:
            upward.append(f"{source} imports {module}")
    assert upward == []


@pytest.mark.parametrize("library", NOT_IN_FLOWS)
def test_no_flow_imports_a_web_database_or_http_library(library: str) -> None:
    found = [
        f"{source} imports {module}"
        for source, module in imports()
        if source.startswith("flows/") and module.split(".")[0] == library
    ]
    assert found == []
