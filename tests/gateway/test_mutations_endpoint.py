"""Governed mutations over ``/graphql``: the ``Idempotency-Key`` header reaches ``provisionEngagement``.

The app runs with its lifespan and the embedded sandboxes (5-account demo firm). Until ``resolvers/schema``
serves the operations, the fixture swaps in a schema that does; ``test_the_served_schema_has_the_operations``
fails meanwhile, so the swap cannot outlive the wiring unnoticed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import strawberry
from starlette.applications import Starlette

from canonical.principal import Role
from gateway import graphql as graphql_module
from gateway.app import create_app
from gateway.settings import Settings
from resolvers.errors import GatewayErrors
from resolvers.mutation import extend_schema_kwargs
from resolvers.schema import build_schema
from resolvers.types.contract import Contract
from tests.gateway.test_graphql_endpoint import assert_clean, bearer, codes, token_for

DEAL = "006000000000003AAA"  # account 0 (US01), a deal with no project yet; the test wins it
PROVISION = """
mutation($opp: ID!, $input: EngagementInput, $key: String) {
  provisionEngagement(opportunityId: $opp, input: $input, idempotencyKey: $key) {
    status erpCustomerId erpJobId psaProjectId exceptionId reasonCode
  }
}"""


def _served(sdl: str) -> bool:
    return "provisionEngagement" in sdl and "integrationExceptions" in sdl


def schema_with_operations(*, production: bool = False) -> strawberry.Schema:
    return strawberry.federation.Schema(
        **extend_schema_kwargs(), types=[Contract], extensions=[GatewayErrors]
    )


def test_the_served_schema_has_the_operations() -> None:
    assert _served(build_schema().as_str()), (
        "wire resolvers/schema.py: merge OperationsQuery, mutation=Mutation"
    )


@pytest.fixture
async def app(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Starlette:
    if not _served(build_schema().as_str()):
        monkeypatch.setattr(graphql_module, "build_schema", schema_with_operations)
    return create_app(settings)


@pytest.fixture
async def client(app: Starlette, serve: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(app) as client:
        crm = app.state.runtime.client("crm")
        await crm.update("Opportunity", DEAL, {"StageName": "Closed Won"})
        yield client


def headers(
    settings: Settings, role: Role = Role.INTEGRATION_ADMIN, key: str | None = None
) -> dict[str, str]:
    found = bearer(token_for(settings, roles=(role,)))
    if key is not None:
        found["Idempotency-Key"] = key
    return found


async def provision(client: httpx.AsyncClient, hdrs: dict[str, str], **variables: Any) -> httpx.Response:
    response = await client.post(
        "/graphql", json={"query": PROVISION, "variables": {"opp": DEAL, **variables}}, headers=hdrs
    )
    assert_clean(response)
    return response


async def test_the_idempotency_key_header_provisions_once(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    first = await provision(client, headers(settings, key="hdr-1"))
    assert first.status_code == 200, first.text
    result = first.json()["data"]["provisionEngagement"]
    assert result["status"] == "PROVISIONED", result
    assert result["erpCustomerId"] and result["erpJobId"] and result["psaProjectId"]

    again = await provision(client, headers(settings, key="hdr-1"))
    assert again.json() == first.json()

    reused = await provision(client, headers(settings, key="hdr-1"), input={"billingContact": "ap@acme.test"})
    assert codes(reused) == ["IDEMPOTENCY_KEY_REUSED"]

    # the argument wins over the header: a new key, so the deal is simply already provisioned
    argument = await provision(
        client, headers(settings, key="hdr-1"), key="arg-1", input={"billingContact": "x"}
    )
    assert argument.json()["data"]["provisionEngagement"]["status"] == "ALREADY_PROVISIONED"


async def test_no_key_in_either_place_is_required(client: httpx.AsyncClient, settings: Settings) -> None:
    response = await provision(client, headers(settings))
    assert codes(response) == ["IDEMPOTENCY_KEY_REQUIRED"]
    assert response.json()["errors"][0]["path"] == ["provisionEngagement"]


async def test_an_auditor_token_cannot_provision(client: httpx.AsyncClient, settings: Settings) -> None:
    response = await provision(client, headers(settings, Role.AUDITOR, key="hdr-2"))
    assert codes(response) == ["FORBIDDEN"]
