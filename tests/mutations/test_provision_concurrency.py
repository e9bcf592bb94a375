"""One deal provisioned twice at the same moment, without an idempotency key, leaves one of everything.

Two "processes" — each its own engine, sessions and ``FlowDeps`` (connectors), over the same in-process
sandboxes and a store where commits are real (``scratch_database_url``) — race on the same opportunity:
directly (two ``provision_engagement`` calls), and as the webhook and the poller seeing one closed-won
change at once and the queue workers draining what they queued. The step claims (``RunRepo.claim_step``)
and the intake's shared dedupe keys are what keep it to one. SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.worker import Worker, WorkerReport, default_handlers
from mutations.deps import FlowDeps
from mutations.identity import provisioned_project_canonical_id
from mutations.intake import Outcome, handle_crm_event
from mutations.pollers import OpportunityPoller
from mutations.provision import provision_engagement
from store.db import make_engine, make_sessionmaker
from store.models import WorkItem
from store.repositories import ExceptionRepo, RunRepo
from subgraphs.crm.client import CrmClient
from subgraphs.crm.config import CrmConfig
from subgraphs.demo import Firm
from tests.mutations.conftest import ADMIN, Flow, build_apps, close_flow, make_flow
from tests.mutations.test_provision_scenarios import TM

ATTEMPTS = 2


@dataclasses.dataclass
class Racers:
    flows: list[Flow]  # one per "process", all over the same sandboxes and store
    engines: list[AsyncEngine]

    @property
    def one(self) -> Flow:
        return self.flows[0]


@pytest.fixture
async def racers(scratch_database_url: str, flow_firm: Firm) -> AsyncIterator[Racers]:
    apps = build_apps()
    engines = [make_engine(scratch_database_url) for _ in range(ATTEMPTS)]
    flows = [await make_flow(apps, flow_firm, make_sessionmaker(engine)) for engine in engines]
    try:
        yield Racers(flows, engines)
    finally:
        for flow in flows:
            await close_flow(flow)
        for engine in engines:
            await engine.dispose()


async def psa_projects_with_code(flow: Flow, code: str) -> int:
    return len([p async for page in flow.deps.psa.projects() for p in page if p.get("code") == code])


async def erp_ids(flow: Flow, table: str, where: str = "") -> set[str]:
    rows = await flow.deps.erp.suiteql(f"SELECT id FROM {table}{' WHERE ' + where if where else ''}")
    return {str(r["id"]) for r in rows}


@dataclasses.dataclass(frozen=True)
class Before:
    customers: set[str]
    jobs: set[str]
    contracts: set[str]

    @classmethod
    async def read(cls, flow: Flow) -> Before:
        return cls(
            await erp_ids(flow, "customer"),
            await erp_ids(flow, "job"),
            await erp_ids(flow, "transaction", "type = 'SalesOrd'"),
        )


async def exactly_one_of_everything(flow: Flow, opportunity: str, before: Before) -> None:
    """One new job (ours, by external id), one new contract, at most one new customer — the deal's — and
    one PSA project with the job's code."""
    after = await Before.read(flow)
    [job_id] = after.jobs - before.jobs
    assert await erp_ids(flow, "job", f"externalid = '{provisioned_project_canonical_id(opportunity)}'") == {
        job_id
    }
    job = await flow.deps.erp.get("job", job_id)
    customer = str(job["parent"]["id"])
    assert after.customers - before.customers in (set(), {customer})  # reused, or created once
    [contract_id] = after.contracts - before.contracts
    contract = await flow.deps.erp.get("salesOrder", contract_id)
    assert str(contract["entity"]["id"]) == customer
    assert await psa_projects_with_code(flow, str(job["entityId"])) == 1
    opportunity_row = await flow.deps.crm.get("Opportunity", opportunity)
    assert (opportunity_row["ERP_Project_Id__c"], opportunity_row["ERP_Customer_Id__c"]) == (job_id, customer)


async def test_two_concurrent_provisionings_of_one_deal_create_one_project(
    racers: Racers, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow = racers.one
    refused: list[str] = []
    claim_step = RunRepo.claim_step

    async def watched(self: RunRepo, key: str, run_id: str, name: str, **kw: Any) -> bool:
        claimed = await claim_step(self, key, run_id, name, **kw)
        if not claimed:
            refused.append(name)
        return claimed

    monkeypatch.setattr(RunRepo, "claim_step", watched)
    await flow.deps.crm.update("Opportunity", TM, {"StageName": "Closed Won"})
    before = await Before.read(flow)

    results = await asyncio.gather(
        *(
            provision_engagement(f.deps, TM, principal=ADMIN, correlation_id=f"race-{n}")
            for n, f in enumerate(racers.flows)
        )
    )

    assert all(r.status in ("PROVISIONED", "ALREADY_PROVISIONED") for r in results), results
    assert len({r.erp_job_id for r in results}) == 1 and len({r.psa_project_id for r in results}) == 1
    assert any(r.status == "PROVISIONED" for r in results)
    assert "customer" in refused  # they did collide: one attempt waited on the other's claim
    await exactly_one_of_everything(flow, TM, before)
    async with flow.deps.sessionmaker() as session:
        assert await ExceptionRepo(session).list() == []


# --- the webhook and the poller at the same moment, then the workers -------------------------------------


def real_time(deps: FlowDeps) -> FlowDeps:
    """The CRM sandbox stamps changes with the wall clock: intake and the queue run on it too."""
    return dataclasses.replace(deps, clock=lambda: datetime.now(UTC))


async def closed_won_event(flow: Flow, opportunity: str) -> dict[str, Any]:
    """Win the deal as someone else (a person in the CRM UI): the change event it produced."""
    sales = CrmClient.from_config(
        CrmConfig(client_name="sales-ui"), httpx.ASGITransport(app=flow.apps["crm"])
    )
    try:
        latest = await flow.deps.crm.events_since(0, limit=1000)
        after = latest[-1]["replayId"] if latest else 0
        await sales.update("Opportunity", opportunity, {"StageName": "Closed Won"})
    finally:
        await sales.aclose()
    events = [e for e in await flow.deps.crm.events_since(after) if opportunity in str(e)]
    assert len(events) == 1, events
    return dict(events[0])


async def test_webhook_and_poller_at_once_then_workers_provision_one_of_everything(racers: Racers) -> None:
    webhook, poller = (real_time(f.deps) for f in racers.flows)
    opportunity_poller = OpportunityPoller(poller, start=datetime.now(UTC) - timedelta(minutes=5))
    event = await closed_won_event(racers.one, TM)
    before = await Before.read(racers.one)

    hooked, polled = await asyncio.gather(
        handle_crm_event(webhook, event, source="crm", correlation_id="c-hook"),
        opportunity_poller.poll(),
    )

    assert hooked.outcome is Outcome.ACCEPTED and hooked.opportunities == [TM]
    assert len(hooked.queued) + len(polled.queued) == 1  # one change, one dedupe key, one work item
    workers = [
        Worker(deps.sessionmaker, default_handlers(deps), batch=10, clock=deps.clock)
        for deps in (webhook, poller)
    ]
    reports: list[WorkerReport] = list(await asyncio.gather(*(w.drain() for w in workers)))

    assert sum(r.done for r in reports) == 1 and sum(r.failed for r in reports) == 0, reports
    async with webhook.sessionmaker() as session:
        items = list(await session.scalars(sa.select(WorkItem.status).where(WorkItem.kind == "provision")))
        assert items == ["DONE"]
        assert await ExceptionRepo(session).list() == []
    await exactly_one_of_everything(racers.one, TM, before)
