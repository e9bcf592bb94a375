"""Read-only figures for the sync console (``syncStatus``) and the posting ledger's view of an entry.

    stats = SyncStatsRepo(session, clock=lambda: now)
    done = await stats.throughput(["post_time"], [timedelta(minutes=1), timedelta(minutes=5)])
    #   {"post_time": [Finished(window=1 min, completed=3, failed=0), Finished(window=5 min, ...)]}
    groups = await stats.active_exceptions()        # ExceptionGroup(flow, reason, entity, count, oldest)
    cursors = await stats.cursors([TIME_CURSOR])    # {name: CursorState(value, updated_at)}

Throughput counts work items that *finished* inside a window: ``DONE`` (and, separately, ``FAILED``)
items whose ``updated_at`` — the moment ``WorkQueueRepo.complete``/``fail`` stamped them with the
repository clock — is within ``window`` of ``clock()``. One statement per call, however many kinds and
windows, reading only the window's items through the index on (kind, status, updated_at) (migration
0002); ``p2c worker`` prunes DONE items after ``--keep-done-hours``. Legal-entity filtering is the
caller's (the principal is not the store's business): exception groups carry their entity so the caller
can drop what it may not see before summing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from store.models import IntegrationException, SyncCursor, WorkItem
from store.repositories._base import Repository
from store.repositories.exceptions import ACTIVE

#: Work item statuses that mean "not finished yet": waiting, or in a worker's hands.
WAITING = ("QUEUED", "CLAIMED")


@dataclass(frozen=True)
class Finished:
    """Work items of one kind that finished within ``window`` before now."""

    window: timedelta
    completed: int
    failed: int


@dataclass(frozen=True)
class ExceptionGroup:
    """Active (OPEN or REPLAYING) exceptions of one flow, reason code and legal entity."""

    flow: str
    reason_code: str
    legal_entity: str | None
    count: int
    oldest: datetime  # created_at of the oldest one


@dataclass(frozen=True)
class CursorState:
    value: str
    updated_at: datetime


class SyncStatsRepo(Repository):
    async def throughput(
        self, kinds: Iterable[str], windows: Sequence[timedelta]
    ) -> dict[str, list[Finished]]:
        """Per kind, per window (in the order given): items that became DONE / FAILED in the window."""
        wanted = list(dict.fromkeys(kinds))
        if not wanted or not windows:
            return {k: [] for k in wanted}
        if any(w <= timedelta(0) for w in windows):
            raise ValueError("throughput windows must be positive")
        now = self.clock()
        columns: list[sa.ColumnElement[int]] = []
        for w in windows:
            since = now - w
            for status in ("DONE", "FAILED"):
                hit = sa.and_(
                    WorkItem.status == status, WorkItem.updated_at > since, WorkItem.updated_at <= now
                )
                columns.append(sa.func.coalesce(sa.func.sum(sa.case((hit, 1), else_=0)), 0))
        query = (
            sa.select(WorkItem.kind, *columns)
            .where(
                WorkItem.kind.in_(wanted),
                WorkItem.status.in_(("DONE", "FAILED")),
                WorkItem.updated_at > now - max(windows),
            )
            .group_by(WorkItem.kind)
        )
        found = {k: [Finished(w, 0, 0) for w in windows] for k in wanted}
        for row in await self.session.execute(query):
            counts = [int(c) for c in row[1:]]
            found[str(row[0])] = [
                Finished(w, counts[2 * i], counts[2 * i + 1]) for i, w in enumerate(windows)
            ]
        return found

    async def active_exceptions(self, flows: Iterable[str] | None = None) -> list[ExceptionGroup]:
        """Active exceptions grouped by flow, reason code and legal entity (every entity: filter after)."""
        e = IntegrationException
        query = sa.select(e.flow, e.reason_code, e.legal_entity, sa.func.count(), sa.func.min(e.created_at))
        query = query.where(e.status.in_(ACTIVE))
        if flows is not None:
            query = query.where(e.flow.in_(list(flows)))
        query = query.group_by(e.flow, e.reason_code, e.legal_entity).order_by(
            e.flow, e.reason_code, e.legal_entity
        )
        return [
            ExceptionGroup(str(flow), str(reason), entity, int(count), oldest)
            for flow, reason, entity, count, oldest in await self.session.execute(query)
        ]

    async def cursors(self, names: Iterable[str]) -> dict[str, CursorState]:
        """The stored cursors among ``names`` with when they last moved; missing ones are left out."""
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return {}
        query = sa.select(SyncCursor.name, SyncCursor.value, SyncCursor.updated_at).where(
            SyncCursor.name.in_(wanted)
        )
        return {
            str(name): CursorState(str(value), updated_at)
            for name, value, updated_at in await self.session.execute(query)
        }

    async def waiting(self, dedupe_keys: Iterable[str]) -> set[str]:
        """The dedupe keys among ``dedupe_keys`` whose work item is QUEUED or CLAIMED (not finished)."""
        wanted = list(dict.fromkeys(dedupe_keys))
        if not wanted:
            return set()
        query = sa.select(WorkItem.dedupe_key).where(
            WorkItem.dedupe_key.in_(wanted), WorkItem.status.in_(WAITING)
        )
        return {str(k) for k in (await self.session.execute(query)).scalars() if k is not None}

    async def active_subjects(self, subjects: Iterable[str]) -> set[str]:
        """The subjects among ``subjects`` with an OPEN or REPLAYING exception (of any flow)."""
        wanted = list(dict.fromkeys(subjects))
        if not wanted:
            return set()
        query = sa.select(IntegrationException.subject).where(
            IntegrationException.subject.in_(wanted), IntegrationException.status.in_(ACTIVE)
        )
        return {str(s) for s in (await self.session.execute(query)).scalars() if s is not None}


__all__ = ["WAITING", "CursorState", "ExceptionGroup", "Finished", "SyncStatsRepo"]
