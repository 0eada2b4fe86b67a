"""Who may call the hub: a password checked against its argon2 hash, or a bearer token
against its SHA-256, per caller."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from derms_bridge.settings.connections import Caller, Role

_hasher = PasswordHasher()
# Verified against when the username is unknown, so both cases take as long.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, token_sha256: str) -> bool:
    """Whether `token` hashes to `token_sha256`, in the same time whatever it is."""
    return hmac.compare_digest(hash_token(token), token_sha256.lower())


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role


#: Password checks run at once: argon2 takes about 100 ms of a core each, on purpose.
CHECKS_AT_ONCE = 2

#: Password checks that may wait for their turn; past this a caller is told to come back.
CHECKS_WAITING = 64


class CredentialChecksBusy(Exception):
    """More password checks wait than the hub takes: a flood, most likely of wrong ones."""


class Authenticator:
    def __init__(self, callers: Mapping[str, Caller]) -> None:
        self._checks = asyncio.Semaphore(CHECKS_AT_ONCE)
        self._checks_waiting = 0
        self._by_username = {c.username: (name, c) for name, c in callers.items() if c.username}
        self._tokens = [
            (name, c, c.token_sha256.get_secret_value())
            for name, c in callers.items()
            if c.token_sha256 is not None
        ]
        # argon2 is slow by design; a credential verified once is remembered by a keyed
        # digest that is useless outside this process.
        self._cache_key = secrets.token_bytes(32)
        self._verified: dict[bytes, Principal] = {}

    def _digest(self, value: str) -> bytes:
        return hashlib.blake2b(value.encode(), key=self._cache_key).digest()

    def guess(self, username: str, password: str) -> bytes:
        """What tells these credentials from others in this process, and nowhere else."""
        return self._digest(f"{username}\x00{password}")

    def remembered(self, username: str, password: str) -> Principal | None:
        """The caller these credentials were verified as before in this process, if any."""
        return self._verified.get(self.guess(username, password))

    async def check_password(self, username: str, password: str) -> Principal | None:
        """verify_password off the event loop, a few at a time, so that a flood of wrong
        passwords neither blocks the loop nor makes a known caller wait: a credential
        verified before is answered at once. CredentialChecksBusy when too many wait."""
        remembered = self.remembered(username, password)
        if remembered is not None:
            return remembered
        if self._checks_waiting >= CHECKS_WAITING:
            raise CredentialChecksBusy
        self._checks_waiting += 1
        try:
            async with self._checks:
                return await asyncio.to_thread(self.verify_password, username, password)
        finally:
            self._checks_waiting -= 1

    def verify_password(self, username: str, password: str) -> Principal | None:
        """The caller these credentials belong to, or None, in the same time either way."""
        digest = self._digest(f"{username}\x00{password}")
        remembered = self._verified.get(digest)
        if remembered is not None:
            return remembered
        name, caller = self._by_username.get(username, (None, None))
        stored = (
            caller.password_hash.get_secret_value() if caller and caller.password_hash else None
        )
        try:
            _hasher.verify(stored or _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        if caller is None or name is None:
            return None
        principal = Principal(name=name, role=caller.role)
        self._verified[digest] = principal
        return principal

    def verify_token(self, token: str) -> Principal | None:
        """The caller this bearer token belongs to, or None; every caller's is compared."""
        found = None
        for name, caller, expected in self._tokens:
            if token_matches(token, expected):
                found = Principal(name=name, role=caller.role)
        return found
