"""What the engine's tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

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
