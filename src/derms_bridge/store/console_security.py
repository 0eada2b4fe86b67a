"""The console's logins and logouts as every hub process sharing the database sees them:
failed logins counted against a user and an address, and sessions logged out of, whose
cookie is refused from then on."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from derms_bridge.store.instances import InstanceStore, as_utc, utcnow
from derms_bridge.store.tables import ConsoleLoginFailureRow, ConsoleLogoutRow


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


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class LoginFailures:
    """Failed logins by key ("user:<name>", "address:<ip>"), for `pause` each."""

    def __init__(self, instances: InstanceStore, pause: timedelta) -> None:
        self._instances = instances
        self.pause = pause

    async def recent(self, key: str, count: int) -> list[datetime]:
        """The last `count` failures of `key` within the pause, newest first."""
        async with self._instances.engine.connect() as connection:
            moments = await connection.scalars(
                select(ConsoleLoginFailureRow.at)
                .where(
                    ConsoleLoginFailureRow.key_digest == _digest(key),
                    ConsoleLoginFailureRow.at >= utcnow() - self.pause,
                )
                .order_by(ConsoleLoginFailureRow.at.desc())
                .limit(count)
            )
            return [as_utc(moment) for moment in moments]

    async def failed(self, *keys: str) -> None:
        """One more failure of each key; the failures older than the pause are forgotten."""
        now = utcnow()
        async with self._instances.writing() as connection:
            await connection.execute(
                delete(ConsoleLoginFailureRow).where(ConsoleLoginFailureRow.at < now - self.pause)
            )
            await connection.execute(
                insert(ConsoleLoginFailureRow),
                [{"key_digest": _digest(key), "at": now} for key in keys],
            )

    async def forget(self, key: str) -> None:
        async with self._instances.writing() as connection:
            await connection.execute(
                delete(ConsoleLoginFailureRow).where(
                    ConsoleLoginFailureRow.key_digest == _digest(key)
                )
            )
