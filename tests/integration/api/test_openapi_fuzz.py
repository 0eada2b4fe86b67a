"""Schemathesis over the hub's own OpenAPI document, as each caller: requests that fit the
document and requests that break it, against a live hub on SQLite talking to the simulators.

No answer is a 5xx, every answer is one the document names for its route and conforms to
it, and every 4xx is a problem document. The examples are few and drawn the same way on
every run (a bounded, repeatable check that the document and the hub agree, not a search
for new bugs; that takes a long schemathesis run against `make sandbox`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from pydantic import SecretStr
from schemathesis import APIOperation, BaseSchema, GenerationMode
from schemathesis.checks import ignored_auth, not_a_server_error, positive_data_acceptance
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok

from derms_bridge.api.app import create_app
from derms_bridge.bootstrap import build_hub, local_file_stores
from derms_bridge.credentials import hash_token
from derms_bridge.lookups import Lookups
from derms_bridge.sandbox.servers import ServerThread
from derms_bridge.sandbox.smtp_sink import SmtpSink
from derms_bridge.settings.connections import Caller
from derms_bridge.store.database import migrate
from tests.conftest import hub_settings

Operation = APIOperation[Any, Any, Any, Any]
Case = schemathesis.Case[Operation]

PROBLEM_JSON = "application/problem+json"
CONFIGURATION_ERROR = "urn:derms-bridge:problem:configuration-error"

#: Bearer tokens, not passwords: a password is an argon2 check (~100 ms) per request.
TOKENS = {role: f"{role}-fuzz-token-0123456789abcdef" for role in ("derms", "cpmcs", "operator")}

#: Whose routes each OpenAPI tag holds; the rest (health, metrics) are the operator's.
OWNERS = {"Triggers from DERMS": "derms", "Outbound messages from CPMCS": "cpmcs"}

#: Examples per route and generation mode (fits the schema, breaks it), as the route's own
#: caller and as any other: every answer to another is the same 401.
OWN_EXAMPLES = 12
OTHERS_EXAMPLES = 1


@pytest.fixture(scope="module")
def live_hub(
    cpmcs_server: ServerThread,
    derms_server: ServerThread,
    smtp_server: SmtpSink,
    default_lookups: Lookups,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerThread]:
    # The simulators answer as themselves, whatever fault an earlier test left set.
    for simulator in (cpmcs_server, derms_server):
        with httpx.Client(base_url=simulator.url, timeout=10) as admin:
            admin.delete("/_sim/faults").raise_for_status()
            if simulator is derms_server:
                admin.delete("/_sim/ack").raise_for_status()
    folder = tmp_path_factory.mktemp("fuzzed-hub")
    database_url = f"sqlite:///{folder / 'hub.db'}"
    migrate(database_url)
    callers = {
        role: Caller(role=role, token_sha256=SecretStr(hash_token(token)))
        for role, token in TOKENS.items()
    }
    settings_ = hub_settings(database_url, cpmcs_server.url, derms_server.url, smtp_server, callers)
    built = build_hub(settings_, default_lookups, local_file_stores(folder / "file-stores"))
    with ServerThread(create_app(built), name="fuzzed hub") as server:
        yield server


@pytest.fixture(scope="module")
def hub_document(live_hub: ServerThread) -> BaseSchema:
    document = schemathesis.openapi.from_url(f"{live_hub.url}/openapi.json")
    # Every text field refuses a NUL character (PostgreSQL keeps none; docs/contract.md).
    document.config.generation.update(allow_x00=False)
    return document


def owner_of(operation: Operation) -> str:
    return next((OWNERS[tag] for tag in operation.tags or () if tag in OWNERS), "operator")


@schemathesis.check
def errors_are_problems(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: Case
) -> bool | None:
    """Every 4xx and 5xx is an RFC 9457 problem document."""
    if response.status_code < 400:
        return None
    media = response.headers.get("content-type", [""])[0].split(";")[0]
    assert media == PROBLEM_JSON, f"a {response.status_code} answered {media}"
    problem = response.json()
    assert problem["status"] == response.status_code
    assert problem["title"] and problem["detail"] and problem["type"]
    return True


@schemathesis.check
def no_server_fault(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: Case
) -> bool | None:
    """No 5xx, but for the 500 the contract names: a lookup without the row a message needs
    (docs/contract.md, Fault), which a generated code meets."""
    if response.status_code < 500:
        return None
    problem_type = response.json().get("type") if response.status_code == 500 else None
    assert problem_type == CONFIGURATION_ERROR, f"answered {response.status_code}"
    return True


def failures_of(
    operation: Operation, mode: GenerationMode, url: str, session: requests.Session, role: str
) -> str | None:
    """What went wrong in `operation`'s examples of `mode`, as found."""
    refused_to_role = "security" in operation.definition.raw and owner_of(operation) != role

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=OWN_EXAMPLES if owner_of(operation) == role else OTHERS_EXAMPLES,
        derandomize=True,
        # The failing example as found: shrinking it takes longer than the run.
        phases=[Phase.explicit, Phase.generate],
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def examples(case: Case) -> None:
        answer = case.call_and_validate(
            base_url=url,
            session=session,
            headers={"Authorization": f"Bearer {TOKENS[role]}"},
            additional_checks=[errors_are_problems, no_server_fault],
            excluded_checks=[
                # A message that fits the document may still break a rule it cannot state
                # (an ADD needs its dates; a form's message is JSON): a documented 422.
                positive_data_acceptance,
                # Replaced by no_server_fault, which knows the contract's one 500.
                not_a_server_error,
                # Sends wrong Basic credentials: an argon2 check each, seconds per example
                # on a loaded machine. Each role's token on every other route stands for
                # them here; tests/integration/api/test_security.py has the wrong ones.
                ignored_auth,
            ],
            timeout=30,
        )
        if refused_to_role:
            assert answer.status_code == 401, f"{role} was answered {answer.status_code}"

    try:
        examples()
    except Unsatisfiable:
        return None  # nothing of the route can be broken (no parameter, no body)
    except (AssertionError, FailureGroup) as exc:
        return f"{operation.label} ({mode.value}): {exc}"
    return None


@pytest.mark.parametrize("role", sorted(TOKENS))
def test_the_hub_answers_as_its_openapi_says(
    role: str, live_hub: ServerThread, hub_document: BaseSchema
) -> None:
    failures = []
    with requests.Session() as session:
        for found in hub_document.get_all_operations():
            assert isinstance(found, Ok), found
            operation = found.ok()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                failure = failures_of(operation, mode, live_hub.url, session, role)
                if failure is not None:
                    failures.append(failure)
    assert not failures, "\n\n".join(failures)
