"""The work queue: durable jobs claimed by workers under a lease.

    queue = WorkQueueRepo(session)
    await queue.enqueue("post_time", {"entry": 42}, dedupe_key="psa:time:42:v3")   # in the caller's tx
    async with sessionmaker.begin() as session:                                      # worker
        items = await WorkQueueRepo(session).claim("post_time", worker="w1", batch=50)
    ... process, then complete(item.id, "w1") or fail(item.id, "w1", error)
    done = await queue.complete_many([1, 2, 3], "w1")                  # a batch: one statement
    statuses = await queue.fail_many({4: Failed(error), 5: Failed(error, retry=False)}, "w1")
    pruned = await queue.prune_done(["post_time"], timedelta(days=7))  # retention for finished items

A claim is one statement: ``UPDATE ... WHERE id IN (SELECT ... LIMIT n [FOR UPDATE SKIP LOCKED])
RETURNING``. On PostgreSQL concurrent claimers skip each other's locked rows; SQLite has one writer, so
the statement is atomic by itself. An item whose lease ran out (a worker died) is claimable again;
``complete``/``fail`` only work for the worker holding the claim, so a worker that lost its lease
cannot finish an item someone else took over.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from store.models import WorkItem
from store.repositories._base import Repository

DEFAULT_LEASE = timedelta(minutes=5)


def backoff(
    attempts: int, *, base: timedelta = timedelta(seconds=10), cap: timedelta = timedelta(hours=1)
) -> timedelta:
    """Exponential retry delay after ``attempts`` tries: 10 s, 20 s, 40 s, … at most an hour."""
    delay: timedelta = base * 2 ** max(attempts - 1, 0)
    return min(delay, cap)


@dataclass(frozen=True)
class Failed:
    """One failed attempt for ``fail_many``: the error to keep, whether to retry, and after how long
    (None: the queue's ``backoff``)."""

    error: Any
    retry: bool = True
    delay: timedelta | None = None


@dataclass(frozen=True)
class QueueStats:
    depth: int  # waiting (QUEUED), including delayed retries
    ready: int  # waiting and due now
    oldest_waiting_age: timedelta | None  # how long the oldest due item has been due
    by_status: dict[str, int] = field(default_factory=dict)


class WorkQueueRepo(Repository):
    async def enqueue(
        self,
        kind: str,
        payload: Any,
        *,
        dedupe_key: str | None = None,
        available_at: datetime | None = None,
        legal_entity: str | None = None,
        max_attempts: int = 5,
    ) -> int | None:
        """Add an item; its id, or None when an item with ``dedupe_key`` already exists."""
        now = self.clock()
        insert = (
            self.upsert_insert(WorkItem)
            .values(
                kind=kind,
                dedupe_key=dedupe_key,
                payload=payload,
                status="QUEUED",
                attempts=0,
                max_attempts=max_attempts,
                available_at=available_at or now,
                legal_entity=legal_entity,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(WorkItem.id)
        )
        return (await self.session.execute(insert)).scalar_one_or_none()

    async def claim(
        self,
        kinds: str | Sequence[str] | None,
        *,
        worker: str,
        batch: int = 10,
        lease: timedelta = DEFAULT_LEASE,
    ) -> Sequence[WorkItem]:
        """Claim up to ``batch`` due items (oldest first) for ``worker``; each counts one attempt."""
        now = self.clock()
        due = sa.or_(
            sa.and_(WorkItem.status == "QUEUED", WorkItem.available_at <= now),
            sa.and_(WorkItem.status == "CLAIMED", WorkItem.lease_expires_at <= now),
        )
        candidates = sa.select(WorkItem.id).where(due)
        if isinstance(kinds, str):
            candidates = candidates.where(WorkItem.kind == kinds)
        elif kinds is not None:
            candidates = candidates.where(WorkItem.kind.in_(list(kinds)))
        candidates = candidates.order_by(WorkItem.available_at, WorkItem.id).limit(batch)
        if self.dialect == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        # MATERIALIZED: the candidates are picked (and locked) exactly once. As a plain IN (subquery) the
        # planner may re-run it per row, and LIMIT then no longer bounds the batch.
        picked = candidates.cte("claimable").prefix_with("MATERIALIZED")
        claim = (
            sa.update(WorkItem)
            # `due` again: PostgreSQL re-checks it on rows another claimer changed meanwhile
            .where(WorkItem.id.in_(sa.select(picked.c.id)), due)
            .values(
                status="CLAIMED",
                claimed_by=worker,
                lease_expires_at=now + lease,
                attempts=WorkItem.attempts + 1,
                updated_at=now,
            )
            .returning(WorkItem)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        items = (await self.session.execute(claim)).scalars().all()
        return sorted(items, key=lambda item: (item.available_at, item.id))

    async def holders(self, kinds: Sequence[str]) -> set[str]:
        """The workers holding unexpired claims of ``kinds`` now (``gateway.worker_share`` divides a
        vendor's concurrency cap between them)."""
        query = (
            sa.select(WorkItem.claimed_by)
            .where(
                WorkItem.status == "CLAIMED",
                WorkItem.lease_expires_at > self.clock(),
                WorkItem.kind.in_(list(kinds)),
            )
            .distinct()
        )
        return {str(w) for w in (await self.session.execute(query)).scalars() if w is not None}

    async def extend_lease(self, item_id: int, worker: str, lease: timedelta = DEFAULT_LEASE) -> bool:
        """Heartbeat for long work; False when the item is no longer this worker's."""
        now = self.clock()
        return await self._update_claimed(item_id, worker, lease_expires_at=now + lease, updated_at=now)

    async def extend_leases(
        self, item_ids: Sequence[int], worker: str, lease: timedelta = DEFAULT_LEASE
    ) -> set[int]:
        """``extend_lease`` for a batch in one statement: the ids still ``worker``'s, now held ``lease``
        longer. A worker heartbeats the batch in hand, so a short lease only ever expires on a dead one."""
        if not item_ids:
            return set()
        now = self.clock()
        statement = (
            sa.update(WorkItem)
            .where(
                WorkItem.id.in_(list(item_ids)), WorkItem.status == "CLAIMED", WorkItem.claimed_by == worker
            )
            .values(lease_expires_at=now + lease, updated_at=now)
            .returning(WorkItem.id)
            .execution_options(synchronize_session=False)
        )
        return {int(i) for i in (await self.session.execute(statement)).scalars()}

    async def complete(self, item_id: int, worker: str) -> bool:
        """DONE; False when ``worker`` no longer holds the claim (its lease was taken over)."""
        return await self._update_claimed(
            item_id, worker, status="DONE", lease_expires_at=None, updated_at=self.clock()
        )

    async def complete_many(self, item_ids: Sequence[int], worker: str) -> set[int]:
        """DONE for every item of ``item_ids`` that ``worker`` still holds, in one statement; their ids
        (an item whose lease was taken over is left to its new holder)."""
        if not item_ids:
            return set()
        statement = (
            sa.update(WorkItem)
            .where(
                WorkItem.id.in_(list(item_ids)), WorkItem.status == "CLAIMED", WorkItem.claimed_by == worker
            )
            .values(status="DONE", lease_expires_at=None, updated_at=self.clock())
            .returning(WorkItem.id)
            .execution_options(synchronize_session=False)
        )
        return {int(i) for i in (await self.session.execute(statement)).scalars()}

    async def fail(
        self, item_id: int, worker: str, error: Any, *, retry: bool = True, delay: timedelta | None = None
    ) -> str | None:
        """Record a failed attempt: back to QUEUED after a backoff while attempts remain, else FAILED.

        Returns the new status, or None when ``worker`` no longer holds the claim.
        """
        return (await self.fail_many({item_id: Failed(error, retry, delay)}, worker))[item_id]

    async def fail_many(self, failures: Mapping[int, Failed], worker: str) -> dict[int, str | None]:
        """``fail`` for a batch: one read of the items ``worker`` holds (locked on PostgreSQL), one
        statement updating them all. ``{id: "QUEUED" | "FAILED" | None (no longer ours)}``."""
        if not failures:
            return {}
        held = (
            sa.select(WorkItem.id, WorkItem.attempts, WorkItem.max_attempts, WorkItem.available_at)
            .where(
                WorkItem.id.in_(list(failures)), WorkItem.status == "CLAIMED", WorkItem.claimed_by == worker
            )
        )
        if self.dialect == "postgresql":
            held = held.with_for_update()
        now = self.clock()
        statuses: dict[int, str | None] = dict.fromkeys(failures)
        rows: list[dict[str, Any]] = []
        for item_id, attempts, max_attempts, available_at in (await self.session.execute(held)).all():
            failed = failures[item_id]
            if failed.retry and attempts < max_attempts:
                wait = failed.delay if failed.delay is not None else backoff(attempts)
                status, due = "QUEUED", now + wait
            else:
                status, due = "FAILED", available_at
            statuses[item_id] = status
            rows.append({"b_id": item_id, "b_status": status, "b_due": due, "b_error": failed.error})
        if rows:
            statement = (
                sa.update(WorkItem)
                .where(
                    WorkItem.id == sa.bindparam("b_id"),
                    WorkItem.status == "CLAIMED",
                    WorkItem.claimed_by == worker,
                )
                .values(
                    status=sa.bindparam("b_status"),
                    available_at=sa.bindparam("b_due", type_=WorkItem.available_at.type),
                    last_error=sa.bindparam("b_error", type_=WorkItem.last_error.type),
                    claimed_by=None,
                    lease_expires_at=None,
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            await (await self.session.connection()).execute(statement, rows)
        return statuses

    async def requeue(self, item_id: int) -> bool:
        """A FAILED item back to the queue with fresh attempts (operator replay)."""
        now = self.clock()
        result = await self.session.execute(
            sa.update(WorkItem)
            .where(WorkItem.id == item_id, WorkItem.status == "FAILED")
            .values(status="QUEUED", attempts=0, available_at=now, updated_at=now)
        )
        return bool(getattr(result, "rowcount", 0))

    async def prune_done(self, kinds: Sequence[str], older_than: timedelta, *, limit: int = 10_000) -> int:
        """Delete up to ``limit`` DONE items of ``kinds`` finished more than ``older_than`` ago; how many
        (the index on kind, status, updated_at finds them).

        Safe for exactly-once: what was posted or provisioned is kept by the flows' own ledgers (posting
        heads, step keys), so an item whose dedupe key is freed and queued again finds its work done. Keep
        ``older_than`` well past the pollers' lag window all the same: a re-read then never queues the item
        again at all. FAILED items stay: they are an operator's to replay or dismiss."""
        cutoff = self.clock() - older_than
        doomed = (
            sa.select(WorkItem.id)
            .where(WorkItem.kind.in_(list(kinds)), WorkItem.status == "DONE", WorkItem.updated_at < cutoff)
            .order_by(WorkItem.id)
            .limit(limit)
        )
        result = await self.session.execute(
            sa.delete(WorkItem)
            .where(WorkItem.id.in_(doomed.scalar_subquery()))
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    async def get(self, item_id: int) -> WorkItem | None:
        return await self.session.get(WorkItem, item_id, populate_existing=True)

    async def stats(self, kind: str | None = None) -> QueueStats:
        now = self.clock()
        scope = [WorkItem.kind == kind] if kind is not None else []
        counts = await self.session.execute(
            sa.select(WorkItem.status, sa.func.count()).where(*scope).group_by(WorkItem.status)
        )
        by_status = {status: int(count) for status, count in counts}
        ready_row = (
            await self.session.execute(
                sa.select(sa.func.count(), sa.func.min(WorkItem.available_at)).where(
                    *scope, WorkItem.status == "QUEUED", WorkItem.available_at <= now
                )
            )
        ).one()
        oldest: datetime | None = ready_row[1]  # min() keeps the column type: aware UTC
        return QueueStats(
            depth=by_status.get("QUEUED", 0),
            ready=int(ready_row[0]),
            oldest_waiting_age=(now - oldest) if oldest is not None else None,
            by_status=by_status,
        )

    async def _update_claimed(self, item_id: int, worker: str, **values: Any) -> bool:
        result = await self.session.execute(
            sa.update(WorkItem)
            .where(WorkItem.id == item_id, WorkItem.status == "CLAIMED", WorkItem.claimed_by == worker)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0))
