from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from starlette.applications import Starlette

from subgraphs.common.config import RetryConfig
from subgraphs.common.sandbox import SandboxAdmin, SandboxOptions
from subgraphs.erp.client import ErpClient
from subgraphs.erp.config import ErpConfig
from subgraphs.erp.sandbox import create_app

BASE = "http://erp.sandbox"
FAST_RETRY = RetryConfig(attempts=6, backoff_initial_s=0.001, backoff_max_s=0.01, budget_s=10)


async def fast_sleep(seconds: float) -> None:
    # Keeps the proportions of Retry-After waits (and their jitter) without spending real seconds on them.
    await asyncio.sleep(seconds / 50)


@pytest.fixture
def app() -> Starlette:
    return create_app(SandboxOptions(accounts=30))


@pytest.fixture
def make_client(app: Starlette) -> Callable[..., ErpClient]:
    def make(**overrides: object) -> ErpClient:
        config = ErpConfig(**{"retry": FAST_RETRY, **overrides})
        return ErpClient.from_config(config, transport=httpx.ASGITransport(app=app), sleep=fast_sleep)

    return make


@pytest.fixture
async def client(make_client: Callable[..., ErpClient]) -> AsyncIterator[ErpClient]:
    erp = make_client()
    yield erp
    await erp.aclose()


@pytest.fixture
async def raw(app: Starlette, client: ErpClient) -> AsyncIterator[httpx.AsyncClient]:
    """Plain httpx against the sandbox with a valid bearer token (no retries, no cap)."""
    assert client.auth is not None
    token = await client.auth.token()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=BASE, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        yield http


@pytest.fixture
async def admin(app: Starlette) -> AsyncIterator[SandboxAdmin]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        yield SandboxAdmin(http)


Call = Callable[[], Awaitable[object]]
