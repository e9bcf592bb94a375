"""The worker runtime: run the pollers on their intervals, claim queued work, run it, record the outcome.

    worker = Worker(sessionmaker, handlers={"provision": provision_job(deps)}, pollers=[poller])
    report = await worker.drain()           # `p2c worker --once`: one round of pollers, queue empty, exit
    await worker.run(stop)                  # `p2c worker`: until ``stop`` is set (SIGTERM, SIGINT)

Handlers are injected by kind, so a test (or a firm's extension) can run any flow; ``default_handlers``
wires the gateway's own. Each item is claimed under a lease in its own transaction, run outside any
transaction (the flow owns its units of work), then completed — or failed:

- ``UpstreamUnavailable`` / ``UpstreamRateLimited`` (honouring ``Retry-After``), ``Conflict`` (the same
  subject is being worked elsewhere), store and network errors, anything unexpected → back to the queue
  after ``backoff(attempts)``, ``FAILED`` once ``max_attempts`` are spent;
- any other ``GatewayError`` (bad data, permission, a vendor's refusal) → ``FAILED`` at once: retrying
  cannot fix it, and the flow has opened an exception a person can fix and replay.

Stopping is graceful: the item in hand is finished and recorded, nothing new is claimed. An item whose
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
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical.errors import (
    ConfigurationError,
    Conflict,
    GatewayError,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from gateway.correlation import new_correlation_id
from gateway.logs import get_logger
from gateway.runtime.startup import load_mapping, preflight
from gateway.runtime.systems import build_system
from gateway.settings import Settings
from gateway.types import SYSTEMS
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
from store.models import WorkItem, utcnow
from store.repositories import WorkQueueRepo
from store.repositories.queue import DEFAULT_LEASE
from subgraphs.crm.client import CrmClient
from subgraphs.erp.client import ErpClient
from subgraphs.psa.client import PsaClient

log = get_logger("gateway.worker")

Clock = Callable[[], datetime]
C = TypeVar("C")


@dataclass(frozen=True)
class Job:
    """What a handler gets: one claimed work item."""

    id: int
    kind: str
    payload: Mapping[str, Any]
    attempts: int  # including this one
    correlation_id: str


Handler = Callable[[Job], Awaitable[object]]
#: ``(jobs, complete) -> {job id: None (done, completed through ``complete``) | the error}``
BatchFn = Callable[
    [Sequence[Job], Callable[[AsyncSession, Sequence[int]], Awaitable[set[int]]]],
    Awaitable[Mapping[int, BaseException | None]],
]


@dataclass(frozen=True)
class BatchHandler:
    """A handler that takes every claimed item of its kind at once (``post_time``: concurrent ERP writes,
    one results transaction). It completes the items it finished through ``complete(session, ids)`` in
    its own transaction — ``complete`` returns the ids whose lease was still ours — and returns, per item,
    ``None`` or the error the worker then records like a single handler's (retry or FAILED)."""

    fn: BatchFn


