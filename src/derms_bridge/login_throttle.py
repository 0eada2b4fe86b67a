"""One throttle for every way into the hub (the API's Basic auth and bearer tokens, /metrics,
the console's login), counted in the database so that every hub process counts alike.

A login is refused unchecked while too many failures lie within the window for its user
from its address, for its address whoever the user, or for its user from anywhere (the
looser limits). A login that is checked is first claimed as a failure, the claims judged
one at a time in the database: logins sent at once see one another's claims, so no more
than the limit of them are ever checked. A login that succeeds forgives the failures of
its user from its address, and no others.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from derms_bridge import metrics
from derms_bridge.settings import LoginLimits
from derms_bridge.store.login_failures import LoginFailures, Tallies, Tally

Way = Literal["api", "metrics", "console"]

Admitted = TypeVar("Admitted")


@dataclass(frozen=True)
class Attempt:
    #: The user name given; None for a bearer token, which names no one until it matches.
    username: str | None
    address: str
    way: Way

    @property
    def user_key(self) -> str:
        return "bearer" if self.username is None else f"user:{self.username}"


class Throttled(Exception):
    """Too many failed logins: the attempt was refused without checking its credential."""

    def __init__(self, wait: timedelta) -> None:
        super().__init__(f"too many failed logins: try again in {wait}")
        #: Whole seconds until a login may be tried again, at least 1.
        self.retry_after = max(1, math.ceil(wait.total_seconds()))


async def _nothing_to_check() -> None:
    return None


#: How long a user and address found with no failure are let in on a known credential
#: without reading the failures again: a busy caller would otherwise read them on every
#: request. A lockout that another hub process makes holds here this much later at most;
#: one this process makes, at once.
CLEAR_FOR_SECONDS = 1.0

#: Users and addresses remembered as clear, at most: the memory is dropped past it.
MOST_REMEMBERED_CLEAR = 10_000


class LoginThrottle:
    def __init__(self, failures: LoginFailures, limits: LoginLimits) -> None:
        self._failures = failures
        self._limits = limits
        # Logins being checked in this process, per (user, address).
        self._checking: Counter[tuple[str, str]] = Counter()
        # (user, address) -> until when (monotonic) it is let in unread on a known credential.
        self._clear_until: dict[tuple[str, str], float] = {}
        # (user, address, guess) being checked -> its answer, for the same logins meanwhile.
        self._answering: dict[tuple[str, str, bytes], asyncio.Future[Any]] = {}
        # (user, address) -> the read of its failures under way for logins on a known
        # credential, which the others meanwhile share.
        self._reading: dict[tuple[str, str], asyncio.Future[Tallies]] = {}

    async def admit(
        self,
        attempt: Attempt,
        known: Admitted | None,
        check: Callable[[], Awaitable[Admitted | None]] = _nothing_to_check,
        guess: bytes | None = None,
    ) -> Admitted | None:
        """What `known` or else `check` finds the credential to be, or None when it is wrong;
        Throttled, without checking, when too many logins failed.

        `known` is what is answered at once for a credential known to be right (a verified
        password remembered, a token that matches); it is taken without writing anything
        only while no other login of the same user and address is being checked, so that
        logins sent together cannot test passwords against what is remembered.

        `guess` tells the credential from others (Authenticator.guess): logins of the same
        user and address with the same guess while one is being checked wait for its answer
        and share it. They are one guess, and a caller's first burst of requests (before its
        password is remembered) would otherwise be claimed as that many failures and
        throttled."""
        if known is not None or guess is None:
            return await self._admit(attempt, known, check)
        same = (attempt.user_key, attempt.address, guess)
        if (answer := self._answering.get(same)) is not None:
            found: Admitted | None = await asyncio.shield(answer)
            return found
        answer = asyncio.get_running_loop().create_future()
        # Taken, so that a failure no other login waited for is not reported unretrieved.
        answer.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._answering[same] = answer
        try:
            found = await self._admit(attempt, known, check)
        except asyncio.CancelledError:
            answer.cancel()
            raise
        except BaseException as exc:
            answer.set_exception(exc)
            raise
        else:
            answer.set_result(found)
            return found
        finally:
            del self._answering[same]

    async def _admit(
        self,
        attempt: Attempt,
        known: Admitted | None,
        check: Callable[[], Awaitable[Admitted | None]],
    ) -> Admitted | None:
        user, address = attempt.user_key, attempt.address
        pair = (user, address)
        if (
            known is not None
            and not self._checking[pair]
            and self._clear_until.get(pair, 0.0) > time.monotonic()
        ):
            return known
        if known is not None and not self._checking[pair]:
            tallies = await self._shared_tallies(pair)
        else:
            tallies = await self._failures.tallies(user, address)
        self._refuse_when_past_limits(attempt, tallies, 0)
        if known is not None and not self._checking[pair]:
            if tallies.pair.count:
                await self._failures.forgive(user, address)
            elif not (tallies.address.count or tallies.user.count):
                self._remember_clear(pair)
            return known
        # A failure claimed here may bring any user or address to its limit.
        self._clear_until.clear()
        self._checking[pair] += 1
        try:
            claim = await self._failures.claim(
                user, address, lambda tallies: self._refuse_when_past_limits(attempt, tallies, 1)
            )
            try:
                found = known if known is not None else await check()
            except BaseException:
                # Too busy to check, or cut off: no credential was judged.
                await self._failures.release(claim)
                raise
            if found is not None:
                await self._failures.forgive(user, address)
            return found
        finally:
            self._checking[pair] -= 1
            if not self._checking[pair]:
                del self._checking[pair]

    async def _shared_tallies(self, pair: tuple[str, str]) -> Tallies:
        """The failures of a user and address, one read for all the logins on a known
        credential that come while it is under way: once the pair's clear mark runs out, a
        busy caller's requests in flight would each read them, at once."""
        reading = self._reading.get(pair)
        if reading is None:
            reading = asyncio.ensure_future(self._failures.tallies(*pair))
            self._reading[pair] = reading

            def done(read: asyncio.Future[Tallies]) -> None:
                del self._reading[pair]
                if not read.cancelled():
                    # Taken, so that a failure no login waited for is not reported unretrieved.
                    read.exception()

            reading.add_done_callback(done)
        return await asyncio.shield(reading)

    def _remember_clear(self, pair: tuple[str, str]) -> None:
        if len(self._clear_until) >= MOST_REMEMBERED_CLEAR:
            self._clear_until.clear()
        self._clear_until[pair] = time.monotonic() + CLEAR_FOR_SECONDS

    def _refuse_when_past_limits(self, attempt: Attempt, tallies: Tallies, own: int) -> None:
        """Throttled when, besides the attempt's `own` claim, a key's failures reach its
        limit; the wait lasts until the oldest of them leaves the window."""
        limited: list[tuple[Tally, int]] = [
            (tallies.pair, self._limits.per_user_and_address),
            (tallies.address, self._limits.per_address),
        ]
        if attempt.username is not None:
            limited.append((tallies.user, self._limits.per_user))
        window = self._failures.window
        now = datetime.now(UTC)
        waits = [
            tally.oldest + window - now
            for tally, limit in limited
            if tally.count - own >= limit and tally.oldest is not None
        ]
        if waits:
            metrics.LOGINS_THROTTLED.labels(attempt.way).inc()
            raise Throttled(max(waits))
