"""Inbox dedupe and outbox ordering."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.repositories import InboxRepo, OutboxRepo

Sessions = async_sessionmaker[AsyncSession]


async def test_inbox_records_each_event_once(sessionmaker: Sessions) -> None:
    async with sessionmaker.begin() as session:
        inbox = InboxRepo(session)
        assert await inbox.record("crm", "evt-1", {"opportunity": "006A"})
        assert not await inbox.record("crm", "evt-1", {"opportunity": "006A"})
        assert await inbox.record("erp", "evt-1")  # ids are per source
    async with sessionmaker.begin() as session:
        inbox = InboxRepo(session)
        assert not await inbox.record("crm", "evt-1")  # redelivered later
        assert [e.source for e in await inbox.pending()] == ["crm", "erp"]
        await inbox.mark_processed("crm", "evt-1")
        (left,) = await inbox.pending()
        assert (left.source, left.source_event_id) == ("erp", "evt-1")
        assert [e.payload for e in await inbox.pending("crm")] == []


async def test_outbox_ids_grow_and_resume_filters_by_topic(sessionmaker: Sessions) -> None:
    async with sessionmaker.begin() as session:
        outbox = OutboxRepo(session)
        start = await outbox.last_id()
        ids = [
            await outbox.add("invoice.status", {"n": 1}, key="inv-1", legal_entity="US01"),
            await outbox.add("payment.status", {"n": 2}, key="pay-1"),
            await outbox.add("invoice.status", {"n": 3}, key="inv-1"),
        ]
    assert ids == sorted(ids)
    assert ids[0] > start
    async with sessionmaker() as session:
        outbox = OutboxRepo(session)
        assert await outbox.last_id() == ids[-1]
        assert [e.payload["n"] for e in await outbox.after(start)] == [1, 2, 3]
        assert [e.payload["n"] for e in await outbox.after(ids[0])] == [2, 3]
        invoices = await outbox.after(start, topics=["invoice.status"])
        assert [(e.id, e.key) for e in invoices] == [(ids[0], "inv-1"), (ids[2], "inv-1")]
        assert invoices[0].legal_entity == "US01"
        assert [e.payload["n"] for e in await outbox.after(start, limit=2)] == [1, 2]


async def test_outbox_publish_cycle_and_rollback_drops_events(sessionmaker: Sessions) -> None:
    async with sessionmaker.begin() as session:
        first = await OutboxRepo(session).add("invoice.status", {"n": 1})
        second = await OutboxRepo(session).add("invoice.status", {"n": 2})
    async with sessionmaker() as session:
        await OutboxRepo(session).add("invoice.status", {"n": "rolled back"})
        await session.rollback()
    async with sessionmaker.begin() as session:
        outbox = OutboxRepo(session)
        assert [e.id for e in await outbox.unpublished()] == [first, second]
        await outbox.mark_published([first])
    async with sessionmaker() as session:
        outbox = OutboxRepo(session)
        pending = await outbox.unpublished()
        assert [e.id for e in pending] == [second]
        assert [e.payload for e in await outbox.after(0)][-1] == {"n": 2}
