from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette

from subgraphs.common.config import RetryConfig
from subgraphs.common.sandbox import SandboxAdmin, SandboxOptions
from subgraphs.crm.client import CrmClient
from subgraphs.crm.config import CrmConfig
from subgraphs.crm.sandbox import create_app

BASE = "http://crm.sandbox"
ACCOUNTS = 40  # 120 opportunities, enough for paging and chunking, quick to seed


class Sleeps:
    """Replaces asyncio.sleep in the retry transport: records the waits, waits for nothing."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def app() -> Starlette:
    return create_app(SandboxOptions(accounts=ACCOUNTS), query_batch_size=7)


@pytest.fixture
def config() -> CrmConfig:
    return CrmConfig(timeout_s=2.0, retry=RetryConfig(attempts=3, backoff_initial_s=0.01, backoff_max_s=0.05))


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def client(app: Starlette, config: CrmConfig, sleeps: Sleeps) -> AsyncIterator[CrmClient]:
    crm = CrmClient.from_config(config, httpx.ASGITransport(app), sleep=sleeps)
    yield crm
    await crm.aclose()


@pytest.fixture
async def raw(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """Plain HTTP to the sandbox, for admin calls and for asserting the wire itself."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE) as http:
        yield http


@pytest.fixture
def admin(raw: httpx.AsyncClient) -> SandboxAdmin:
    return SandboxAdmin(raw)
