"""The console's login session: a signed, expiring cookie carrying the operator and a CSRF token.

The cookie is signed with itsdangerous (the library Starlette's own sessions use) so that
every hub process behind one address accepts it; only a logout is kept on the server (in
the database), so that a copy of the cookie is worth nothing after it. The
CSRF token is the synchronizer-token pattern: one random value per session, put in every
form and htmx request by the page and compared here on every unsafe method.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

COOKIE_NAME = "derms_console_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class ConsoleSession:
    csrf_token: str
    #: The caller's name in the settings; None before the login.
    operator: str | None = None

    @classmethod
    def anonymous(cls) -> ConsoleSession:
        return cls(csrf_token=secrets.token_urlsafe(32))

    @classmethod
    def logged_in(cls, operator: str) -> ConsoleSession:
        # A new token at login, so that one planted before it is worth nothing after.
        return cls(csrf_token=secrets.token_urlsafe(32), operator=operator)

    @property
    def digest(self) -> str:
        """The session's name where it is kept as logged out: its token's SHA-256, so
        that what is kept cannot be replayed as a token."""
        return hashlib.sha256(self.csrf_token.encode()).hexdigest()


class SessionCookies:
    def __init__(self, secret: str, max_age_seconds: int, behind_proxy: bool) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="derms-bridge console session")
        self._max_age = max_age_seconds
        self.max_age = timedelta(seconds=max_age_seconds)
        self._behind_proxy = behind_proxy

    def read(self, request: Request) -> ConsoleSession | None:
        raw = request.cookies.get(COOKIE_NAME)
        if not raw:
            return None
        try:
            data = self._serializer.loads(raw, max_age=self._max_age)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("csrf"), str):
            return None
        operator = data.get("operator")
        return ConsoleSession(
            csrf_token=data["csrf"], operator=operator if isinstance(operator, str) else None
        )

    def over_tls(self, request: Request) -> bool:
        if request.url.scheme == "https":
            return True
        if not self._behind_proxy:
            return False
        forwarded = request.headers.get("x-forwarded-proto", "")
        return forwarded.split(",", 1)[0].strip().lower() == "https"

    def write(self, response: Response, request: Request, session: ConsoleSession) -> None:
        value = self._serializer.dumps({"csrf": session.csrf_token, "operator": session.operator})
        response.set_cookie(
            COOKIE_NAME,
            value,
            max_age=self._max_age,
            path="/console",
            httponly=True,
            samesite="lax",
            secure=self.over_tls(request),
        )

    def clear(self, response: Response, request: Request) -> None:
        response.delete_cookie(
            COOKIE_NAME,
            path="/console",
            httponly=True,
            samesite="lax",
            secure=self.over_tls(request),
        )


def csrf_token_matches(session: ConsoleSession | None, presented: str | None) -> bool:
    if session is None or not presented:
        return False
    return hmac.compare_digest(session.csrf_token.encode(), presented.encode())
