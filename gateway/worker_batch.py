"""What the worker hands its handlers, and how it records their outcomes — a batch at a time.

    jobs = [job_of(item) for item in claimed]                   # Job: one claimed work item
    beating = asyncio.create_task(heartbeat(worker, ids, lease)) # leases extended while in hand
    done = await complete_jobs(sessionmaker, clock, worker, ids) # DONE, one statement (``complete_many``)
    statuses = await fail_jobs(sessionmaker, clock, worker, [(job, exc), ...])  # one transaction

``retry_decision`` says what a handler's exception means for the queue:

- ``UpstreamUnavailable`` / ``UpstreamRateLimited`` (honouring ``Retry-After``), ``Conflict`` (the same
  subject is being worked elsewhere), store and network errors, anything unexpected → back to the queue
  after ``backoff(attempts)``, ``FAILED`` once ``max_attempts`` are spent;
- any other ``GatewayError`` (bad data, permission, a vendor's refusal) → ``FAILED`` at once: retrying
  cannot fix it, and the flow has opened an exception a person can fix and replay.

A ``BatchHandler`` takes every claimed item of its kind at once (``post_time``: concurrent ERP writes, one
results transaction) and completes the items it finished itself through ``complete(session, ids)`` — in
its results transaction, so results and queue move together.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical.errors import Conflict, GatewayError, UpstreamRateLimited, UpstreamUnavailable
from gateway.correlation import new_correlation_id
from gateway.logs import get_logger
from store.models import WorkItem
from store.repositories import WorkQueueRepo
from store.repositories.queue import Failed

Clock = Callable[[], datetime]
log = get_logger("gateway.worker")


@dataclass(frozen=True)
class Job:
    """What a handler gets: one claimed work item."""

    id: int
    kind: str
    payload: Mapping[str, Any]
    attempts: int  # including this one
    correlation_id: str


Handler = Callable[[Job], Awaitable[object]]
#: ``complete(session, ids) -> the ids whose lease was still ours`` (now DONE, in the caller's transaction)
Completer = Callable[[AsyncSession, Sequence[int]], Awaitable[set[int]]]
#: ``(jobs, complete) -> {job id: None (done, completed through ``complete``) | the error}``
BatchFn = Callable[[Sequence[Job], Completer], Awaitable[Mapping[int, BaseException | None]]]


@dataclass(frozen=True)
class BatchHandler:
    """A handler that takes every claimed item of its kind at once. It completes the items it finished
    through ``complete(session, ids)`` in its own transaction — ``complete`` returns the ids whose lease
    was still ours — and returns, per item, ``None`` or the error the worker then records like a single
    handler's (retry or FAILED)."""

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


class Recorder(Protocol):
    """What ``record_failures`` needs of a worker."""

    sessionmaker: async_sessionmaker[AsyncSession]
    clock: Clock
    name: str
    report: WorkerReport


def job_of(item: WorkItem) -> Job:
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


def completer(worker: str, clock: Clock) -> Completer:
    """``complete`` for a batch handler: every finished item DONE in one statement, if still ours."""

    async def complete(session: AsyncSession, ids: Sequence[int]) -> set[int]:
        return await WorkQueueRepo(session, clock=clock).complete_many(ids, worker)

    return complete


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


def describe(exc: BaseException) -> str:
    if isinstance(exc, GatewayError):
        return exc.message
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def error_record(exc: BaseException) -> dict[str, Any]:
    """What the queue keeps as ``last_error``."""
    error: dict[str, Any] = {"type": type(exc).__name__, "message": describe(exc)}
    if isinstance(exc, GatewayError):
        error["code"] = exc.code
    return error


async def fail_jobs(
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: Clock,
    worker: str,
    failures: Sequence[tuple[Job, BaseException]],
) -> dict[int, str | None]:
    """Record failed attempts, all in one transaction: ``{job id: "QUEUED" | "FAILED" | None (lost)}``."""
    if not failures:
        return {}
    wanted: dict[int, Failed] = {}
    for job, exc in failures:
        retry, delay = retry_decision(exc)
        wanted[job.id] = Failed(error_record(exc), retry=retry, delay=delay)
    async with sessionmaker.begin() as session:
        return await WorkQueueRepo(session, clock=clock).fail_many(wanted, worker)


def as_exception(error: BaseException) -> Exception:
    return error if isinstance(error, Exception) else RuntimeError(str(error))


async def record_failures(worker: Recorder, failures: Sequence[tuple[Job, BaseException]]) -> None:
    """``fail_jobs`` for ``worker``, then its report and one log line per item."""
    statuses = await fail_jobs(worker.sessionmaker, worker.clock, worker.name, failures)
    for job, exc in failures:
        status = statuses.get(job.id)
        if status is None:
            worker.report.lost += 1
        elif status == "QUEUED":
            worker.report.retried += 1
        else:
            worker.report.failed += 1
        fields: dict[str, Any] = {
            "item": job.id,
            "kind": job.kind,
            "attempts": job.attempts,
            "status": status or "LOST",
            "error": describe(exc),
            "correlation_id": job.correlation_id,
        }
        if isinstance(exc, GatewayError):
            log.warning("worker.item.failed", code=exc.code, **fields)
        else:  # not a failure we know: keep the trace for the operator
            log.error("worker.item.crashed", trace="".join(traceback.format_exception(exc))[-4000:], **fields)


async def heartbeat(worker: Recorder, ids: list[int], lease: timedelta) -> None:
    """Extend the leases of the items in hand every third of ``lease`` until cancelled, so a short lease
    (fast takeover after a crash) never expires under a live but slow batch."""
    every = max(lease.total_seconds() / 3, 0.05)
    while True:
        await asyncio.sleep(every)
        try:
            async with worker.sessionmaker.begin() as session:
                await WorkQueueRepo(session, clock=worker.clock).extend_leases(ids, worker.name, lease)
        except (SQLAlchemyError, OSError) as exc:  # the next beat tries again; the lease is the bound
            log.warning("worker.heartbeat.failed", worker=worker.name, error=describe(exc))


def poll_summary(result: object) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("read", "cursor_after", "pruned"):
        if hasattr(result, name):
            out[name] = getattr(result, name)
    queued = getattr(result, "queued", None)
    if isinstance(queued, list):
        out["queued"] = len(queued)
    return out
