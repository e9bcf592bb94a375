"""Fixtures for the gateway shell: settings on a test database, a started app behind an httpx client,
and stand-in vendor systems while the real sandbox and connector packages are not installed."""

from __future__ import annotations

import sys
import types
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.settings import Settings, load_settings
from gateway.types import SYSTEMS
from store.db import make_engine, make_sessionmaker

Sessions = async_sessionmaker[AsyncSession]


@asynccontextmanager
async def started(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and talk to it in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client


Serve = Callable[[Starlette], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two attempts per upstream call with a millisecond's backoff: faults show up at once."""
    for system in ("CRM", "ERP", "PSA"):
        monkeypatch.setenv(f"P2C_{system}__RETRY__ATTEMPTS", "2")
        monkeypatch.setenv(f"P2C_{system}__RETRY__BACKOFF_INITIAL_S", "0.001")


@pytest.fixture
async def client(app: Starlette, serve: Serve) -> AsyncIterator[httpx.AsyncClient]:
    """The module's ``app`` started, behind an in-process client."""
    async with serve(app) as client:
        yield client


@pytest.fixture
async def sessions(scratch_database_url: str) -> AsyncIterator[Sessions]:
    """A sessionmaker over a private, migrated database where commits are real (workers, claimers)."""
    engine = make_engine(scratch_database_url)
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def serve() -> Serve:
    """``async with serve(app) as client:`` — lifespan started, requests in-process."""
    return started


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    from store.migrate import upgrade_to_head

    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    upgrade_to_head(url)
    return url


@pytest.fixture
def settings(sqlite_url: str) -> Settings:
    # Small demo firm: start-up seeds three sandboxes.
    return load_settings(database_url=sqlite_url, demo_accounts=5)


# --- stand-in systems -------------------------------------------------------------------------------


def _fake_sandbox(options: Any) -> Starlette:
    async def counters(request: Request) -> JSONResponse:
        return JSONResponse({"total": 0})

    return Starlette(routes=[Route("/__sandbox/counters", counters)])


class _FakeClient:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    @classmethod
    def from_config(cls, config: Any, transport: httpx.AsyncBaseTransport | None = None) -> _FakeClient:
        return cls(httpx.AsyncClient(base_url=config.base_url, transport=transport, timeout=config.timeout_s))

    async def ping(self) -> None:
        response = await self.http.get("/__sandbox/counters")
        response.raise_for_status()

    async def aclose(self) -> None:
        await self.http.aclose()


_CLIENT_CLASSES = {"crm": "CrmClient", "psa": "PsaClient", "erp": "ErpClient"}


@pytest.fixture
def stand_in_systems(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace every system's sandbox and connector by a minimal stand-in (a sandbox serving
    ``/__sandbox/counters`` like every real one, a client pinging it), so the gateway shell is tested
    on its own, whatever state the real packages are in."""
    for name in SYSTEMS:
        sandbox = types.ModuleType(f"subgraphs.{name}.sandbox")
        sandbox.create_app = _fake_sandbox  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, sandbox.__name__, sandbox)
        client = types.ModuleType(f"subgraphs.{name}.client")
        setattr(client, _CLIENT_CLASSES[name], _FakeClient)
        monkeypatch.setitem(sys.modules, client.__name__, client)
