"""The Prometheus scrape: an operator caller, or the scraper's own bearer token."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from derms_bridge import metrics
from derms_bridge.api.deps import HubDep
from derms_bridge.api.guard import (
    GUARD_RESPONSES,
    UNAUTHORIZED_HEADERS,
    credentials_busy,
    throttled,
)
from derms_bridge.api.problems import problem
from derms_bridge.api.security import Token, address_of, caller_of, credential_in
from derms_bridge.bootstrap import Hub
from derms_bridge.credentials import CredentialChecksBusy, token_matches
from derms_bridge.login_throttle import Attempt, Throttled

router = APIRouter(tags=["Health"])


async def _may_scrape(request: Request, hub: Hub) -> bool:
    authorization = request.headers.get("authorization")
    credential = credential_in(authorization)
    address = address_of(request)
    scraper = hub.settings.metrics.token_sha256
    if (
        scraper is not None
        and isinstance(credential, Token)
        and token_matches(credential.value, scraper.get_secret_value())
    ):
        return await hub.login_throttle.admit(Attempt(None, address, "metrics"), True) is not None
    principal = await caller_of(
        hub.login_throttle, hub.authenticator, authorization, address, "metrics"
    )
    return principal is not None and principal.role == "operator"


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}},
        401: {"description": "neither an operator caller nor the metrics bearer token"},
        503: {"description": "too many password checks wait, or the database is out"},
        429: GUARD_RESPONSES[429],
    },
)
async def scrape(request: Request, hub: HubDep) -> Response:
    """Prometheus text format: flows, outbound calls, files and segments waiting, schedules,
    the purge, the database's size."""
    try:
        allowed = await _may_scrape(request, hub)
    except Throttled as refusal:
        return throttled(refusal)
    except CredentialChecksBusy:
        return credentials_busy()
    if not allowed:
        return problem(
            401,
            "/metrics needs an operator caller or the metrics bearer token",
            headers=UNAUTHORIZED_HEADERS,
        )
    body = await metrics.exposition(
        hub.store.engine, hub.settings.schedules, await hub.storage.report()
    )
    return Response(body, media_type=CONTENT_TYPE_LATEST)
