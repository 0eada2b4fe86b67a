"""Who may call the hub: HTTP Basic with an argon2 hash, or a bearer token, per caller."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from derms_bridge.settings import Caller, Role

_hasher = PasswordHasher()
# Verified against when the username is unknown, so both cases take as long.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role


class Authenticator:
    def __init__(self, callers: Mapping[str, Caller]) -> None:
        self._by_username = {c.username: (name, c) for name, c in callers.items() if c.username}
        self._tokens = [
            (name, c, c.token_sha256.get_secret_value().lower())
            for name, c in callers.items()
            if c.token_sha256 is not None
        ]
        # argon2 is slow by design; a credential verified once is remembered by a keyed
        # digest that is useless outside this process.
        self._cache_key = secrets.token_bytes(32)
        self._verified: dict[bytes, Principal] = {}

    def _digest(self, value: str) -> bytes:
        return hashlib.blake2b(value.encode(), key=self._cache_key).digest()

    def _basic(self, encoded: str) -> Principal | None:
        try:
            username, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return self.verify_password(username, password)

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

    def _bearer(self, token: str) -> Principal | None:
        presented = hash_token(token)
        found = None
        for name, caller, expected in self._tokens:
            if hmac.compare_digest(presented, expected):
                found = Principal(name=name, role=caller.role)
        return found

    def authenticate(self, authorization: str | None) -> Principal | None:
        if not authorization:
            return None
        scheme, _, credential = authorization.partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            return self._basic(credential.strip())
        if scheme == "bearer":
            return self._bearer(credential.strip())
        return None
