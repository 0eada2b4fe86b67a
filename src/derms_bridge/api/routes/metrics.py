"""The Prometheus scrape: an operator caller, or the scraper's own bearer token."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from derms_bridge import metrics
from derms_bridge.api.deps import HubDep
from derms_bridge.api.guard import UNAUTHORIZED_HEADERS, credentials_busy
from derms_bridge.api.problems import problem
from derms_bridge.api.security import caller_of
from derms_bridge.bootstrap import Hub
from derms_bridge.credentials import CredentialChecksBusy, token_matches

router = APIRouter(tags=["Health"])


async def _may_scrape(request: Request, hub: Hub) -> bool:
    authorization = request.headers.get("authorization", "")
    scheme, _, credential = authorization.partition(" ")
    scraper = hub.settings.metrics.token_sha256
    if (
        scraper is not None
        and scheme.lower() == "bearer"
        and token_matches(credential.strip(), scraper.get_secret_value())
    ):
        return True
    principal = await caller_of(hub.authenticator, authorization)
    return principal is not None and principal.role == "operator"


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}},
        401: {"description": "neither an operator caller nor the metrics bearer token"},
        503: {"description": "too many password checks wait, or the database is out"},
    },
)
async def scrape(request: Request, hub: HubDep) -> Response:
    """Prometheus text format: flows, outbound calls, segments waiting, schedule runs."""
    try:
        allowed = await _may_scrape(request, hub)
    except CredentialChecksBusy:
        return credentials_busy()
    if not allowed:
        return problem(
            401,
            "/metrics needs an operator caller or the metrics bearer token",
            headers=UNAUTHORIZED_HEADERS,
        )
    body = await metrics.exposition(hub.store.engine)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
