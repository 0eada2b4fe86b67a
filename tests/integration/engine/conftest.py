"""What the engine's tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from derms_bridge.schemas.ops import Activity
from derms_bridge.store.database import open_engine
from derms_bridge.store.instances import InstanceStore
from tests.conftest import empty_tables


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[InstanceStore]:
    """An instance store on each database, its tables emptied first."""
    empty_tables(database_url)
    instances = InstanceStore(open_engine(database_url))
    yield instances
    await instances.aclose()


def unanswered_opt_out(at: datetime) -> Activity:
    """A call to DERMS that got no answer: an activity whose method, path and status are
    empty, its duration fractional."""
    return Activity(
        target="derms",
        operation="dacsOptOut",
        method=None,
        path=None,
        http_status=None,
        duration_ms=30000.25,
        error="DERMS did not answer dacsOptOut within 30 s",
        at=at,
    )


def answered_call(target: str) -> Activity:
    """A call that `target` answered 200 to."""
    return Activity(
        target=target,
        operation="updateStageStatus",
        method="POST",
        path="/stages",
        http_status=200,
        duration_ms=2.5,
        error=None,
        at=datetime.now(UTC),
    )
