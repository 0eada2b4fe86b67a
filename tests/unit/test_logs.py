"""JSON log lines: the running instance's id and flow on every line, the trace id in a trace,
secrets masked."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from derms_bridge import tracing
from derms_bridge.engine.redaction import Redactor
from derms_bridge.logs import JsonLines, instance_logged

log = logging.getLogger("derms_bridge.test")


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLines(Redactor(["s3cret-password"])))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    yield stream
    log.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_lines_inside_an_instance_carry_it_and_a_child_carries_its_own(
    output: io.StringIO,
) -> None:
    log.info("before")
    with instance_logged("parent-id", "program_rule_sync"):
        log.info("parent")
        with instance_logged("child-id", "sync_ack"):
            log.info("child")
        log.info("parent again")
    log.info("after")

    assert [(e["message"], e.get("instance_id"), e.get("flow")) for e in lines(output)] == [
        ("before", None, None),
        ("parent", "parent-id", "program_rule_sync"),
        ("child", "child-id", "sync_ack"),
        ("parent again", "parent-id", "program_rule_sync"),
        ("after", None, None),
    ]


async def test_tasks_started_by_an_instance_log_as_it(output: io.StringIO) -> None:
    async def one_call(n: int) -> None:
        await asyncio.sleep(0)
        log.info("call %d", n)

    with instance_logged("batch-id", "enrollment_request"):
        await asyncio.gather(*(one_call(n) for n in range(3)))

    assert {(e["instance_id"], e["flow"]) for e in lines(output)} == {
        ("batch-id", "enrollment_request")
    }


def test_a_line_about_another_instance_keeps_its_own_id(output: io.StringIO) -> None:
    with instance_logged("running-id", "enrollment_request"):
        log.warning("about another", extra={"instance_id": "other-id"})

    [entry] = lines(output)
    assert entry["instance_id"] == "other-id"
    assert "flow" not in entry


def test_secrets_are_masked_in_message_fields_and_tracebacks(output: io.StringIO) -> None:
    try:
        raise RuntimeError("login with s3cret-password failed")
    except RuntimeError:
        log.exception("call s3cret-password", extra={"error": "s3cret-password refused"})

    text = output.getvalue()
    assert "s3cret-password" not in text
    assert "********" in lines(output)[0]["error"]


def test_lines_inside_a_trace_carry_its_id_and_others_none(output: io.StringIO) -> None:
    caller = tracing.continued({"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01"})
    with (
        tracing.span("instance program_rule_sync", parent=caller),
        instance_logged("traced-id", "program_rule_sync"),
    ):
        log.info("inside")
    log.info("after")

    inside, after = lines(output)
    assert (inside["instance_id"], inside["trace_id"]) == ("traced-id", "ab" * 16)
    assert "trace_id" not in after
