"""``P2C_GRAPHQL_BATCHING`` reaches the per-request context: with it off (the benchmark's naive resolver
variant) the account-health query costs strictly more upstream requests than with the loaders batching."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from canonical.principal import ALL_ENTITIES, Role
from gateway.app import create_app
from gateway.auth import mint_dev_token
from gateway.settings import Settings, load_settings
from gateway.types import SYSTEMS

HEALTH = """
{ accounts(first: 10) { edges { node { id health {
    billedToDate { amount } paidToDate { amount } openReceivables { amount } overdue { amount }
    backlog { amount } marginPercent dso status reasons } } } } }
"""


def _auth(settings: Settings) -> dict[str, str]:
    assert settings.jwt_secret is not None
    token = mint_dev_token(
        settings.jwt_secret,
        "ana",
        [Role.FINANCE],
        [ALL_ENTITIES],
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )
    return {"authorization": f"Bearer {token}"}


async def _reset(client: httpx.AsyncClient) -> None:
    for name in SYSTEMS:
        (await client.delete(f"/sandbox/{name}/__sandbox/counters")).raise_for_status()


async def _upstream(client: httpx.AsyncClient) -> int:
    total = 0
    for name in SYSTEMS:
        response = await client.get(f"/sandbox/{name}/__sandbox/counters")
        response.raise_for_status()
        total += int(response.json()["total"])
    return total


async def _health_requests(settings: Settings, serve: Any) -> int:
    """Upstream requests (all three sandboxes) of one 10-account health query."""
    async with serve(create_app(settings)) as client:
        await _reset(client)
        response = await client.post("/graphql", json={"query": HEALTH}, headers=_auth(settings))
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body["errors"]
        assert len(body["data"]["accounts"]["edges"]) == 10
        return await _upstream(client)


def test_batching_defaults_to_true_and_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().graphql_batching is True
    monkeypatch.setenv("P2C_GRAPHQL_BATCHING", "false")
    assert load_settings().graphql_batching is False


async def test_naive_mode_costs_more_upstream_requests_than_batched(sqlite_url: str, serve: Any) -> None:
    batched = await _health_requests(load_settings(database_url=sqlite_url, demo_accounts=12), serve)
    naive = await _health_requests(
        load_settings(database_url=sqlite_url, demo_accounts=12, graphql_batching=False), serve
    )
    assert batched > 0
    assert naive > batched
