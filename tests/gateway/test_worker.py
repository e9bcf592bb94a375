"""The worker runtime: claims, completes, retries; and the whole chain end to end — a deal closed in the
CRM sandbox, its signed webhook delivered in-process to the gateway, the worker provisioning it once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from canonical.errors import UpstreamUnavailable, ValidationFailed
from gateway.cli import worker as worker_cli
from gateway.runtime import Runtime
from gateway.settings import Settings, load_settings
from gateway.worker import BatchHandler, Job, Worker, default_handlers
from mutations.deps import FlowDeps
from mutations.identity import provisioned_project_canonical_id
from mutations.pollers import OpportunityPoller
from store.db import make_engine, make_sessionmaker
from store.models import WorkItem
from store.repositories import WorkQueueRepo
from subgraphs.crm.client import CrmClient
from subgraphs.crm.config import CrmConfig
from subgraphs.crm.sandbox.webhooks import deliver_via
from subgraphs.erp.client import ErpClient
from subgraphs.psa.client import PsaClient
from tests.gateway.conftest import Serve
from tests.gateway.test_webhooks import with_webhooks

Sessions = async_sessionmaker[AsyncSession]


async def enqueue(sessions: Sessions, *opportunities: str) -> None:
    async with sessions.begin() as session:
        for opportunity in opportunities:
            await WorkQueueRepo(session).enqueue(
                "provision", {"opportunity_id": opportunity}, dedupe_key=f"provision:{opportunity}:1"
            )


async def statuses(sessions: Sessions) -> list[str]:
    async with sessions() as session:
        return list((await session.execute(sa.select(WorkItem.status).order_by(WorkItem.id))).scalars())


class Recorder:
    def __init__(self, fail_with: Exception | None = None) -> None:
        self.jobs: list[Job] = []
        self.fail_with = fail_with

    async def __call__(self, job: Job) -> object:
        self.jobs.append(job)
        if self.fail_with is not None:
            raise self.fail_with
        return None


async def test_drain_runs_every_item_through_its_handler_by_kind(sessions: Sessions) -> None:
    await enqueue(sessions, "006A", "006B", "006C")
    flow = Recorder()

    report = await Worker(sessions, {"provision": flow}, batch=2).drain()

    assert [job.payload["opportunity_id"] for job in flow.jobs] == ["006A", "006B", "006C"]
    assert (report.claimed, report.done, report.by_kind) == (3, 3, {"provision": 3})
    assert await statuses(sessions) == ["DONE", "DONE", "DONE"]


async def test_transient_failures_retry_later_and_bad_data_fails_at_once(sessions: Sessions) -> None:
    await enqueue(sessions, "006A")
    down = Recorder(UpstreamUnavailable("erp", "down for maintenance"))
    retried = await Worker(sessions, {"provision": down}).drain()
    await enqueue(sessions, "006B")
    refused = await Worker(sessions, {"provision": Recorder(ValidationFailed("no account"))}).drain()

    assert (retried.retried, retried.failed, refused.failed) == (1, 0, 1)
    assert len(down.jobs) == 1  # the retry waits for its backoff: --once does not spin on it
    assert await statuses(sessions) == ["QUEUED", "FAILED"]


async def test_run_polls_works_and_stops_when_asked(sessions: Sessions) -> None:
    class Poller:
        name, interval_s, rounds = "fake", 0.01, 0

        async def poll(self) -> object:
            self.rounds += 1
            await enqueue(sessions, f"006{self.rounds}")
            return None

    poller, flow, stop = Poller(), Recorder(), asyncio.Event()
    worker = Worker(sessions, {"provision": flow}, pollers=[poller], idle_s=0.01)
    task = asyncio.create_task(worker.run(stop))
    for _ in range(500):
        if len(flow.jobs) >= 3:
            break
        await asyncio.sleep(0.01)
    stop.set()
    report = await asyncio.wait_for(task, timeout=5)

    assert poller.rounds >= 3 and report.done >= 3


def test_cli_worker_once_drains_and_exits_zero(tmp_path: Any) -> None:
    from store.migrate import upgrade_to_head

    url = f"sqlite+aiosqlite:///{tmp_path / 'worker.db'}"
    upgrade_to_head(url)
    app = typer.Typer()
    worker_cli.register(app)

    result = CliRunner().invoke(app, ["--once", "--database-url", url], env={"P2C_DEMO_ACCOUNTS": "3"})

    assert result.exit_code == 0, result.output
    assert "worker: 0 done" in result.output


# --- end to end -------------------------------------------------------------------------------------


def flow_deps(runtime: Runtime) -> FlowDeps:
    crm, psa, erp = (runtime.systems[name].client for name in ("crm", "psa", "erp"))
    assert isinstance(crm, CrmClient) and isinstance(psa, PsaClient) and isinstance(erp, ErpClient)
    return FlowDeps(crm=crm, psa=psa, erp=erp, sessionmaker=runtime.sessionmaker, mapping=runtime.mapping)


@pytest.fixture
def store_settings(scratch_database_url: str) -> Settings:
    return load_settings(database_url=scratch_database_url, demo_accounts=5)


async def test_closing_a_deal_in_the_crm_provisions_it_once(store_settings: Settings, serve: Serve) -> None:
    app = with_webhooks(store_settings)
    async with serve(app) as gateway:
        runtime: Runtime = app.state.runtime
        deps = flow_deps(runtime)
        sandbox: Any = runtime.systems["crm"].sandbox
        secret = store_settings.webhook_secret
        assert secret is not None
        sandbox.state.webhooks.deliver = deliver_via(gateway)  # the CRM calls the gateway in-process
        async with httpx.AsyncClient(transport=httpx.ASGITransport(sandbox), base_url="http://crm") as admin:
            configured = await admin.put(
                "/__sandbox/crm/webhook",
                json={"url": "http://gateway/webhooks/crm", "secret": secret.get_secret_value()},
            )
            assert configured.status_code == 200
        sales = CrmClient.from_config(
            CrmConfig.model_validate(
                runtime.systems["crm"].config.model_dump() | {"client_name": "sales-ui"}
            ),
            httpx.ASGITransport(sandbox),
        )
        try:
            query = "SELECT Id FROM Opportunity WHERE IsClosed = FALSE ORDER BY Id LIMIT 1"
            opportunity = str((await deps.crm.query_all(query))[0]["Id"])
            await sales.update("Opportunity", opportunity, {"StageName": "Closed Won"})
        finally:
            await sales.aclose()
        await sandbox.state.webhooks.drain()
        assert sandbox.state.webhooks.delivered >= 1

        # The poller sees the same change: same dedupe key, nothing more to do.
        poller = OpportunityPoller(deps, start=datetime.now(UTC) - timedelta(minutes=5))
        workers = [Worker(deps.sessionmaker, default_handlers(deps), pollers=[poller]) for _ in range(2)]
        reports = [await w.drain() for w in workers]
        await sandbox.state.webhooks.drain()  # our write-backs come back as echoes
        again = await Worker(deps.sessionmaker, default_handlers(deps), pollers=[poller]).drain()

        project = provisioned_project_canonical_id(opportunity)
        jobs = await deps.erp.suiteql(f"SELECT id FROM job WHERE externalid = '{project}'")
        assert len(jobs) == 1, (reports, again)
        # A poller cannot tell our own write-back from a person's edit (no changeOrigin in a query), so it
        # may queue one more run after provisioning; the flow's step keys make that run a no-op.
        assert sum(r.done for r in [*reports, again]) >= 1
        # No failures; on SQLite a run may be retried: the in-process webhook delivering our write-back's
        # echo can make a flow transaction lose its read snapshot ("database is locked", see report).
        assert sum(r.failed for r in [*reports, again]) == 0


# -- batch handlers (time posting takes a claimed batch at once) -------------------------------------------


async def test_batch_handler_gets_the_whole_claim_and_completes_in_its_own_transaction(
    sessions: Sessions,
) -> None:
    async with sessions.begin() as session:
        for n in range(5):
            await WorkQueueRepo(session).enqueue("post_time", {"n": n}, dedupe_key=f"post_time:{n}:v1")
    calls: list[list[int]] = []

    async def handle(jobs: Any, complete: Any) -> dict[int, BaseException | None]:
        calls.append([j.payload["n"] for j in jobs])
        ok = [j.id for j in jobs if j.payload["n"] < 3]
        async with sessions.begin() as session:
            kept = await complete(session, ok)
        results: dict[int, BaseException | None] = {i: None for i in kept}
        for job in jobs:
            if job.payload["n"] == 3:
                results[job.id] = UpstreamUnavailable("erp", "down")
            elif job.payload["n"] == 4:
                results[job.id] = ValidationFailed("bad entry")
        return results

    worker = Worker(sessions, {"post_time": BatchHandler(handle)}, batch=10)
    assert await worker.process_batch() == 5
    assert calls == [[0, 1, 2, 3, 4]]  # one call for the whole claimed batch
    assert await statuses(sessions) == ["DONE", "DONE", "DONE", "QUEUED", "FAILED"]
    assert (worker.report.done, worker.report.retried, worker.report.failed) == (3, 1, 1)


async def test_posting_end_to_end_through_the_worker(scratch_database_url: str) -> None:
    """Approved PSA time → poller → queue → one batch → ERP time bills, on a real (committing) store."""
    from mutations.time_posting import PostingCaches
    from subgraphs.demo import generate_firm
    from tests.mutations.conftest import FLOW_ACCOUNTS, build_apps, close_flow, make_flow
    from tests.mutations.posting_support import Posting, link_projects

    engine = make_engine(scratch_database_url)
    flow = await make_flow(build_apps(), generate_firm(7, FLOW_ACCOUNTS), make_sessionmaker(engine))
    try:
        await link_projects(flow)
        posting = Posting(flow, PostingCaches(ttl_s=0))
        start = await posting.psa_now()
        later = start + timedelta(hours=1)
        import dataclasses

        flow.deps = dataclasses.replace(flow.deps, clock=lambda: later)
        project = posting.project()
        ids = [int((await posting.entry(project, hours=1 + n))["id"]) for n in range(6)]
        for i in ids:
            await posting.approve(i)
        worker = posting.worker(start=start)
        report = await worker.drain()
        assert report.by_kind == {"post_time": 6} and report.failed == 0
        assert [len(await posting.time_bills(i)) for i in ids] == [1] * 6
    finally:
        await close_flow(flow)
        await engine.dispose()
