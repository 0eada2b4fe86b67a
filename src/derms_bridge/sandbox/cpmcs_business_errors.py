"""Business errors the simulated CPMCS answers on request: per route, per message number, for
the next N calls or for the calls that name given keys (``/_sim/business-errors``)."""

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class BusinessErrorRule(BaseModel):
    """Answer the calls to ``path`` with this business error, in CPMCS's own shape.

    ``path`` is the route as CPMCS's REST reference writes it (the sync request's with
    ``{syncRequestId}``). With ``keys``, only a call that names one of them (as the value of
    any field of its body, or in its path) is refused; with ``times``, only that many calls
    are, after which the rule stands aside.
    """

    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1)
    message_number: int = Field(ge=-99999, le=99999)
    message: str = Field(default="Refused by the simulated CPMCS", min_length=1)
    status: Literal["ERROR", "VAL-ERROR"] = "ERROR"
    http_status: Literal[400, 422] = 400
    times: int | None = Field(default=None, ge=1)
    keys: list[Annotated[str, Field(min_length=1)]] | None = Field(default=None, min_length=1)


class BusinessErrorSettings(BaseModel):
    """The rules in force; the first that fits a call answers it."""

    model_config = ConfigDict(extra="forbid")

    rules: list[BusinessErrorRule] = []


def _texts(value: Any) -> Iterator[str]:
    """Every string and number a JSON value holds, at any depth, as text."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)
    elif isinstance(value, str):
        yield value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield str(value)


class ScriptedBusinessErrors:
    """The rules put, and how many calls each has refused since."""

    def __init__(self) -> None:
        self._settings = BusinessErrorSettings()
        self._refused: list[int] = []

    @property
    def settings(self) -> BusinessErrorSettings:
        return self._settings

    @settings.setter
    def settings(self, settings: BusinessErrorSettings) -> None:
        # `times` counts from the moment its rules are put.
        self._settings = settings
        self._refused = [0] * len(settings.rules)

    def refusal(
        self, path: str, body: Any, path_values: Iterator[str] | None = None
    ) -> BusinessErrorRule | None:
        """The rule that refuses this call to the route ``path``, counted; None if none does."""
        named: set[str] | None = None
        for index, rule in enumerate(self._settings.rules):
            if rule.path != path:
                continue
            if rule.times is not None and self._refused[index] >= rule.times:
                continue
            if rule.keys is not None:
                if named is None:
                    named = {*_texts(body), *(path_values or ())}
                if named.isdisjoint(rule.keys):
                    continue
            self._refused[index] += 1
            return rule
        return None
