"""Read-only aggregates behind the gateway's store-derived Prometheus metrics (``/metrics``).

    stats = OpsMetricsRepo(session, clock=lambda: now)
    queue = await stats.queue()                        # [QueueGroup(kind, status, count, oldest_due)]
    runs = await stats.runs()                          # {(flow, status): count}
    open_ = await stats.exceptions()                   # {(flow, reason, status): count}
    resolved = await stats.resolved_since(mark)        # [Resolution(flow, reason, created, resolved)]
    provisioned = await stats.provisioned_since(mark, flow="provision_engagement")

Every call is one statement. The counts are store-wide — every process that reads them reports the same
figure — so they belong to one exporter (the gateway), aggregated with ``max``, never ``sum``. The two
``*_since`` reads are incremental: the caller keeps the high-water mark and asks only for what finished
after it, so a scrape reads only what changed since the last one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from store.models import IntegrationException, IntegrationRun, UTCDateTime, WorkItem
from store.repositories._base import Repository

#: Work item statuses reported as queue depth: waiting, in a worker's hands, and given up on (dead letter).
QUEUE_STATUSES = ("QUEUED", "CLAIMED", "FAILED")
#: At most this many rows per incremental read; the rest come with the next scrape.
SINCE_LIMIT = 5000


@dataclass(frozen=True)
class QueueGroup:
    kind: str
    status: str
    count: int
    oldest_due: datetime | None  # QUEUED only: ``available_at`` of the oldest item due now


@dataclass(frozen=True)
class Finished:
    """An exception that was resolved or dismissed, or a run that succeeded: when it began and ended."""

    flow: str
    reason: str | None
    began: datetime
    ended: datetime


class OpsMetricsRepo(Repository):
    async def queue(self) -> list[QueueGroup]:
        """Work items by kind and status (QUEUED, CLAIMED, FAILED), with the oldest due QUEUED item."""
        now = self.clock()
        due = sa.and_(WorkItem.status == "QUEUED", WorkItem.available_at <= now)
        query = (
            sa.select(
                WorkItem.kind,
                WorkItem.status,
                sa.func.count(),
                # ``min`` over a CASE loses the column's type: coerce it back to aware UTC.
                sa.type_coerce(sa.func.min(sa.case((due, WorkItem.available_at), else_=None)), UTCDateTime()),
            )
            .where(WorkItem.status.in_(QUEUE_STATUSES))
            .group_by(WorkItem.kind, WorkItem.status)
        )
        rows = (await self.session.execute(query)).all()
        return [QueueGroup(kind, status, int(count), oldest) for kind, status, count, oldest in rows]

    async def runs(self) -> dict[tuple[str, str], int]:
        """Integration runs by flow and status."""
        query = sa.select(IntegrationRun.flow, IntegrationRun.status, sa.func.count()).group_by(
            IntegrationRun.flow, IntegrationRun.status
        )
        return {(flow, status): int(n) for flow, status, n in (await self.session.execute(query)).all()}

    async def exceptions(self) -> dict[tuple[str, str, str], int]:
        """Exceptions by flow, reason code and status."""
        e = IntegrationException
        query = sa.select(e.flow, e.reason_code, e.status, sa.func.count()).group_by(
            e.flow, e.reason_code, e.status
        )
        return {(f, r, s): int(n) for f, r, s, n in (await self.session.execute(query)).all()}

    async def resolved_since(self, mark: datetime) -> list[Finished]:
        """Exceptions resolved or dismissed after ``mark``, oldest resolution first."""
        e = IntegrationException
        query = (
            sa.select(e.flow, e.reason_code, e.created_at, e.resolved_at)
            .where(e.status.in_(("RESOLVED", "DISMISSED")), e.resolved_at > mark)
            .order_by(e.resolved_at)
            .limit(SINCE_LIMIT)
        )
        rows = (await self.session.execute(query)).all()
        return [Finished(f, reason, began, ended) for f, reason, began, ended in rows if ended is not None]

    async def provisioned_since(self, mark: datetime, *, flow: str) -> list[Finished]:
        """Runs of ``flow`` that succeeded after ``mark`` and were the first success for their subject:
        from the run's start (the closed-won event's intake; a replay resumes the same run) to success.
        Later no-op runs for an engagement already provisioned (an echo, a redelivery) are left out."""
        r = IntegrationRun
        earlier = aliased(IntegrationRun)
        first = ~sa.exists().where(
            earlier.flow == r.flow,
            earlier.subject == r.subject,
            earlier.status == "SUCCEEDED",
            earlier.finished_at < r.finished_at,
        )
        query = (
            sa.select(r.flow, r.started_at, r.finished_at)
            .where(r.flow == flow, r.status == "SUCCEEDED", r.finished_at > mark, first)
            .order_by(r.finished_at)
            .limit(SINCE_LIMIT)
        )
        rows = (await self.session.execute(query)).all()
        return [Finished(f, None, began, ended) for f, began, ended in rows if ended is not None]
