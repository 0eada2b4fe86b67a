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
    """DERMS for one flow run: the connection the Routing lookup picks by division, or for a
    file job (flows 7, 8) `connection`, the DERMS that sent the file, whatever the division."""

    def __init__(
        self,
        connections: Mapping[str, HttpConnection],
        lookups: Lookups,
        observer: CallObserver | None = None,
        *,
        connection: str | None = None,
    ) -> None:
        self._connections = connections
        self._lookups = lookups
        self._observer = observer
        self._connection = connection

    def connection_for(self, division: str | None) -> HttpConnection:
        if self._connection is not None:
            name = self._connection
            why = "the file came from"
        else:
            name = self._lookups.derms_connection_for(division)
            why = f"the Routing lookup sends division {division!r} to"
        connection = self._connections.get(name)
        if connection is None:
            raise ConfigurationError(
                f"{why} DERMS connection {name!r}, which the settings do not define"
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
            json_body=body.model_dump_json(exclude_none=True).encode(),
            read=model_reader(answer, "DERMS", operation),
            observer=self._observer,
        )

    async def deliver(self, operation: str, body: BaseModel, *, division: str | None) -> None:
        """POST to the division's DERMS; any 2xx is done, whatever its body holds."""
        await self.connection_for(division).call(
            operation,
            "POST",
            OPERATIONS[operation],
            json_body=body.model_dump_json(exclude_none=True).encode(),
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
