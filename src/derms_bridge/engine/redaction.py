"""Keeps every configured secret out of logs, emails and error texts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MASK = "********"


class Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text


#: Field names whose values are credentials wherever they appear in a payload.
SECRET_FIELD_WORDS = ("password", "passwd", "secret", "token", "authorization", "apikey", "api_key")


def mask_secret_fields(value: Any) -> Any:
    """The same JSON value with the value of every field named like a credential masked."""
    if isinstance(value, dict):
        return {
            key: MASK
            if any(word in str(key).lower() for word in SECRET_FIELD_WORDS)
            else mask_secret_fields(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [mask_secret_fields(item) for item in value]
    return value
