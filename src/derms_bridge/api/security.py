"""The Authorization header read into a caller, HTTP Basic or a bearer token, through the
login throttle."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from fastapi import Request

from derms_bridge.credentials import Authenticator, Principal
from derms_bridge.login_throttle import Attempt, LoginThrottle, Way


@dataclass(frozen=True)
class Password:
    username: str
    password: str


@dataclass(frozen=True)
class Token:
    value: str


def credential_in(authorization: str | None) -> Password | Token | None:
    """The credential the header presents; None for none or one that cannot be read."""
    if not authorization:
        return None
    scheme, _, credential = authorization.partition(" ")
    scheme = scheme.lower()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(credential.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        username, _, password = decoded.partition(":")
        return Password(username, password)
    if scheme == "bearer":
        return Token(credential.strip())
    return None


def address_of(request: Request) -> str:
    """The client's address: the proxy's X-Forwarded-For only when the server trusts it
    (server.trusted_proxies, read by uvicorn)."""
    return request.client.host if request.client else "unknown"


async def caller_of(
    throttle: LoginThrottle,
    authenticator: Authenticator,
    authorization: str | None,
    address: str,
    way: Way,
) -> Principal | None:
    """The caller the header's credential belongs to, or None for none or a wrong one;
    Throttled after too many failures, CredentialChecksBusy when too many password checks
    wait."""
    credential = credential_in(authorization)
    if isinstance(credential, Token):
        return await throttle.admit(
            Attempt(None, address, way), authenticator.verify_token(credential.value)
        )
    if isinstance(credential, Password):
        username, password = credential.username, credential.password
        return await throttle.admit(
            Attempt(username, address, way),
            authenticator.remembered(username, password),
            lambda: authenticator.check_password(username, password),
            authenticator.guess(username, password),
        )
    return None
