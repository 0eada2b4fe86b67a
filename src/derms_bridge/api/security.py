"""The Authorization header read into a caller: HTTP Basic, or a bearer token."""

from __future__ import annotations

import base64
import binascii

from derms_bridge.credentials import Authenticator, Principal


async def caller_of(authenticator: Authenticator, authorization: str | None) -> Principal | None:
    """The caller the header's credential belongs to, or None for none or a wrong one;
    CredentialChecksBusy when too many password checks wait."""
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
        return await authenticator.check_password(username, password)
    if scheme == "bearer":
        return authenticator.verify_token(credential.strip())
    return None
