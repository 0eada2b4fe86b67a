"""Failed logins as every hub process sharing the database sees them, each kept by a digest
of its user and of its address, and counted by the pair, by the user and by the address.

A login being checked is kept as a failure until it is known to have succeeded: a claim,
judged and written one at a time, so that logins sent at once see one another."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, case, delete, func, insert, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from derms_bridge.store.instances import InstanceStore, as_utc, utcnow
from derms_bridge.store.tables import LoginFailureRow


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Tally:
    """The failures of one key within the window, and when the oldest of them was."""

    count: int
    oldest: datetime | None


@dataclass(frozen=True)
class Tallies:
    pair: Tally
    user: Tally
    address: Tally


class LoginFailures:
    def __init__(self, instances: InstanceStore, window: timedelta) -> None:
        self._instances = instances
        self.window = window

    async def tallies(self, user: str, address: str) -> Tallies:
        """The failures within the window of `user` from `address`, of `user` from anywhere,
        and from `address` whoever the user."""
        async with self._instances.engine.connect() as connection:
            return await self._tallies(connection, user, address)

    async def _tallies(self, connection: AsyncConnection, user: str, address: str) -> Tallies:
        by_user = LoginFailureRow.user_digest == _digest(user)
        by_address = LoginFailureRow.address_digest == _digest(address)
        keys: list[ColumnElement[bool]] = [and_(by_user, by_address), by_user, by_address]
        columns = []
        for key in keys:
            columns += [func.count(case((key, 1))), func.min(case((key, LoginFailureRow.at)))]
        row = (
            await connection.execute(
                select(*columns).where(
                    LoginFailureRow.at >= utcnow() - self.window, or_(by_user, by_address)
                )
            )
        ).one()
        pair, of_user, of_address = (
            Tally(count=row[i], oldest=as_utc(row[i + 1]) if row[i + 1] else None)
            for i in (0, 2, 4)
        )
        return Tallies(pair=pair, user=of_user, address=of_address)

    async def claim(self, user: str, address: str, judge: Callable[[Tallies], None]) -> int:
        """One more failure of `user` from `address`, unless `judge`, given the failures
        with this one, raises: then nothing is written. Claims are taken one at a time
        across every hub process (a table lock on PostgreSQL, SQLite's one writer), so each
        is judged with every claim before it. The failures older than the window are
        forgotten."""
        now = utcnow()
        async with self._instances.writing() as connection:
            if connection.dialect.name == "postgresql":
                # Reads go on; only other claims and deletions wait for this one.
                await connection.execute(
                    text("LOCK TABLE login_failures IN SHARE ROW EXCLUSIVE MODE")
                )
            claim: int = (
                await connection.execute(
                    insert(LoginFailureRow)
                    .values(user_digest=_digest(user), address_digest=_digest(address), at=now)
                    .returning(LoginFailureRow.id)
                )
            ).scalar_one()
            judge(await self._tallies(connection, user, address))
            await connection.execute(
                delete(LoginFailureRow).where(LoginFailureRow.at < now - self.window)
            )
        return claim

    async def release(self, claim: int) -> None:
        """The claimed login was never checked: it is no failure."""
        async with self._instances.writing() as connection:
            await connection.execute(delete(LoginFailureRow).where(LoginFailureRow.id == claim))

    async def forgive(self, user: str, address: str) -> None:
        """`user` logged in from `address`: its failures from there are forgotten, and only
        those."""
        async with self._instances.writing() as connection:
            await connection.execute(
                delete(LoginFailureRow).where(
                    LoginFailureRow.user_digest == _digest(user),
                    LoginFailureRow.address_digest == _digest(address),
                )
            )
