"""Inbox (dedupe what comes in) and outbox (side effects leave after commit).

    if await InboxRepo(session).record("crm", event_id, payload):   # False: seen it already
        ...
    await OutboxRepo(session).add("invoice.status", key=invoice_id, payload={...})  # same transaction

Outbox ids are the event ids subscribers resume from, so they must become visible in id order. A
PostgreSQL sequence does not guarantee that (a transaction holding id 7 may commit after one holding
id 8, and a subscriber that saw 8 would skip 7), so ``add`` takes a transaction-scoped advisory lock:
transactions that emit events commit one after the other. SQLite has a single writer anyway.

On PostgreSQL ``add`` also queues ``NOTIFY p2c_events`` in the same statement as the insert (a CTE, no
extra round trip): PostgreSQL delivers it when (and only if) the transaction commits, so every gateway's
bus pump (``gateway.bus``, ``LISTEN p2c_events``) learns of the new row at once instead of waiting for a
relay tick. The notice carries the row itself as JSON (``id``, ``topic``, ``key``, ``legal_entity``,
``payload``), so a pump whose watermark is just below it dispatches without reading the outbox; a row
whose JSON passes ``NOTICE_LIMIT`` bytes (NOTIFY's payload limit is 8,000) is announced with an empty
notice instead, and the pump reads it from the outbox.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from store.models import InboxEvent, OutboxEvent
from store.repositories._base import Repository

_OUTBOX_LOCK_KEY = 0x5032_4301
OUTBOX_CHANNEL = "p2c_events"  # LISTENed to by gateway.bus; notified when an emitting transaction commits
NOTICE_LIMIT = 7900  # bytes of row JSON a notice carries; NOTIFY refuses payloads of 8,000 and more
# Lock first: ids commit in id order.
_LOCK = sa.text("SELECT pg_advisory_xact_lock(:key)")


class InboxRepo(Repository):
    async def record(self, source: str, event_id: str, payload: Any = None) -> bool:
        """Remember an incoming event; True the first time, False for a duplicate delivery."""
        insert = (
            self.upsert_insert(InboxEvent)
            .values(
                source=source,
                source_event_id=event_id,
                payload=payload,
                status="RECEIVED",
                received_at=self.clock(),
            )
            .on_conflict_do_nothing(index_elements=["source", "source_event_id"])
            .returning(InboxEvent.id)
        )
        return (await self.session.execute(insert)).scalar_one_or_none() is not None

    async def mark_processed(self, source: str, event_id: str, *, status: str = "PROCESSED") -> None:
        await self.session.execute(
            sa.update(InboxEvent)
            .where(InboxEvent.source == source, InboxEvent.source_event_id == event_id)
            .values(status=status, processed_at=self.clock())
        )

    async def pending(self, source: str | None = None, *, limit: int = 100) -> Sequence[InboxEvent]:
        query = sa.select(InboxEvent).where(InboxEvent.status == "RECEIVED")
        if source is not None:
            query = query.where(InboxEvent.source == source)
        query = query.order_by(InboxEvent.id).limit(limit)
        return (await self.session.execute(query)).scalars().all()


class OutboxRepo(Repository):
    async def add(
        self, topic: str, payload: Any, *, key: str | None = None, legal_entity: str | None = None
    ) -> int:
        """Queue an event in the caller's transaction; it exists only if that transaction commits."""
        if self.dialect == "postgresql":
            await self.session.execute(_LOCK, {"key": _OUTBOX_LOCK_KEY})
            return await self._insert_and_notify(topic, payload, key, legal_entity)
        event = OutboxEvent(
            topic=topic, key=key, payload=payload, legal_entity=legal_entity, created_at=self.clock()
        )
        self.session.add(event)
        await self.session.flush()
        return event.id

    async def _insert_and_notify(
        self, topic: str, payload: Any, key: str | None, legal_entity: str | None
    ) -> int:
        """PostgreSQL: insert the row and queue its notice in one statement (sent at commit)."""
        row = (
            sa.insert(OutboxEvent)
            .values(topic=topic, key=key, payload=payload, legal_entity=legal_entity, created_at=self.clock())
            .returning(
                OutboxEvent.id,
                OutboxEvent.topic,
                OutboxEvent.key,
                OutboxEvent.legal_entity,
                OutboxEvent.payload,
            )
            .cte("event")
        )
        body = sa.cast(
            sa.func.json_build_object(
                "id", row.c.id, "topic", row.c.topic, "key", row.c.key,
                "legal_entity", row.c.legal_entity, "payload", row.c.payload,
            ),
            sa.Text,
        )  # fmt: skip
        notice = sa.case((sa.func.octet_length(body) <= NOTICE_LIMIT, body), else_=sa.literal(""))
        statement = sa.select(row.c.id, sa.func.pg_notify(OUTBOX_CHANNEL, notice))
        return int((await self.session.execute(statement)).scalar_one())

    async def unpublished(self, *, limit: int = 100) -> Sequence[OutboxEvent]:
        query = (
            sa.select(OutboxEvent)
            .where(OutboxEvent.published_at.is_(None))
            .order_by(OutboxEvent.id)
            .limit(limit)
        )
        return (await self.session.execute(query)).scalars().all()

    async def mark_published(self, ids: Iterable[int]) -> None:
        wanted = list(ids)
        if wanted:
            await self.session.execute(
                sa.update(OutboxEvent)
                .where(OutboxEvent.id.in_(wanted), OutboxEvent.published_at.is_(None))
                .values(published_at=self.clock())
            )

    async def after(
        self, last_id: int, *, topics: Iterable[str] | None = None, limit: int = 500
    ) -> Sequence[OutboxEvent]:
        """Events with id > ``last_id`` in id order, optionally only some topics (subscription resume)."""
        query = sa.select(OutboxEvent).where(OutboxEvent.id > last_id)
        if topics is not None:
            query = query.where(OutboxEvent.topic.in_(list(topics)))
        query = query.order_by(OutboxEvent.id).limit(limit)
        return (await self.session.execute(query)).scalars().all()

    async def last_id(self) -> int:
        """The newest event id (0 when none): where a new subscriber starts."""
        return int((await self.session.execute(sa.select(sa.func.max(OutboxEvent.id)))).scalar() or 0)
