"""Edge DERMS's inbound services; the Routing lookup picks the connection by division."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from derms_bridge.connectors.http import Answer, CallObserver, HttpConnection
from derms_bridge.errors import TechnicalFault
from derms_bridge.lookups import Lookups


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
            raise TechnicalFault(
                f"the Routing lookup sends division {division!r} to DERMS connection "
                f"{name!r}, which the settings do not define"
            )
        return connection

    async def post_json(self, operation: str, path: str, body: Any, *, division: str | None) -> Any:
        """POST to the division's DERMS; its JSON answer, or a TechnicalFault."""

        def read_json(answer: Answer) -> Any:
            try:
                return answer.json() if answer.body else None
            except ValueError:
                raise TechnicalFault(
                    f"DERMS answered {operation} with a body that is not JSON",
                    http_status=answer.status,
                ) from None

        return await self.connection_for(division).call(
            operation, "POST", path, json=body, read=read_json, observer=self._observer
        )
