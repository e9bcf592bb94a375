"""Three sandboxes (seed 7, 200 accounts) built once per module, the store filled by ``backfill``, and a
context per test over fresh clients and fresh loaders."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from starlette.applications import Starlette

from canonical.principal import Principal
from mutations.backfill import backfill
from resolvers.cache import ReadCache
from resolvers.context import Context, build_context
from resolvers.schema import build_schema
from store.db import make_engine, make_sessionmaker
from store.migrate import upgrade_to_head
from subgraphs.common.config import RetryConfig
from subgraphs.common.sandbox import Limits, SandboxAdmin, SandboxOptions
from subgraphs.crm.client import CrmClient
from subgraphs.crm.config import CrmConfig
from subgraphs.crm.sandbox import create_app as crm_app
from subgraphs.demo import generate_firm
from subgraphs.erp.client import ErpClient
from subgraphs.erp.config import ErpConfig
from subgraphs.erp.sandbox import create_app as erp_app
from subgraphs.psa.client import PsaClient
from subgraphs.psa.config import PsaConfig
from subgraphs.psa.sandbox import create_app as psa_app

ACCOUNTS = 200
FIRM = generate_firm(7, ACCOUNTS)
FAST_RETRY = RetryConfig(attempts=2, backoff_initial_s=0.001, backoff_max_s=0.002, budget_s=1)
FINANCE = Principal("fin", roles=frozenset({"finance"}), all_entities=True)
SALES = Principal("sales", roles=frozenset({"sales"}), all_entities=True)
US_ONLY = Principal("us", roles=frozenset({"finance"}), legal_entities=frozenset({"US01"}))

Apps = dict[str, Starlette]


@pytest.fixture(scope="module")
def apps() -> Apps:
    options = SandboxOptions(seed=7, accounts=ACCOUNTS, limits=Limits())
    return {"crm": crm_app(options), "psa": psa_app(options), "erp": erp_app(options)}


def _clients(apps: Apps) -> tuple[CrmClient, PsaClient, ErpClient]:
    def t(name: str) -> httpx.ASGITransport:
        return httpx.ASGITransport(app=apps[name])

    return (
        CrmClient.from_config(CrmConfig(retry=FAST_RETRY), t("crm")),
        PsaClient.from_config(PsaConfig(retry=FAST_RETRY), t("psa")),
        ErpClient.from_config(ErpConfig(retry=FAST_RETRY), t("erp")),
    )


@pytest.fixture(scope="module")
def database_url(apps: Apps, tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite+aiosqlite:///{Path(tmp_path_factory.mktemp('resolvers')) / 'store.db'}"
    upgrade_to_head(url)

    async def fill() -> None:
        engine = make_engine(url, poolclass=sa.NullPool)
        crm, psa, erp = _clients(apps)
        try:
            await backfill(crm=crm, psa=psa, erp=erp, sessionmaker=make_sessionmaker(engine))
        finally:
            for client in (crm, psa, erp):
                await client.aclose()
            await engine.dispose()

    asyncio.run(fill())
    return url


MakeContext = Callable[..., Context]


@pytest.fixture
async def make_context(apps: Apps, database_url: str) -> AsyncIterator[MakeContext]:
    engine = make_engine(database_url)
    crm, psa, erp = _clients(apps)

    def make(principal: Principal = FINANCE, cache: ReadCache | None = None) -> Context:
        return build_context(
            principal=principal,
            crm=crm,
            psa=psa,
            erp=erp,
            sessionmaker=make_sessionmaker(engine),
            correlation_id="test",
            as_of=FIRM.as_of,
            cache=cache,
        )

    yield make
    for client in (crm, psa, erp):
        await client.aclose()
    await engine.dispose()


@pytest.fixture(scope="module")
def schema() -> Any:
    return build_schema()


Execute = Callable[..., Awaitable[Any]]


@pytest.fixture
def execute(schema: Any, make_context: MakeContext) -> Execute:
    async def run(query: str, principal: Principal = FINANCE, **variables: Any) -> Any:
        return await schema.execute(
            query, variable_values=variables or None, context_value=make_context(principal)
        )

    return run


@pytest.fixture
async def admins(apps: Apps) -> AsyncIterator[dict[str, SandboxAdmin]]:
    clients = {
        n: httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://sandbox")
        for n, a in apps.items()
    }
    yield {n: SandboxAdmin(c) for n, c in clients.items()}
    for c in clients.values():
        await c.aclose()
