"""The console's logouts as every hub process sharing the database sees them: sessions
logged out of, whose cookie is refused from then on."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from derms_bridge.store.instances import InstanceStore, utcnow
from derms_bridge.store.tables import ConsoleLogoutRow


class ConsoleLogouts:
    def __init__(self, instances: InstanceStore) -> None:
        self._instances = instances
        self._insert = (
            postgresql.insert if instances.engine.dialect.name == "postgresql" else sqlite.insert
        )

    async def log_out(self, session_digest: str, until: datetime) -> None:
        """Refuse the session until `until`, when its cookie expires anyway; the logouts
        past theirs are forgotten."""
        async with self._instances.writing() as connection:
            await connection.execute(
                delete(ConsoleLogoutRow).where(ConsoleLogoutRow.until < utcnow())
            )
            await connection.execute(
                self._insert(ConsoleLogoutRow)
                .values(session_digest=session_digest, until=until)
                .on_conflict_do_nothing()
            )

    async def logged_out(self, session_digest: str) -> bool:
        async with self._instances.engine.connect() as connection:
            found = await connection.scalar(
                select(ConsoleLogoutRow.session_digest).where(
                    ConsoleLogoutRow.session_digest == session_digest
                )
            )
            return found is not None
