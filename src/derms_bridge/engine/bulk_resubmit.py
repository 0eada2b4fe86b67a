"""Resubmitting many failed instances at once, a few at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from derms_bridge.engine.runner import FlowEngine, InstanceNotFound, NotResubmittable


@dataclass
class BulkOutcome:
    succeeded: int = 0
    failed: int = 0
    #: File flows run again in the background; their outcome shows on their page later.
    running: int = 0
    refused: list[str] = field(default_factory=list)


async def resubmit_many(
    engine: FlowEngine, instance_ids: Sequence[str], *, caller: str, concurrency: int = 4
) -> BulkOutcome:
    outcome = BulkOutcome()
    # Bounded so that a bulk run does not crowd out the traffic the hub serves meanwhile.
    gate = asyncio.Semaphore(concurrency)

    async def one(instance_id: str) -> None:
        async with gate:
            try:
                run = await engine.resubmit(instance_id, caller=caller)
            except (InstanceNotFound, NotResubmittable) as exc:
                outcome.refused.append(f"{instance_id}: {exc}")
                return
        # A skipped message is one the reference leaves alone: that is its right end.
        if run.status in ("succeeded", "skipped"):
            outcome.succeeded += 1
        elif run.status == "in_progress":
            outcome.running += 1
        else:
            outcome.failed += 1

    await asyncio.gather(*(one(instance_id) for instance_id in instance_ids))
    return outcome
