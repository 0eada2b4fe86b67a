"""Big JSON messages read in a process of their own, so that reading them never stalls the
event loop.

Reading JSON and validating it hold the interpreter's lock for all they take (a flow 1
batch of 1,000 records with 100 assets each, 19.5 MB, takes about 0.6 s here): in a thread
they would stall the event loop as surely as on it, and every other request with it. A
message of OFF_LOOP_BYTES or more is therefore read and validated by a worker process; the
event loop only takes back the validated message (about a fifth of the work), or the
reason it was refused. Smaller ones cost less than the trip to the process.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from derms_bridge import metrics
from derms_bridge.flows.registry import SYNC_FLOWS

#: A message body of this size or more is read by the worker process.
OFF_LOOP_BYTES = 256 * 1024

#: Big messages waiting for the worker process at most; past it a sender is asked to come
#: back (503), as when too many password checks wait.
MOST_WAITING = 8


class BigMessagesBusy(Exception):
    """Too many big messages wait to be read: send again in a moment."""


@dataclass(frozen=True)
class Unreadable:
    """The body is not JSON the hub reads: bytes that are not UTF-8, nesting too deep, a
    number of too many digits; `cause` is what json.loads raised."""

    cause: BaseException


@dataclass(frozen=True)
class Invalid:
    """The body breaks the message's model (or JSON's syntax): the errors as FastAPI words
    them, located under "body"."""

    errors: list[dict[str, Any]]


def read_message(flow_key: str, body: bytes) -> BaseModel | Unreadable | Invalid:
    """The flow's message in `body`, validated as its route would, in the worker process."""
    try:
        found = json.loads(body)
    except json.JSONDecodeError as exc:
        syntax = {"error": exc.msg}
        return Invalid(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", exc.pos),
                    "msg": "JSON decode error",
                    "ctx": syntax,
                }
            ]
        )
    except (UnicodeDecodeError, RecursionError, ValueError) as exc:
        return Unreadable(exc)
    try:
        message: BaseModel = SYNC_FLOWS[flow_key].message_model.model_validate(found)
    except ValidationError as exc:
        return Invalid(
            [
                {"type": error["type"], "loc": ("body", *error["loc"]), "msg": error["msg"]}
                for error in exc.errors(include_url=False, include_input=False)
            ]
        )
    return message


class BigMessages:
    """One worker process, started with the first big message; `close` it with the hub."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._waiting = 0

    async def read(self, flow_key: str, body: bytes) -> BaseModel | Unreadable | Invalid:
        if self._waiting >= MOST_WAITING:
            raise BigMessagesBusy
        self._waiting += 1
        try:
            if self._pool is None:
                # Spawned, not forked: a fork would copy the hub's threads' locks mid-use.
                self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
            read = await asyncio.get_running_loop().run_in_executor(
                self._pool, read_message, flow_key, body
            )
        finally:
            self._waiting -= 1
        metrics.BIG_MESSAGES_READ.inc()
        return read

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
