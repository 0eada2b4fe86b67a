"""Logs as JSON lines, each carrying the instance id and flow when there is one, and the
trace id when the line is logged in a trace.

The engine names the instance it runs with `instance_logged`; every line logged
while it runs, by any module and in any task it starts, carries its id and flow. Every
instance is a trace (tracing.py), so its lines carry its trace id too, those its file's
segments and acknowledgement log in a worker as well.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

from derms_bridge.tracing import current_trace_id

_CONTEXT_FIELDS = ("instance_id", "flow", "error")

#: (instance id, flow key) of the instance being run in this context, if any.
_running: ContextVar[tuple[str, str] | None] = ContextVar("derms_bridge_instance", default=None)


@contextmanager
def instance_logged(instance_id: str, flow: str) -> Iterator[None]:
    """Lines logged inside carry this instance's id and flow; a child instance's own
    block names the child, and the parent's comes back after it."""
    token = _running.set((instance_id, flow))
    try:
        yield
    finally:
        _running.reset(token)


def _unmasked(text: str) -> str:
    return text


class JsonLines(logging.Formatter):
    def __init__(self, redact: Callable[[str], str] = _unmasked) -> None:
        super().__init__()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": self._redact(record.getMessage()),
        }
        running = _running.get()
        named = getattr(record, "instance_id", None)
        if running is not None and named in (None, running[0]):
            entry["instance_id"], entry["flow"] = running
        trace_id = current_trace_id()
        if trace_id is not None:
            entry["trace_id"] = trace_id
        for name in _CONTEXT_FIELDS:
            if hasattr(record, name):
                value = getattr(record, name)
                entry[name] = self._redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exception"] = self._redact(self.formatException(record.exc_info))
        return self._redact(json.dumps(entry, default=str))


def configure_logging(level: str = "INFO", redact: Callable[[str], str] = _unmasked) -> None:
    """JSON lines on standard error; `redact` masks the configured secrets in every line."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLines(redact))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
