"""Unit tests need no database, no server and no subprocess: `make unit` runs them alone.

The fixtures that start servers or make databases (tests/conftest.py) are for the other
levels; a unit test asking for one fails here instead of quietly needing PostgreSQL.
"""

from __future__ import annotations

import pytest

SERVER_FIXTURES = frozenset(
    {"database_url", "cpmcs_server", "derms_server", "smtp_server", "ftp_server", "oci_server"}
)


@pytest.fixture(autouse=True)
def no_servers(request: pytest.FixtureRequest) -> None:
    asked = sorted(SERVER_FIXTURES.intersection(request.fixturenames))
    if asked:
        pytest.fail(
            f"a unit test may not need {', '.join(asked)}: move it under tests/integration/",
            pytrace=False,
        )
