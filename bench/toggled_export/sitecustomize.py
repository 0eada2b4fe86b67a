"""Loaded by every Python process started with this folder first on PYTHONPATH
(bench/trace_toggled.py puts it there for its hub alone): in a hub that exports its traces
(`serve`, DERMS_BRIDGE_TRACING__ENDPOINT set) and is given TRACE_TOGGLE_OUT, a
`POST /_bench/toggle` ends a phase: the phase's CPU per request is appended to
TRACE_TOGGLE_OUT as a JSON line (the event loop's thread, `time.thread_time` read on it; the
whole process's; each thread's by its name, the export thread's and the database's among
them; the cyclic collector's, timed by `gc.callbacks`) with the POSTs it served, and
exporting is turned off or on for the next, in the order on, off, off, on (so that nothing
that comes every second phase falls on one arm). The benchmark sends the toggle once a
phase's flows are all answered, so no request runs across two phases.

Off, the tracer is the no-op one and TracedRequests lets requests by, as in a hub without
a `tracing` block; the exporter and its thread stay, and the spans an "on" phase leaves
waiting (under a batch) go with the next "on" phase's, or after the batch delay. With
TRACE_TOGGLE_CONTROL set, exporting stays off in both arms (what the method reads when
there is nothing to find); with TRACE_TOGGLE_MADE_ONLY, the "on" phases make and end their
spans as ever but none is queued for the export thread (what making them costs on its own)."""

from __future__ import annotations

import gc
import importlib.abc
import importlib.machinery
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from types import ModuleType
from typing import Any


def _threads_cpu() -> dict[str, float]:
    """Each live thread's CPU seconds so far, by its name (those of one name summed)."""
    cpu: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread.ident is None:
            continue
        try:
            seconds = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except OSError:
            # Ended since it was listed.
            continue
        cpu[thread.name] = cpu.get(thread.name, 0.0) + seconds
    return cpu


def _timed_collector() -> dict[str, float]:
    """The seconds the cyclic collector has taken so far, kept up to date in the dict."""
    timed = {"seconds": 0.0, "started": 0.0}

    def collecting(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            timed["started"] = time.perf_counter()
        else:
            timed["seconds"] += time.perf_counter() - timed["started"]

    gc.callbacks.append(collecting)
    return timed


#: The path that ends a phase; answered here, never by the hub.
TOGGLE_PATH = "/_bench/toggle"


def _dropped(span: object) -> None:
    """A finished span, left out of the export (TRACE_TOGGLE_MADE_ONLY)."""


def _toggled(out: str, control: bool, made_only: bool) -> None:
    from derms_bridge import tracing
    from derms_bridge.api import traced_requests

    exporting = tracing._exporting
    state: dict[str, Any] = {"requests": 0, "phases": 0, "on": True, "cpu": None, "kept": None}
    served = traced_requests.TracedRequests.__call__
    collector = _timed_collector()

    def cpu_now() -> tuple[float, float, dict[str, float], float]:
        return (time.thread_time(), time.process_time(), _threads_cpu(), collector["seconds"])

    def toggle() -> None:
        now = cpu_now()
        (loop_before, process_before, threads_before, collector_before) = state["cpu"]
        requests = max(state["requests"], 1)
        with open(out, "a") as lines:
            measured = {
                "pid": os.getpid(),
                "on": state["on"],
                "requests": state["requests"],
                "loop_us": (now[0] - loop_before) / requests * 1e6,
                "process_us": (now[1] - process_before) / requests * 1e6,
                "threads_us": {
                    name: (seconds - threads_before.get(name, 0.0)) / requests * 1e6
                    for name, seconds in now[2].items()
                },
                "collector_us": (now[3] - collector_before) / requests * 1e6,
            }
            lines.write(json.dumps(measured) + "\n")
        if state["kept"] is None:
            # The hub starts exporting after its app is made: what it made, kept at the first
            # turn.
            state["kept"] = (exporting.exporter, exporting.tracer)
            if made_only:
                exporting.exporter._batches.add = _dropped  # type: ignore[method-assign,union-attr]
        state["phases"] += 1
        state["on"] = state["phases"] % 4 in (0, 3)
        if state["on"] and not control:
            exporting.exporter, exporting.tracer = state["kept"]
        else:
            exporting.exporter, exporting.tracer = None, tracing._NO_OP
        state["requests"] = 0
        state["cpu"] = cpu_now()

    async def counting(self: Any, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            if state["cpu"] is None:
                state["cpu"] = cpu_now()
            if scope["path"] == TOGGLE_PATH:
                toggle()
                await send({"type": "http.response.start", "status": 204, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
            state["requests"] += 1
        await served(self, scope, receive, send)

    traced_requests.TracedRequests.__call__ = counting  # type: ignore[method-assign]


class _AfterTheApp(importlib.abc.MetaPathFinder):
    """Toggles once the hub's app module is loaded: it imports the tracing it serves with."""

    def __init__(self, out: str, control: bool, made_only: bool) -> None:
        self._toggle = (out, control, made_only)

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name != "derms_bridge.api.app":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        assert spec is not None
        assert isinstance(spec.loader, importlib.abc.Loader)
        loader = spec.loader
        loaded = loader.exec_module
        toggle = self._toggle

        def exec_module(module: ModuleType) -> None:
            loaded(module)
            _toggled(*toggle)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if (
    os.environ.get("TRACE_TOGGLE_OUT")
    and os.environ.get("DERMS_BRIDGE_TRACING__ENDPOINT")
    and "serve" in sys.argv
):
    sys.meta_path.insert(
        0,
        _AfterTheApp(
            os.environ["TRACE_TOGGLE_OUT"],
            bool(os.environ.get("TRACE_TOGGLE_CONTROL")),
            bool(os.environ.get("TRACE_TOGGLE_MADE_ONLY")),
        ),
    )
