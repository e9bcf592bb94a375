"""Audit trail, sync cursors and mapping versions."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.repositories import AuditRepo, CursorRepo, MappingVersionRepo

Sessions = async_sessionmaker[AsyncSession]


async def test_audit_query_filters_and_orders_newest_first(sessionmaker: Sessions, clock: Any) -> None:
    start = clock.now
    async with sessionmaker.begin() as session:
        audit = AuditRepo(session, clock=clock)
        await audit.append(
            principal="alice",
            roles=["ops"],
            operation="replayException",
            status="OK",
            input={"id": "x1"},
            result={"status": "RESOLVED"},
            correlation_id="c-1",
        )
        clock.advance(minutes=1)
        await audit.append(
            principal="bob", operation="provisionEngagement", status="ERROR", correlation_id="c-2"
        )
        clock.advance(minutes=1)
        await audit.append(
            principal="alice", operation="provisionEngagement", status="OK", correlation_id="c-3"
        )
    async with sessionmaker() as session:
        audit = AuditRepo(session)
        assert [e.correlation_id for e in await audit.query()] == ["c-3", "c-2", "c-1"]
        assert [e.correlation_id for e in await audit.query(principal="alice")] == ["c-3", "c-1"]
        assert [e.correlation_id for e in await audit.query(operation="provisionEngagement")] == [
            "c-3",
            "c-2",
        ]
        (only,) = await audit.query(correlation_id="c-1")
        assert (only.roles, only.input, only.result) == (["ops"], {"id": "x1"}, {"status": "RESOLVED"})
        window = await audit.query(since=start, until=clock.now)
        assert [e.correlation_id for e in window] == ["c-2", "c-1"]
        assert len(await audit.query(limit=1)) == 1


async def test_cursor_set_upserts_and_rolls_back_with_the_work(sessionmaker: Sessions) -> None:
    async with sessionmaker() as session:
        assert await CursorRepo(session).get("psa.time.updated_since") is None
    async with sessionmaker.begin() as session:
        await CursorRepo(session).set("psa.time.updated_since", "2026-03-01T00:00:00Z")
    async with sessionmaker.begin() as session:
        await CursorRepo(session).set("psa.time.updated_since", "2026-03-02T00:00:00Z")
    async with sessionmaker() as session:
        await CursorRepo(session).set("psa.time.updated_since", "2026-03-09T00:00:00Z")
        await session.rollback()  # the poll failed: the cursor must not move
    async with sessionmaker() as session:
        assert await CursorRepo(session).get("psa.time.updated_since") == "2026-03-02T00:00:00Z"


async def test_mapping_versions_are_recorded_once_and_one_is_active(sessionmaker: Sessions) -> None:
    async with sessionmaker.begin() as session:
        repo = MappingVersionRepo(session)
        v1 = await repo.record("1", "fp-1", "rules: 1")
        assert v1.active
        v2 = await repo.record("2", "fp-2", "rules: 2")
        assert v2.active
        again = await repo.record("1-reloaded", "fp-1", "rules: 1")
        assert (again.id, again.version, again.active) == (v1.id, "1", True)
        await repo.record("3", "fp-3", "rules: 3", activate=False)
    async with sessionmaker() as session:
        repo = MappingVersionRepo(session)
        active = await repo.active()
        assert active is not None
        assert active.fingerprint == "fp-1"
        history = await repo.history()
        assert {m.fingerprint: m.active for m in history} == {"fp-1": True, "fp-2": False, "fp-3": False}