class Poller(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def interval_s(self) -> float: ...

    async def poll(self) -> object: ...


@dataclass
class WorkerReport:
    polls: int = 0
    poll_errors: int = 0
    claimed: int = 0
    done: int = 0
    retried: int = 0
    failed: int = 0
    lost: int = 0  # finished, but the lease had been taken over meanwhile
    by_kind: dict[str, int] = field(default_factory=dict)


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
        clock: Clock = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
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
        self.clock = clock
        self.monotonic = monotonic
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
                log.warning("worker.poll.failed", poller=poller.name, error=_describe(exc))
            else:
                log.info("worker.poll.done", poller=poller.name, **_summary(result))

    def _seconds_to_next_poll(self) -> float:
        if not self.pollers:
            return self.idle_s
        return max(0.0, min(self._next_poll.get(p.name, 0.0) for p in self.pollers) - self.monotonic())

    # -- the queue ---------------------------------------------------------------------------------------
    async def process_batch(self) -> int:
        """Claim up to ``batch`` due items of the kinds we handle and run them one by one; how many."""
        async with self.sessionmaker.begin() as session:
            items = await WorkQueueRepo(session, clock=self.clock).claim(
                list(self.handlers), worker=self.name, batch=self.batch, lease=self.lease
            )
            jobs = [_job(item) for item in items]
        self.report.claimed += len(jobs)
        batched: dict[str, list[Job]] = {}
        for job in jobs:
            if isinstance(self.handlers[job.kind], BatchHandler):
                batched.setdefault(job.kind, []).append(job)
            else:
                await self._run(job)
        for kind, group in batched.items():
            await self._run_batch(kind, group)
        return len(jobs)

    async def _complete(self, session: AsyncSession, ids: Sequence[int]) -> set[int]:
        queue = WorkQueueRepo(session, clock=self.clock)
        return {i for i in ids if await queue.complete(i, self.name)}

    async def _run_batch(self, kind: str, jobs: list[Job]) -> None:
        handler = self.handlers[kind]
        if not isinstance(handler, BatchHandler):  # pragma: no cover — dispatched by process_batch
            raise TypeError(kind)
        started = self.monotonic()
        try:
            results = await handler.fn(jobs, self._complete)
        except Exception as exc:
            for job in jobs:
                await self._failed(job, exc)
            return
        done = 0
        for job in jobs:
            error = results.get(job.id, RuntimeError("no result for the item"))
            if error is not None:
                await self._failed(job, error if isinstance(error, Exception) else RuntimeError(str(error)))
                continue
            done += 1
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
            if isinstance(handler, BatchHandler):
                await self._run_batch(job.kind, [job])
                return
            await handler(job)
        except Exception as exc:
            await self._failed(job, exc)
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

    async def _failed(self, job: Job, exc: Exception) -> None:
        retry, delay = retry_decision(exc)
        error = {"type": type(exc).__name__, "message": _describe(exc)}
        if isinstance(exc, GatewayError):
            error["code"] = exc.code
        async with self.sessionmaker.begin() as session:
            status = await WorkQueueRepo(session, clock=self.clock).fail(
                job.id, self.name, error, retry=retry, delay=delay
            )
        if status is None:
            self.report.lost += 1
        elif status == "QUEUED":
            self.report.retried += 1
        else:
            self.report.failed += 1
        fields: dict[str, Any] = {
            "item": job.id,
            "kind": job.kind,
            "attempts": job.attempts,
            "status": status or "LOST",
            "error": error["message"],
            "correlation_id": job.correlation_id,
        }
        if isinstance(exc, GatewayError):
            log.warning("worker.item.failed", code=exc.code, **fields)
        else:  # not a failure we know: keep the trace for the operator
            log.error("worker.item.crashed", exc_info=True, **fields)

    # -- loops -------------------------------------------------------------------------------------------
    async def drain(self) -> WorkerReport:
        """One round of every poller, then work until nothing is due (retries scheduled later stay)."""
        await self.run_pollers(force=True)
        while await self.process_batch():
            pass
        return self.report

    async def run(self, stop: asyncio.Event) -> WorkerReport:
        """Poll and work until ``stop`` is set; sleeps only when there is nothing to do."""
        log.info("worker.started", worker=self.name, kinds=",".join(self.handlers), pollers=len(self.pollers))
        while not stop.is_set():
            await self.run_pollers()
            if await self.process_batch() or stop.is_set():
                continue
            pause = min(self.idle_s, self._seconds_to_next_poll())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(pause, 0.01))
        log.info("worker.stopped", worker=self.name, done=self.report.done, failed=self.report.failed)
        return self.report


#: Codes worth another attempt: the upstream may answer later. ``StepFailed`` carries its reason code,
#: so a flow step that failed this way (its exception opened) is retried too — the rerun resumes there.
TRANSIENT_CODES = frozenset({"UPSTREAM_UNAVAILABLE", "UPSTREAM_TIMEOUT", "UPSTREAM_RATE_LIMITED", "CONFLICT"})


