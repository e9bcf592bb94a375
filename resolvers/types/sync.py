"""The sync console's types: ``syncStatus`` (queues, throughput, exceptions by reason, poller cursors) and
what ``syncApprovedTime`` did.

Plain strawberry objects built from the store's figures (``of``); ages are whole seconds at the moment
the status was read (the context's clock).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import strawberry

from mutations.posting.force import ForcedIntake
from store.repositories.queue import QueueStats
from store.repositories.sync_stats import CursorState, ExceptionGroup, Finished


def seconds(age: timedelta | None) -> int | None:
    return None if age is None else max(0, int(age.total_seconds()))


@strawberry.type
class StatusCount:
    status: str
    count: int


@strawberry.type(description="Work items that finished within the last `windowMinutes` minutes")
class Throughput:
    window_minutes: int
    completed: int = strawberry.field(description="became DONE in the window")
    failed: int = strawberry.field(description="became FAILED (attempts spent, or not retryable)")
    per_minute: float = strawberry.field(description="completed / windowMinutes")

    @classmethod
    def of(cls, f: Finished) -> Throughput:
        minutes = f.window.total_seconds() / 60
        return cls(
            window_minutes=int(minutes),
            completed=f.completed,
            failed=f.failed,
            per_minute=round(f.completed / minutes, 3) if minutes else 0.0,
        )


@strawberry.type(description="Active (OPEN or REPLAYING) exceptions of one reason code, in your entities")
class ReasonCount:
    reason_code: str
    count: int
    oldest_age_seconds: int = strawberry.field(description="since the oldest of them was raised")

    @classmethod
    def summed(cls, groups: Iterable[ExceptionGroup], now: datetime) -> list[ReasonCount]:
        """One row per reason code (most first, then by code), summed over flows and legal entities."""
        counts: dict[str, int] = {}
        oldest: dict[str, datetime] = {}
        for g in groups:
            counts[g.reason_code] = counts.get(g.reason_code, 0) + g.count
            if g.reason_code not in oldest or g.oldest < oldest[g.reason_code]:
                oldest[g.reason_code] = g.oldest
        return [
            cls(reason_code=r, count=counts[r], oldest_age_seconds=seconds(now - oldest[r]) or 0)
            for r in sorted(counts, key=lambda r: (-counts[r], r))
        ]


@strawberry.type(description="One flow's work queue (a work item kind) and its open exceptions")
class FlowSyncStatus:
    kind: str = strawberry.field(description="work item kind: post_time, post_expense, ...")
    exception_flow: str = strawberry.field(description="the `flow` its exceptions carry")
    depth: int = strawberry.field(description="waiting (QUEUED), delayed retries included")
    ready: int = strawberry.field(description="waiting and due now")
    oldest_waiting_seconds: int | None = strawberry.field(
        description="how long the oldest due item has been due; null when none is"
    )
    by_status: list[StatusCount]
    throughput: list[Throughput] = strawberry.field(description="over the last 1, 5 and 15 minutes")
    open_exceptions: int = strawberry.field(description="active exceptions of the flow, in your entities")
    exceptions_by_reason: list[ReasonCount]

    @classmethod
    def of(
        cls,
        kind: str,
        exception_flow: str,
        stats: QueueStats,
        finished: list[Finished],
        groups: list[ExceptionGroup],
        now: datetime,
    ) -> FlowSyncStatus:
        mine = [g for g in groups if g.flow == exception_flow]
        return cls(
            kind=kind,
            exception_flow=exception_flow,
            depth=stats.depth,
            ready=stats.ready,
            oldest_waiting_seconds=seconds(stats.oldest_waiting_age),
            by_status=[StatusCount(status=s, count=c) for s, c in sorted(stats.by_status.items())],
            throughput=[Throughput.of(f) for f in finished],
            open_exceptions=sum(g.count for g in mine),
            exceptions_by_reason=ReasonCount.summed(mine, now),
        )


@strawberry.type(description="Where a poller got to: its stored cursor; null value when it never ran")
class PollerCursor:
    poller: str
    cursor: str = strawberry.field(description="the cursor's name in the store")
    value: str | None = strawberry.field(description="the newest source stamp the poller has covered")
    updated_at: datetime | None = strawberry.field(description="when the poller last moved it")

    @classmethod
    def of(cls, poller: str, cursor: str, state: CursorState | None) -> PollerCursor:
        return cls(
            poller=poller,
            cursor=cursor,
            value=None if state is None else state.value,
            updated_at=None if state is None else state.updated_at,
        )


@strawberry.type
class SyncStatus:
    as_of: datetime = strawberry.field(description="when these figures were read")
    flows: list[FlowSyncStatus]
    exceptions_by_reason: list[ReasonCount] = strawberry.field(
        description="every flow's active exceptions, in your legal entities, by reason code"
    )
    pollers: list[PollerCursor]


@strawberry.type(description="What one forced intake pass read and queued")
class SyncPassResult:
    since: datetime
    time_entries_read: int
    expenses_read: int
    time_entries_queued: int = strawberry.field(
        description="new work items (already queued ones not counted)"
    )
    expenses_queued: int
    queued: int = strawberry.field(description="timeEntriesQueued + expensesQueued")

    @classmethod
    def of(cls, r: ForcedIntake) -> SyncPassResult:
        return cls(
            since=r.since,
            time_entries_read=r.time_entries_read,
            expenses_read=r.expenses_read,
            time_entries_queued=r.time_entries_queued,
            expenses_queued=r.expenses_queued,
            queued=r.queued,
        )


__all__ = [
    "FlowSyncStatus",
    "PollerCursor",
    "ReasonCount",
    "StatusCount",
    "SyncPassResult",
    "SyncStatus",
    "Throughput",
]
