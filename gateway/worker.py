"""The worker runtime: run the pollers on their intervals, claim queued work, run it, record the outcome.

    worker = Worker(sessionmaker, handlers={"provision": provision_job(deps)}, pollers=[poller])
    report = await worker.drain()           # `p2c worker --once`: one round of pollers, queue empty, exit
    await worker.run(stop)                  # `p2c worker`: until ``stop`` is set (SIGTERM, SIGINT)

Handlers are injected by kind, so a test (or a firm's extension) can run any flow; ``default_handlers``
wires the gateway's own. A claim takes up to ``batch`` items under a lease in one transaction; single
handlers run the items one by one, a ``BatchHandler`` takes all of its kind at once and completes them in
its own results transaction. Each item is run outside any transaction (the flow owns its units of work),
then completed — or failed, retried or not as ``gateway.worker_batch.retry_decision`` says; a batch's
failures are recorded in one transaction (``WorkQueueRepo.fail_many``), its completions in one statement
(``complete_many``).

Stopping is graceful: the items in hand are finished and recorded, nothing new is claimed. An item whose
worker died is claimed again when its lease runs out; the flows' step keys make that harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical.errors import ConfigurationError, GatewayError
from gateway.logs import get_logger
from gateway.runtime.startup import load_mapping, preflight
from gateway.runtime.systems import build_system, build_tryton
from gateway.settings import Settings
from gateway.types import SYSTEMS
from gateway.worker_batch import (
    BatchHandler,
    Completer,
    Handler,
    Job,
    Poller,
    WorkerReport,
    as_exception,
    completer,
    describe,
    heartbeat,
    job_of,
    poll_summary,
    record_failures,
    retry_decision,
)
from gateway.worker_prune import DonePruner
from gateway.worker_share import SharedCap, concurrency_limit
from mutations.billing.tryton import TrytonInvoicePoller
from mutations.billing_feedback import CRM_WRITEBACK, ErpChangePoller, crm_writeback
from mutations.deps import FlowDeps
from mutations.intake import PROVISION, run_provision
from mutations.pollers import DEFAULT_LAG, OpportunityPoller
from mutations.time_posting import (
    POST_EXPENSE,
    POST_TIME,
    RELEASE_MILESTONE,
    ExpensePoller,
    MilestonePoller,
    PostingCaches,
    TimeEntryPoller,
    post_jobs,
    release_milestone,
)
from store.db import make_engine, make_sessionmaker
from store.models import utcnow
from store.repositories import WorkQueueRepo
from store.repositories.queue import DEFAULT_LEASE
from subgraphs.crm.client import CrmClient
from subgraphs.erp.client import ErpClient
from subgraphs.psa.client import PsaClient

log = get_logger("gateway.worker")
__all__ = [
    "BatchHandler",
    "Handler",
    "Job",
    "Poller",
    "Worker",
    "WorkerReport",
    "default_handlers",
    "default_pollers",
    "erp_share",
    "open_flow_deps",
    "retry_decision",
    "run_worker",
]

Clock = Callable[[], datetime]
C = TypeVar("C")
#: How long DONE work items stay (``--keep-done-hours``): well past syncStatus windows and poller lags.
DEFAULT_KEEP_DONE = timedelta(days=7)
#: The kinds whose workers share the ERP's concurrency cap (``--erp-slots``).
POSTING_KINDS = frozenset({POST_TIME, POST_EXPENSE})


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        handlers: Mapping[str, Handler | BatchHandler],
        *,
        pollers: Sequence[Poller] = (),
        name: str | None = None,
        batch: int = 10,
        lease: timedelta = DEFAULT_LEASE,
        idle_s: float = 1.0,
        lanes: int = 1,
        clock: Clock = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        shared: Sequence[SharedCap] = (),
    ) -> None:
        if not handlers:
            raise ValueError("a worker needs at least one handler")
        self.sessionmaker = sessionmaker
        self.handlers = dict(handlers)
        self.pollers = list(pollers)
        self.name = name or worker_name()
        self.batch = batch
        self.lease = lease
        self.idle_s = idle_s
        self.lanes = max(1, lanes)  # batches in hand at once: one's store work overlaps another's writes
        self.clock = clock
        self.monotonic = monotonic
        self.shared = list(shared)  # vendor caps divided between the workers holding their kinds
        self.report = WorkerReport()
        self._next_poll: dict[str, float] = {}

    # -- pollers -----------------------------------------------------------------------------------------
    async def run_pollers(self, *, force: bool = False) -> None:
        """Run each poller that is due (all of them with ``force``). A failing poller is logged and tried
        again on its next interval; it never stops the worker or the other pollers."""
        now = self.monotonic()
        for poller in self.pollers:
            if not force and self._next_poll.get(poller.name, 0.0) > now:
                continue
            self._next_poll[poller.name] = now + poller.interval_s
            self.report.polls += 1
            try:
                result = await poller.poll()
            except (GatewayError, SQLAlchemyError, OSError) as exc:
                self.report.poll_errors += 1
                log.warning("worker.poll.failed", poller=poller.name, error=describe(exc))
            else:
                log.info("worker.poll.done", poller=poller.name, **poll_summary(result))

    async def _poll_until(self, stop: asyncio.Event) -> None:
        """The pollers on their intervals, beside the queue: a slow poller (a vendor's rate limit, a big
        window to read) never holds up the work already queued."""
        while not stop.is_set():
            await self.run_pollers()
            now = self.monotonic()
            due = min((self._next_poll.get(p.name, 0.0) for p in self.pollers), default=now + self.idle_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(due - now, 0.01))

    # -- the queue ---------------------------------------------------------------------------------------
    async def process_batch(self) -> int:
        """Claim up to ``batch`` due items of the kinds we handle and run them one by one; how many."""
        async with self.sessionmaker.begin() as session:
            queue = WorkQueueRepo(session, clock=self.clock)
            items = await queue.claim(
                list(self.handlers), worker=self.name, batch=self.batch, lease=self.lease
            )
            jobs = [job_of(item) for item in items]
            for share in self.shared:  # before the batch's first vendor request
                if any(job.kind in share.kinds for job in jobs):
                    share.apply(self.name, await queue.holders(sorted(share.kinds)))
        self.report.claimed += len(jobs)
        if not jobs:
            return 0
        batched: dict[str, list[Job]] = {}
        beating = asyncio.create_task(heartbeat(self, [job.id for job in jobs], self.lease))
        try:
            for job in jobs:
                if isinstance(self.handlers[job.kind], BatchHandler):
                    batched.setdefault(job.kind, []).append(job)
                else:
                    await self._run(job)
            for kind, group in batched.items():
                await self._run_batch(kind, group)
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
        return len(jobs)

    async def _run_batch(self, kind: str, jobs: list[Job]) -> None:
        handler = self.handlers[kind]
        if not isinstance(handler, BatchHandler):  # pragma: no cover — dispatched by process_batch
            raise TypeError(kind)
        started = self.monotonic()
        try:
            results = await handler.fn(jobs, completer(self.name, self.clock))
        except Exception as exc:
            await record_failures(self, [(job, exc) for job in jobs])
            return
        failures: list[tuple[Job, BaseException]] = []
        for job in jobs:
            error = results.get(job.id, RuntimeError("no result for the item"))
            if error is not None:
                failures.append((job, as_exception(error)))
        await record_failures(self, failures)
        done = len(jobs) - len(failures)
        # Items the handler completed count as done; ``complete`` refused those whose lease was lost,
        # which the handler reports back as ``Conflict`` (retried) — never silently done twice.
        self.report.done += done
        self.report.by_kind[kind] = self.report.by_kind.get(kind, 0) + done
        log.info(
            "worker.batch.done",
            kind=kind,
            items=len(jobs),
            done=done,
            duration_ms=round((self.monotonic() - started) * 1000, 1),
        )

    async def _run(self, job: Job) -> None:
        started = self.monotonic()
        handler = self.handlers[job.kind]
        try:
            if isinstance(handler, BatchHandler):  # pragma: no cover — process_batch dispatches these
                raise TypeError(job.kind)
            await handler(job)
        except Exception as exc:
            await record_failures(self, [(job, exc)])
            return
        async with self.sessionmaker.begin() as session:
            kept = await WorkQueueRepo(session, clock=self.clock).complete(job.id, self.name)
        if not kept:
            self.report.lost += 1
            log.warning(
                "worker.item.lease_lost", item=job.id, kind=job.kind, correlation_id=job.correlation_id
            )
            return
        self.report.done += 1
        self.report.by_kind[job.kind] = self.report.by_kind.get(job.kind, 0) + 1
        log.info(
            "worker.item.done",
            item=job.id,
            kind=job.kind,
            attempts=job.attempts,
            duration_ms=round((self.monotonic() - started) * 1000, 1),
            correlation_id=job.correlation_id,
        )

    # -- loops -------------------------------------------------------------------------------------------
    async def _lane(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if await self.process_batch() or stop.is_set():
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(self.idle_s, 0.01))

    async def drain(self) -> WorkerReport:
        """One round of every poller, then work until nothing is due (retries scheduled later stay)."""
        await self.run_pollers(force=True)
        while await self.process_batch():
            pass
        return self.report

    async def run(self, stop: asyncio.Event) -> WorkerReport:
        """Poll and work until ``stop`` is set; the queue sleeps only when there is nothing to do. A poll
        under way when ``stop`` comes is cancelled: its cursor moves only with the work it queued."""
        log.info("worker.started", worker=self.name, kinds=",".join(self.handlers), pollers=len(self.pollers))
        polling = asyncio.create_task(self._poll_until(stop))
        try:
            await asyncio.gather(*(self._lane(stop) for _ in range(self.lanes)))
        finally:
            polling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await polling
        log.info("worker.stopped", worker=self.name, done=self.report.done, failed=self.report.failed)
        return self.report


# -- the process: `p2c worker` ---------------------------------------------------------------------------


def default_handlers(
    deps: FlowDeps, *, caches: PostingCaches | None = None, lease: timedelta | None = None
) -> dict[str, Handler | BatchHandler]:
    """The gateway's own flows, by work item kind. Time and expense posting take whole batches.

    ``lease`` is the worker's work-item lease: posting heads claimed by a batch older than three leases
    belong to a dead worker (a live one heartbeats its items every third of a lease)."""
    posting_caches = caches if caches is not None else PostingCaches()
    stale_after = lease * 3 if lease is not None else None

    async def provision(job: Job) -> object:
        return await run_provision(deps, job.payload, correlation_id=job.correlation_id)

    async def post(jobs: Sequence[Job], complete: Completer) -> Mapping[int, BaseException | None]:
        return await post_jobs(deps, jobs, caches=posting_caches, complete=complete, stale_after=stale_after)

    async def release(job: Job) -> object:
        return await release_milestone(deps, job.payload, correlation_id=job.correlation_id)

    async def writeback(job: Job) -> object:
        return await crm_writeback(deps, job.payload, correlation_id=job.correlation_id)

    return {
        PROVISION: provision,
        POST_TIME: BatchHandler(post),
        POST_EXPENSE: BatchHandler(post),
        RELEASE_MILESTONE: release,
        CRM_WRITEBACK: writeback,
    }


def default_pollers(
    deps: FlowDeps, *, interval_s: float = 30.0, lag: timedelta = DEFAULT_LAG
) -> list[Poller]:
    """CRM opportunities, PSA time entries and expenses, ERP billing changes (on ``interval_s``), PSA
    milestones (10× slower)."""
    return [
        OpportunityPoller(deps, interval_s=interval_s, lag=lag),
        TimeEntryPoller(deps, interval_s=interval_s, lag=lag),
        ExpensePoller(deps, interval_s=interval_s, lag=lag),
        MilestonePoller(deps, interval_s=interval_s * 10),
        ErpChangePoller(deps, interval_s=interval_s, lag=lag),
        *([TrytonInvoicePoller(deps, interval_s=interval_s, lag=lag)] if deps.tryton is not None else []),
    ]


@asynccontextmanager
async def open_flow_deps(settings: Settings) -> AsyncIterator[FlowDeps]:
    """Connectors, store and mapping from ``settings`` for one worker process; all closed on exit."""
    async with AsyncExitStack() as stack:
        mapping = load_mapping(settings)
        clients: dict[str, object] = {}
        for name in SYSTEMS:
            system = build_system(name, settings)
            if system.client is None:
                raise ConfigurationError(f"{name}: {system.unavailable or 'no connector'}")
            stack.push_async_callback(system.client.aclose)
            clients[name] = system.client
        tryton = build_tryton(settings)  # a legal entity booked in Tryton (issue 9), else None
        if tryton is not None:
            stack.push_async_callback(tryton.aclose)
        engine = make_engine(settings.database_url)
        stack.push_async_callback(engine.dispose)
        yield FlowDeps(
            crm=_as(CrmClient, clients["crm"]),
            psa=_as(PsaClient, clients["psa"]),
            erp=_as(ErpClient, clients["erp"]),
            sessionmaker=make_sessionmaker(engine),
            mapping=mapping,
            tryton=tryton,
            erp_by_entity=settings.erp_by_entity(),
        )


async def run_worker(
    settings: Settings,
    *,
    once: bool = False,
    poll_interval_s: float = 30.0,
    lag: timedelta = DEFAULT_LAG,
    batch: int = 10,
    lanes: int = 1,
    lease: timedelta = DEFAULT_LEASE,
    kinds: Sequence[str] | None = None,
    erp_slots: int | None = None,
    keep_done: timedelta | None = DEFAULT_KEEP_DONE,
    stop: asyncio.Event | None = None,
) -> WorkerReport:
    """``p2c worker``: drain and return with ``once``, else run until SIGTERM/SIGINT (or ``stop``).
    ``lanes``: batches in hand at once (one's store work overlaps another's vendor writes);
    ``lease``: how long a claimed item stays this worker's before another may take it over; ``kinds``:
    the work item kinds this worker takes (default all), e.g. workers dedicated to a month-end spike;
    ``erp_slots``: ERP requests in flight shared by every worker holding posting work (see
    ``gateway.worker_share``) — without it each process keeps ``P2C_ERP__MAX_CONCURRENCY`` to itself;
    ``keep_done``: how long DONE items of its kinds stay in the queue (None: for ever)."""
    if erp_slots is not None:
        erp = settings.erp.model_copy(update={"max_concurrency": erp_slots})
        settings = settings.model_copy(update={"erp": erp})
    await preflight(settings, migrate_store=False)
    embedded = settings.embedded_systems()
    if embedded and not once:
        log.warning(
            "worker.embedded_sandboxes",
            systems=",".join(embedded),
            reason="this process has its own in-process sandboxes, not the server's",
        )
    async with open_flow_deps(settings) as deps:
        pollers = default_pollers(deps, interval_s=poll_interval_s, lag=lag)
        handlers = default_handlers(deps, lease=lease)
        if kinds is not None:
            unknown = sorted(set(kinds) - set(handlers))
            if unknown or not kinds:
                raise ConfigurationError(f"unknown work kinds {unknown}; known: {', '.join(handlers)}")
            handlers = {k: h for k, h in handlers.items() if k in kinds}
        if keep_done is not None:
            pollers.append(DonePruner(deps.sessionmaker, sorted(handlers), keep_done))
        shared = [] if erp_slots is None else [erp_share(deps, erp_slots)]
        worker = Worker(
            deps.sessionmaker,
            handlers,
            pollers=pollers,
            batch=batch,
            lanes=lanes,
            lease=lease,
            shared=shared,
        )
        if once:
            return await worker.drain()
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not on every platform/thread
                loop.add_signal_handler(signum, stop.set)
        try:
            return await worker.run(stop)
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(signum)


def erp_share(deps: FlowDeps, total: int) -> SharedCap:
    """The ERP connector's concurrency limit, divided between the workers holding posting work."""
    return SharedCap(concurrency_limit(deps.erp.transport), total, POSTING_KINDS)


def _as(kind: type[C], client: object) -> C:
    if not isinstance(client, kind):
        raise ConfigurationError(f"expected a {kind.__name__}, the runtime built {type(client).__name__}")
    return client
