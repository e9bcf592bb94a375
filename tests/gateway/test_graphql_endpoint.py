"""``/graphql`` over the ASGI app with its lifespan running and the real in-process sandboxes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from canonical.principal import ALL_ENTITIES, Role
from gateway.app import create_app
from gateway.auth import mint_dev_token
from gateway.cli import app as cli
from gateway.correlation import HEADER
from gateway.settings import Settings, load_settings
from gateway.types import SYSTEMS

ACCOUNTS = "{ accounts(first: 5) { edges { node { id name legalEntity } } } }"


def token_for(settings: Settings, *, roles: tuple[Role, ...] = (Role.FINANCE,), **kwargs: Any) -> str:
    assert settings.jwt_secret is not None
    return mint_dev_token(
        settings.jwt_secret,
        "ana",
        roles,
        kwargs.pop("entities", [ALL_ENTITIES]),
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
        **kwargs,
    )


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def assert_clean(response: httpx.Response) -> None:
    """No response of this endpoint is a 500 or carries a trace."""
    assert response.status_code < 500 or response.status_code == 504
    assert "Traceback" not in response.text
    assert 'File "' not in response.text


def codes(response: httpx.Response) -> list[str]:
    return [error["extensions"]["code"] for error in response.json()["errors"]]


@pytest.fixture
async def client(settings: Settings, serve: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(create_app(settings)) as client:
        yield client


@pytest.fixture
def auth(settings: Settings) -> dict[str, str]:
    return bearer(token_for(settings))


# --- authentication ---------------------------------------------------------------------------------


async def test_no_token_is_401_with_a_challenge(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"query": ACCOUNTS}, headers={HEADER: "req-1"})
    assert_clean(response)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer ")
    (error,) = response.json()["errors"]
    assert error["message"] == "missing bearer token"
    assert error["extensions"] == {"code": "UNAUTHENTICATED", "correlationId": "req-1"}
    assert response.headers[HEADER] == "req-1"


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        (lambda s: token_for(s, now=time.time() - 10 * 3600, ttl_s=3600), "token expired"),
        (lambda s: mint_dev_token("x" * 40, "ana", [Role.FINANCE], ["*"]), "bad signature"),
        (lambda s: "not-a-jwt", "malformed token"),
    ],
    ids=["expired", "wrongly-signed", "garbage"],
)
async def test_bad_token_is_401_invalid_token(
    client: httpx.AsyncClient, settings: Settings, make_token: Any, reason: str
) -> None:
    response = await client.post("/graphql", json={"query": ACCOUNTS}, headers=bearer(make_token(settings)))
    assert_clean(response)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    (error,) = response.json()["errors"]
    assert error["message"] == reason
    assert error["extensions"]["code"] == "UNAUTHENTICATED"


async def test_graphiql_renders_without_a_token_in_development(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


async def test_get_query_still_needs_a_token(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    refused = await client.get("/graphql", params={"query": ACCOUNTS})
    answered = await client.get("/graphql", params={"query": ACCOUNTS}, headers=auth)
    assert refused.status_code == 401
    assert answered.status_code == 200
    assert len(answered.json()["data"]["accounts"]["edges"]) == 5


# --- reading the graph ------------------------------------------------------------------------------


async def test_finance_token_reads_accounts_from_the_sandboxes(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.post("/graphql", json={"query": ACCOUNTS}, headers=auth)
    assert_clean(response)
    assert response.status_code == 200
    body = response.json()
    assert "errors" not in body
    nodes = [edge["node"] for edge in body["data"]["accounts"]["edges"]]
    assert len(nodes) == 5
    assert all(node["id"] and node["name"] and node["legalEntity"] for node in nodes)


async def test_a_token_without_entities_sees_no_rows(client: httpx.AsyncClient, settings: Settings) -> None:
    token = token_for(settings, entities=[])
    response = await client.post("/graphql", json={"query": ACCOUNTS}, headers=bearer(token))
    assert response.status_code == 200
    assert response.json()["data"]["accounts"]["edges"] == []


# --- bad requests -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("{ accounts(first: 5) { edges { node { id ", "GRAPHQL_PARSE_FAILED"),
        ("{ accounts { edges { node { noSuchField } } } }", "GRAPHQL_VALIDATION_FAILED"),
        ("{ account }", "GRAPHQL_VALIDATION_FAILED"),
    ],
    ids=["syntax", "unknown-field", "missing-argument"],
)
async def test_malformed_graphql_has_errors_with_codes(
    client: httpx.AsyncClient, auth: dict[str, str], query: str, code: str
) -> None:
    response = await client.post("/graphql", json={"query": query}, headers=auth)
    assert_clean(response)
    assert response.status_code in (200, 400)
    assert code in codes(response)


async def test_bad_json_body_is_400(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    response = await client.post(
        "/graphql", content=b'{"query": "{ accounts', headers={**auth, "content-type": "application/json"}
    )
    assert_clean(response)
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert "JSON" in error["message"]


@pytest.mark.parametrize(
    "body",
    [{"query": 7}, {"query": ACCOUNTS, "variables": "x"}, {}],
    ids=["query-not-a-string", "variables-not-an-object", "no-query"],
)
async def test_wrong_request_shape_is_400(
    client: httpx.AsyncClient, auth: dict[str, str], body: dict[str, Any]
) -> None:
    response = await client.post("/graphql", json=body, headers=auth)
    assert_clean(response)
    assert response.status_code == 400
    assert codes(response) == ["BAD_REQUEST"]


async def test_unsupported_content_type_is_a_json_error(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.post(
        "/graphql", content=b"query=x", headers={**auth, "content-type": "text/plain"}
    )
    assert_clean(response)
    assert response.status_code == 400
    assert codes(response) == ["BAD_REQUEST"]


async def test_mutation_over_get_is_refused(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    response = await client.get("/graphql", params={"query": "mutation { __typename }"}, headers=auth)
    assert_clean(response)
    assert response.status_code == 400


async def test_oversized_body_is_413(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    padding = " " * 1_000_001
    response = await client.post("/graphql", json={"query": ACCOUNTS + padding}, headers=auth)
    assert_clean(response)
    assert response.status_code == 413
    assert codes(response) == ["PAYLOAD_TOO_LARGE"]


async def test_oversized_body_without_length_is_413(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * 100_000

    response = await client.post(
        "/graphql", content=chunks(), headers={**auth, "content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413


async def test_too_deep_query_is_refused(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    deep = "id " + "".join("projects { account { " for _ in range(6)) + "id" + " } }" * 6
    query = "{ accounts(first: 1) { edges { node { " + deep + " } } } }"
    response = await client.post("/graphql", json={"query": query}, headers=auth)
    assert_clean(response)
    assert response.json()["data"] is None
    assert "QUERY_TOO_DEEP" in codes(response)


async def test_alias_bomb_is_refused(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    aliases = " ".join(f"a{i}: accounts(first: 1) {{ edges {{ node {{ id }} }} }}" for i in range(40))
    response = await client.post("/graphql", json={"query": "{ " + aliases + " }"}, headers=auth)
    assert_clean(response)
    assert response.json()["data"] is None
    assert "TOO_MANY_ALIASES" in codes(response)


async def test_slow_request_times_out_with_a_code(sqlite_url: str, serve: Any) -> None:
    settings = load_settings(database_url=sqlite_url, demo_accounts=5, graphql_timeout_s=0.3)
    async with serve(create_app(settings)) as client:
        faults = await client.put("/sandbox/crm/__sandbox/faults", json={"latency_ms": 3000})
        assert faults.status_code == 200
        started = time.perf_counter()
        response = await client.post(
            "/graphql", json={"query": ACCOUNTS}, headers=bearer(token_for(settings))
        )
    assert time.perf_counter() - started < 2
    assert_clean(response)
    assert response.status_code == 504
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "TIMEOUT"


# --- production -------------------------------------------------------------------------------------


@pytest.fixture
def production(sqlite_url: str) -> Settings:
    unreachable = {name: {"base_url": "http://127.0.0.1:9"} for name in SYSTEMS}
    return load_settings(
        mode="production",
        database_url=sqlite_url,
        jwt_secret="p" * 40,
        webhook_secret="w" * 40,
        **unreachable,
    )


async def test_production_refuses_introspection_and_serves_no_graphiql(
    production: Settings, serve: Any
) -> None:
    async with serve(create_app(production)) as client:
        auth = bearer(token_for(production))
        introspection = await client.post(
            "/graphql", json={"query": "{ __schema { types { name } } }"}, headers=auth
        )
        ide = await client.get("/graphql", headers={"accept": "text/html"})
        typename = await client.post("/graphql", json={"query": "{ __typename }"}, headers=auth)
    assert_clean(introspection)
    assert introspection.json()["data"] is None
    assert "INTROSPECTION_DISABLED" in codes(introspection)
    assert ide.status_code == 404
    assert "graphiql" not in ide.text.lower()
    assert ide.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert typename.json() == {"data": {"__typename": "Query"}}


# --- p2c schema -------------------------------------------------------------------------------------


def test_p2c_schema_prints_the_federation_sdl() -> None:
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0, result.output
    assert "type Query {" in result.stdout
    assert '@key(fields: "id")' in result.stdout
    assert '@link(url: "https://specs.apollo.dev/federation/v2' in result.stdout
