"""The systems the hub calls (CPMCS, DERMS) and the callers it lets in."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AnyHttpUrl,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from derms_bridge.settings.common import Secret, Strict, Timeouts, readable_ca_bundle


class BasicAuth(Strict):
    type: Literal["basic"] = "basic"
    username: str = Field(min_length=1)
    password: Secret


class OAuth2ClientCredentials(Strict):
    type: Literal["oauth2"] = "oauth2"
    token_url: AnyHttpUrl
    client_id: str = Field(min_length=1)
    client_secret: Secret
    scope: str | None = None


OutboundAuth = Annotated[BasicAuth | OAuth2ClientCredentials, Field(discriminator="type")]


class Connection(Strict):
    """One outside system the hub calls."""

    base_url: AnyHttpUrl
    timeouts: Timeouts = Timeouts()
    auth: OutboundAuth | None = None
    ca_bundle: Path | None = Field(
        None, description="PEM file of the CA that signs this system's certificate"
    )
    max_connections: int = Field(100, ge=1)

    @field_validator("base_url")
    @classmethod
    def _no_credentials_in_url(cls, value: AnyHttpUrl) -> AnyHttpUrl:
        if value.username or value.password:
            raise ValueError("put credentials under auth, not in base_url")
        return value

    _ca_bundle_readable = field_validator("ca_bundle")(readable_ca_bundle)


class Connections(Strict):
    cpmcs: Connection
    derms: dict[str, Connection] = Field(
        description="named DERMS connections; the Routing lookup picks one by division",
    )

    @field_validator("derms")
    @classmethod
    def _derms_not_empty(cls, value: dict[str, Connection]) -> dict[str, Connection]:
        if not value:
            raise ValueError("at least one DERMS connection is needed")
        return value


Role = Literal["derms", "cpmcs", "operator"]


def sha256_hex(value: SecretStr | None) -> SecretStr | None:
    if value is not None:
        digest = value.get_secret_value()
        if len(digest) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digest):
            raise ValueError("token_sha256 must be 64 hex digits (derms-bridge hash-token)")
        if set(digest) == {"0"}:
            raise ValueError(
                "token_sha256 is the example's placeholder: put the hash that "
                "`derms-bridge hash-token` prints"
            )
    return value


#: An argon2 hash as `derms-bridge hash-password` writes it (PHC string format).
_ARGON2_HASH = re.compile(
    r"\$argon2(?:id|i|d)\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]{11,}\$[A-Za-z0-9+/]{16,}"
)


class Caller(Strict):
    """A system or person allowed to call the hub."""

    role: Role
    username: str | None = Field(None, min_length=1)
    password_hash: SecretStr | None = Field(
        None, description="argon2 hash, made with `derms-bridge hash-password`"
    )
    token_sha256: SecretStr | None = Field(
        None, description="hex SHA-256 of a bearer token, made with `derms-bridge hash-token`"
    )
    derms_connection: str | None = Field(
        None,
        description="for a DERMS caller: the `derms` connection that the acknowledgements of "
        "the files it sends (flows 7, 8) go back to; unset: the Routing lookup's `*` row",
    )

    _issha256_hex = field_validator("token_sha256")(sha256_hex)

    @model_validator(mode="after")
    def _only_derms_sends_files(self) -> Caller:
        if self.derms_connection is not None and self.role != "derms":
            raise ValueError(
                "derms_connection: only a caller of role derms sends files to acknowledge"
            )
        return self

    @model_validator(mode="after")
    def _has_a_credential(self) -> Caller:
        basic = self.username is not None and self.password_hash is not None
        if not basic and self.token_sha256 is None:
            raise ValueError("a caller needs username and password_hash, or token_sha256")
        if (self.username is None) != (self.password_hash is None):
            raise ValueError("username and password_hash go together")
        if self.password_hash is not None and not _ARGON2_HASH.fullmatch(
            self.password_hash.get_secret_value()
        ):
            raise ValueError(
                "password_hash must be an argon2 hash as `derms-bridge hash-password` prints "
                "it, not a plain password or the example's placeholder"
            )
        return self
