"""The Prometheus scrape: an operator caller, or the scraper's own bearer token."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from derms_bridge import metrics
from derms_bridge.api.guard import UNAUTHORIZED_HEADERS
from derms_bridge.api.problems import problem
from derms_bridge.api.security import Authenticator, hash_token
from derms_bridge.bootstrap import Hub

router = APIRouter(tags=["Health"])


def _may_scrape(request: Request, hub: Hub) -> bool:
    authorization = request.headers.get("authorization", "")
    scheme, _, credential = authorization.partition(" ")
    scraper = hub.settings.metrics.token_sha256
    if scraper is not None and scheme.lower() == "bearer":
        expected = scraper.get_secret_value().lower()
        if hmac.compare_digest(hash_token(credential.strip()), expected):
            return True
    authenticator: Authenticator = request.app.state.authenticator
    principal = authenticator.authenticate(authorization)
    return principal is not None and principal.role == "operator"


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, 401: {}},
)
async def scrape(request: Request) -> Response:
    """Prometheus text format: flows, outbound calls, segments waiting, schedule runs."""
    hub: Hub = request.app.state.hub
    if not _may_scrape(request, hub):
        return problem(
            401,
            "/metrics needs an operator caller or the metrics bearer token",
            headers=UNAUTHORIZED_HEADERS,
        )
    body = await metrics.exposition(hub.store.engine)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
