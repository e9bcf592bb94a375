"""Shared fixtures for flow tests: the three sandboxes in-process (over ``httpx.ASGITransport``) seeded with a
small demo firm, and ``FlowDeps`` over them and the test's store.

    async def test_something(flow: Flow) -> None:
        result = await provision_engagement(flow.deps, opp, principal=ADMIN)
        assert await flow.writes() == {}        # vendor write requests since the last reset, by system
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from canonical.mapping import demo_mapping
from canonical.principal import Principal
from mutations.deps import FlowDeps
from subgraphs.common.config import RetryConfig
from subgraphs.common.sandbox import Limits, SandboxAdmin, SandboxOptions
from subgraphs.crm.client import CrmClient
from subgraphs.crm.config import CrmConfig
from subgraphs.crm.sandbox import create_app as crm_app
from subgraphs.demo import Firm, generate_firm
from subgraphs.erp.client import ErpClient
from subgraphs.erp.config import ErpConfig
from subgraphs.erp.sandbox import create_app as erp_app
from subgraphs.psa.client import PsaClient
from subgraphs.psa.config import PsaConfig
from subgraphs.psa.sandbox import create_app as psa_app

if TYPE_CHECKING:
    from tests.mutations.posting_support import Posting
    from tests.subgraphs.erp_tryton.tryton_support import Server

FLOW_SEED = 7
FLOW_ACCOUNTS = 30
FLOW_RETRY = RetryConfig(attempts=3, backoff_initial_s=0.001, backoff_max_s=0.005, budget_s=5)
ADMIN = Principal.system("tests")
READ_POSTS = ("/query/v1/suiteql", "/oauth2", "/token")


async def no_sleep(_seconds: float) -> None:
    """Injected into the connectors: retries and backoff without waiting."""


def now() -> datetime:
    return datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@dataclass
class Flow:
    deps: FlowDeps
    apps: dict[str, Starlette]
    firm: Firm

    def admin(self, system: str) -> SandboxAdmin:
        transport = httpx.ASGITransport(app=self.apps[system])
        return SandboxAdmin(httpx.AsyncClient(transport=transport, base_url=f"http://{system}.sandbox"))

    async def counters(self, system: str) -> dict[str, Any]:
        admin = self.admin(system)
        try:
            return await admin.counters()
        finally:
            await admin.client.aclose()

    async def writes(self) -> dict[str, dict[str, int]]:
        """Write requests each sandbox served since the last ``reset_counters`` (reads and auth left out)."""
        found: dict[str, dict[str, int]] = {}
        for system in self.apps:
            by_endpoint = (await self.counters(system))["by_endpoint"]
            mine = {
                k: int(v)
                for k, v in by_endpoint.items()
                if k.split(" ", 1)[0] in ("POST", "PUT", "PATCH", "DELETE")
                and not any(p in k for p in READ_POSTS)
            }
            if mine:
                found[system] = mine
        return found

    async def reset_counters(self) -> None:
        for system in self.apps:
            admin = self.admin(system)
            await admin.reset_counters()
            await admin.client.aclose()

    async def faults(self, system: str, **faults: Any) -> None:
        admin = self.admin(system)
        try:
            if faults:
                await admin.set_faults(**faults)
            else:
                await admin.clear_faults()
        finally:
            await admin.client.aclose()

    async def erp_count(self, table: str, where: str = "") -> int:
        rows = await self.deps.erp.suiteql(
            f"SELECT COUNT(*) AS n FROM {table}{' WHERE ' + where if where else ''}"
        )
        return int(rows[0]["n"])


@pytest.fixture(scope="session")
def flow_firm() -> Firm:
    return generate_firm(FLOW_SEED, FLOW_ACCOUNTS)


def build_apps() -> dict[str, Starlette]:
    options = SandboxOptions(seed=FLOW_SEED, accounts=FLOW_ACCOUNTS, limits=Limits(concurrency_cap=15))
    psa_options = SandboxOptions(seed=FLOW_SEED, accounts=FLOW_ACCOUNTS, limits=Limits())
    return {"crm": crm_app(options), "psa": psa_app(psa_options), "erp": erp_app(options)}


async def make_flow(
    apps: dict[str, Starlette], firm: Firm, sessionmaker: async_sessionmaker[AsyncSession]
) -> Flow:
    def transport(name: str) -> httpx.ASGITransport:
        return httpx.ASGITransport(app=apps[name])

    deps = FlowDeps(
        crm=CrmClient.from_config(CrmConfig(retry=FLOW_RETRY), transport("crm"), sleep=no_sleep),
        psa=PsaClient.from_config(PsaConfig(retry=FLOW_RETRY), transport("psa"), sleep=no_sleep),
        erp=ErpClient.from_config(ErpConfig(retry=FLOW_RETRY), transport("erp"), sleep=no_sleep),
        sessionmaker=sessionmaker,
        mapping=demo_mapping(),
        clock=now,
    )
    return Flow(deps, apps, firm)


async def close_flow(flow: Flow) -> None:
    for client in (flow.deps.crm, flow.deps.psa, flow.deps.erp):
        await client.aclose()


@pytest.fixture
async def flow(flow_firm: Firm, sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[Flow]:
    built = await make_flow(build_apps(), flow_firm, sessionmaker)
    yield built
    await close_flow(built)


@pytest.fixture
async def posting(flow: Flow) -> AsyncIterator[Posting]:
    """Time posting on ``flow``: projects linked, caches that never serve a stale value, and our clock an
    hour ahead of the PSA sandbox's, so the pollers' cursors are never capped behind it."""
    import dataclasses

    from mutations.time_posting import PostingCaches
    from tests.mutations.posting_support import Posting, link_projects  # it imports this module

    await link_projects(flow)
    made = Posting(flow, PostingCaches(ttl_s=0))
    later = await made.psa_now() + timedelta(hours=1)
    flow.deps = dataclasses.replace(flow.deps, clock=lambda: later)
    yield made


@pytest.fixture
async def on_tryton(flow: Flow, tryton: Server) -> AsyncIterator[Flow]:
    """The flow with EU01 booked in the module's real Tryton, restored to its built state."""
    from tests.mutations.tryton_flow import use_tryton  # it imports this module

    client = use_tryton(flow, tryton)
    yield flow
    await client.aclose()
