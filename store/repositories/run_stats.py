"""Read-only queries of the ops console: runs by correlation id (or flow, subject, status) and the samples
its flow-health and SLA figures are computed from.

    stats = RunStatsRepo(session)
    runs = await stats.runs(correlation_id="c-1")                  # newest first
    steps = await stats.steps_of([r.id for r in runs])             # {run id: [steps in order]}
    finished = await stats.finished_runs(since)                    # RunSample per run finished since
    resolved = await stats.resolutions(since)                      # exceptions closed since
    done = await stats.work_done(["post_time"], since)              # work items DONE since

Samples are plain tuples, capped at ``SAMPLE_LIMIT`` rows (newest kept), so a month-end spike costs one
bounded read; percentiles and buckets are the caller's arithmetic. Legal-entity filtering is the
caller's too (samples carry the entity), as in ``SyncStatsRepo``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from store.models import IntegrationException, IntegrationRun, IntegrationStep, WorkItem
from store.repositories._base import Repository

#: At most this many samples per query (the newest).
SAMPLE_LIMIT = 50_000


@dataclass(frozen=True)
class RunSample:
    flow: str
    status: str
    legal_entity: str | None
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class ResolutionSample:
    flow: str
    status: str  # RESOLVED or DISMISSED
    legal_entity: str | None
    created_at: datetime
    resolved_at: datetime


@dataclass(frozen=True)
class WorkSample:
    kind: str
    created_at: datetime  # queued
    finished_at: datetime  # became DONE


class RunStatsRepo(Repository):
    async def runs(
        self,
        *,
        correlation_id: str | None = None,
        flow: str | None = None,
        subject: str | None = None,
        status: str | None = None,
        legal_entity: str | None = None,
        limit: int = 1000,
    ) -> Sequence[IntegrationRun]:
        """Runs matching every given term, newest first. A correlation id matches the run's own (its last
        attempt's) or that of any of its steps, so the id of a first attempt still finds a replayed run."""
        r = IntegrationRun
        query = sa.select(r)
        if correlation_id is not None:
            step = IntegrationStep
            by_step = sa.select(step.run_id).where(step.correlation_id == correlation_id)
            query = query.where(sa.or_(r.correlation_id == correlation_id, r.id.in_(by_step)))
        for column, value in (
            (r.flow, flow),
            (r.subject, subject),
            (r.status, status),
            (r.legal_entity, legal_entity),
        ):
            if value is not None:
                query = query.where(column == value)
        query = query.order_by(r.started_at.desc(), r.id.desc()).limit(limit)
        return (await self.session.execute(query)).scalars().all()

    async def steps_of(self, run_ids: Iterable[str]) -> dict[str, list[IntegrationStep]]:
        """The steps of several runs in one statement, each run's in the order they were recorded."""
        ids = list(dict.fromkeys(run_ids))
        found: dict[str, list[IntegrationStep]] = {i: [] for i in ids}
        if not ids:
            return found
        query = (
            sa.select(IntegrationStep)
            .where(IntegrationStep.run_id.in_(ids))
            .order_by(IntegrationStep.run_id, IntegrationStep.id)
        )
        for step in (await self.session.execute(query)).scalars():
            found[step.run_id].append(step)
        return found

    async def finished_runs(self, since: datetime) -> list[RunSample]:
        """Runs that finished after ``since``, plus those still RUNNING (``finished_at`` None)."""
        r = IntegrationRun
        query = (
            sa.select(r.flow, r.status, r.legal_entity, r.started_at, r.finished_at)
            .where(sa.or_(r.finished_at > since, r.status == "RUNNING"))
            .order_by(r.started_at.desc())
            .limit(SAMPLE_LIMIT)
        )
        return [RunSample(*row) for row in await self.session.execute(query)]

    async def resolutions(self, since: datetime) -> list[ResolutionSample]:
        """Exceptions RESOLVED or DISMISSED after ``since``."""
        e = IntegrationException
        query = (
            sa.select(e.flow, e.status, e.legal_entity, e.created_at, e.resolved_at)
            .where(e.status.in_(("RESOLVED", "DISMISSED")), e.resolved_at > since)
            .order_by(e.resolved_at.desc())
            .limit(SAMPLE_LIMIT)
        )
        return [
            ResolutionSample(flow, status, entity, created, resolved)
            for flow, status, entity, created, resolved in await self.session.execute(query)
            if resolved is not None  # the WHERE guarantees it; the column is nullable
        ]

    async def work_done(self, kinds: Iterable[str], since: datetime) -> list[WorkSample]:
        """Work items of ``kinds`` that became DONE after ``since``."""
        w = WorkItem
        query = (
            sa.select(w.kind, w.created_at, w.updated_at)
            .where(w.kind.in_(list(kinds)), w.status == "DONE", w.updated_at > since)
            .order_by(w.updated_at.desc())
            .limit(SAMPLE_LIMIT)
        )
        return [WorkSample(*row) for row in await self.session.execute(query)]


__all__ = ["SAMPLE_LIMIT", "ResolutionSample", "RunSample", "RunStatsRepo", "WorkSample"]
