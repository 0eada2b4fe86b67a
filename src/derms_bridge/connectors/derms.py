"""Edge DERMS's inbound services; the Routing lookup picks the connection by division."""

from __future__ import annotations

from collections.abc import AsyncIterable, Mapping
from typing import TypeVar
from urllib.parse import quote

from pydantic import BaseModel

from derms_bridge.connectors.http import CallObserver, HttpConnection, model_reader
from derms_bridge.errors import ConfigurationError
from derms_bridge.lookups import Lookups

M = TypeVar("M", bound=BaseModel)

#: operation -> path, under the base URL of the DERMS connection the division routes to.
OPERATIONS: dict[str, str] = {
    "enroll": "/enroll",
    "statusCheck": "/status-check",
    "optOut": "/dacs-opt-out",
    "updateProgram": "/update-program",
    "updateAggregator": "/update-aggregator",
    "deviceReservationAck": "/device-reservation-ack",
    "deviceOutcomeAck": "/device-outcome-ack",
    "deviceScore": "/device-score",
}


class DermsClient:
    """DERMS for one flow run."""

    def __init__(
        self,
        connections: Mapping[str, HttpConnection],
        lookups: Lookups,
        observer: CallObserver | None = None,
    ) -> None:
        self._connections = connections
        self._lookups = lookups
        self._observer = observer

    def connection_for(self, division: str | None) -> HttpConnection:
        name = self._lookups.derms_connection_for(division)
        connection = self._connections.get(name)
        if connection is None:
            raise ConfigurationError(
                f"the Routing lookup sends division {division!r} to DERMS connection "
                f"{name!r}, which the settings do not define"
            )
        return connection

    async def send(
        self, operation: str, body: BaseModel, answer: type[M], *, division: str | None
    ) -> M:
        """POST to the division's DERMS; its answer read as `answer`, or a TechnicalFault."""
        return await self.connection_for(division).call(
            operation,
            "POST",
            OPERATIONS[operation],
            json=body.model_dump(mode="json", exclude_none=True),
            read=model_reader(answer, "DERMS", operation),
            observer=self._observer,
        )

    async def deliver(self, operation: str, body: BaseModel, *, division: str | None) -> None:
        """POST to the division's DERMS; any 2xx is done, whatever its body holds."""
        await self.connection_for(division).call(
            operation,
            "POST",
            OPERATIONS[operation],
            json=body.model_dump(mode="json", exclude_none=True),
            read=lambda _answer: None,
            observer=self._observer,
        )

    async def upload(
        self, operation: str, file_name: str, chunks: AsyncIterable[bytes], *, division: str | None
    ) -> int:
        """Stream a file as the raw body to {operation's path}/{file name, URL-encoded};
        DERMS's HTTP status (a TechnicalFault when no answer came)."""
        return await self.connection_for(division).upload(
            operation,
            f"{OPERATIONS[operation]}/{quote(file_name, safe='')}",
            chunks,
            content_type="application/octet-stream",
            observer=self._observer,
        )
