"""Approved time and expenses → the ERP (flow 3): the entry points the worker, webhooks and replays use.
The flow itself lives in ``mutations.posting`` (intake, snapshot, enrich, validate, plan, post,
milestones); this module wires it to the queue and the exception queue.

    caches = PostingCaches(ttl_s=60)
    results = await post_jobs(deps, jobs, caches=caches, complete=scope.complete)   # a claimed batch
    await replay_exception(deps, exception_id, principal=p)                          # via register_replay

``post_jobs`` returns, per work item id, ``None`` (done, completed in the batch's results transaction)
or the error to hand to the worker: ``PostingFailed`` (an exception was opened: not retried) or an
upstream/conflict error (retried by the queue with backoff).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, Protocol

from canonical.principal import Principal
from mutations.deps import FlowDeps
from mutations.posting.intake import (
    ExpensePoller,
    TimeEntryPoller,
    handle_psa_event,
)
from mutations.posting.milestones import MilestonePoller, release_milestone, replay_release
from mutations.posting.model import (
    MAX_ATTEMPTS,
    POST_EXPENSE,
    POST_TIME,
    RELEASE_MILESTONE,
    PostingFailed,
    PostItem,
)
from mutations.posting.post import BatchReport, Completer, Outcome, post_items
from mutations.posting.snapshot import PostingCaches
from mutations.replay import ExceptionSummary, register_replay
from store.repositories import ExceptionRepo


class JobLike(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def payload(self) -> Mapping[str, Any]: ...

    @property
    def attempts(self) -> int: ...

    @property
    def correlation_id(self) -> str: ...


async def post_jobs(
    deps: FlowDeps,
    jobs: Sequence[JobLike],
    *,
    caches: PostingCaches,
    complete: Completer | None = None,
    stale_after: timedelta | None = None,
) -> dict[int, BaseException | None]:
    items = [
        PostItem.of(j.payload, job_id=j.id, correlation_id=j.correlation_id, attempts=j.attempts)
        for j in jobs
    ]
    report = await post_items(deps, items, caches=caches, complete=complete, stale_after=stale_after)
    results: dict[int, BaseException | None] = {}
    for item in items:
        if item.job_id is not None:
            results[item.job_id] = _error(report.outcomes.get(item))
    return results


def _error(outcome: Outcome | None) -> BaseException | None:
    if outcome is None:
        return RuntimeError("entry left without an outcome")
    if outcome.status == "FAILED" and outcome.failure is not None:
        return PostingFailed(outcome.failure, outcome.exception_id)
    return outcome.error


_REPLAY_CACHES = PostingCaches(ttl_s=0)  # a person has just fixed something: read it all again


async def replay_posting(
    deps: FlowDeps, exception: ExceptionSummary, principal: Principal, correlation_id: str | None
) -> tuple[Any, str | None]:
    """Post the entry version stored on the exception, once, with the mapping and data as they are now."""
    async with deps.sessionmaker() as session:
        payload = (await ExceptionRepo(session).get(exception.id)).payload or {}
    deps.erp.invalidate()
    item = PostItem.of(payload, correlation_id=correlation_id, attempts=MAX_ATTEMPTS)
    report = await post_items(deps, [item], caches=_REPLAY_CACHES)
    outcome = report.outcomes[item]
    if outcome.status == "FAILED":
        return {"status": outcome.status, "reason": outcome.failure and outcome.failure.reason}, (
            outcome.exception_id
        )
    if outcome.error is not None:
        raise outcome.error
    return {"status": outcome.status, "run": report.run_id}, None


register_replay(POST_TIME, replay_posting)
register_replay(POST_EXPENSE, replay_posting)
register_replay(RELEASE_MILESTONE, replay_release)

__all__ = [
    "POST_EXPENSE",
    "POST_TIME",
    "RELEASE_MILESTONE",
    "BatchReport",
    "ExpensePoller",
    "MilestonePoller",
    "PostingCaches",
    "PostingFailed",
    "TimeEntryPoller",
    "handle_psa_event",
    "post_items",
    "post_jobs",
    "release_milestone",
    "replay_posting",
]