def retry_decision(exc: BaseException) -> tuple[bool, timedelta | None]:
    """(retry?, delay — None for the queue's backoff) for a handler's exception."""
    if isinstance(exc, UpstreamRateLimited | UpstreamUnavailable):
        after = exc.retry_after
        return True, timedelta(seconds=after) if after is not None and after > 0 else None
    if isinstance(exc, Conflict):
        return True, None
    if isinstance(exc, GatewayError):
        return exc.code in TRANSIENT_CODES, None
    return True, None  # store, network or a bug: maybe transient; max_attempts bounds it


def _job(item: WorkItem) -> Job:
    payload: Mapping[str, Any] = (
        item.payload if isinstance(item.payload, Mapping) else {"value": item.payload}
    )
    correlation_id = payload.get("correlation_id")
    return Job(
        id=item.id,
        kind=item.kind,
        payload=payload,
        attempts=item.attempts,
        correlation_id=correlation_id if isinstance(correlation_id, str) else new_correlation_id(),
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, GatewayError):
        return exc.message
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _summary(result: object) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("read", "cursor_after"):
        if hasattr(result, name):
            out[name] = getattr(result, name)
    queued = getattr(result, "queued", None)
    if isinstance(queued, list):
        out["queued"] = len(queued)
    return out


# -- the process: `p2c worker` ---------------------------------------------------------------------------


def default_handlers(
    deps: FlowDeps, *, caches: PostingCaches | None = None
) -> dict[str, Handler | BatchHandler]:
    """The gateway's own flows, by work item kind. Time and expense posting take whole batches."""
    posting_caches = caches if caches is not None else PostingCaches()

    async def provision(job: Job) -> object:
        return await run_provision(deps, job.payload, correlation_id=job.correlation_id)

    async def post(
        jobs: Sequence[Job], complete: Callable[[AsyncSession, Sequence[int]], Awaitable[set[int]]]
    ) -> Mapping[int, BaseException | None]:
        return await post_jobs(deps, jobs, caches=posting_caches, complete=complete)

    async def release(job: Job) -> object:
        return await release_milestone(deps, job.payload, correlation_id=job.correlation_id)

    return {
        PROVISION: provision,
        POST_TIME: BatchHandler(post),
        POST_EXPENSE: BatchHandler(post),
        RELEASE_MILESTONE: release,
    }


def default_pollers(
    deps: FlowDeps, *, interval_s: float = 30.0, lag: timedelta = DEFAULT_LAG
) -> list[Poller]:
    """CRM opportunities, PSA time entries and expenses (on ``interval_s``), PSA milestones (10× slower)."""
    return [
        OpportunityPoller(deps, interval_s=interval_s, lag=lag),
        TimeEntryPoller(deps, interval_s=interval_s, lag=lag),
        ExpensePoller(deps, interval_s=interval_s, lag=lag),
        MilestonePoller(deps, interval_s=interval_s * 10),
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
        engine = make_engine(settings.database_url)
        stack.push_async_callback(engine.dispose)
        yield FlowDeps(
            crm=_as(CrmClient, clients["crm"]),
            psa=_as(PsaClient, clients["psa"]),
            erp=_as(ErpClient, clients["erp"]),
            sessionmaker=make_sessionmaker(engine),
            mapping=mapping,
        )


async def run_worker(
    settings: Settings,
    *,
    once: bool = False,
    poll_interval_s: float = 30.0,
    lag: timedelta = DEFAULT_LAG,
    batch: int = 10,
    stop: asyncio.Event | None = None,
) -> WorkerReport:
    """``p2c worker``: drain and return with ``once``, else run until SIGTERM/SIGINT (or ``stop``)."""
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
        worker = Worker(deps.sessionmaker, default_handlers(deps), pollers=pollers, batch=batch)
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


def _as(kind: type[C], client: object) -> C:
    if not isinstance(client, kind):
        raise ConfigurationError(f"expected a {kind.__name__}, the runtime built {type(client).__name__}")
    return client
