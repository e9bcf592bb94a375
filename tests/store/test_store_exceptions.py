from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical.errors import Conflict, NotFound
from store.repositories import ExceptionRepo, RunRepo

Sessions = async_sessionmaker[AsyncSession]
ERROR = {"system": "erp", "status": 400, "vendorCode": "PERIOD_CLOSED"}


async def test_open_list_filter_and_age(sessionmaker: Sessions, clock: Any) -> None:
    async with sessionmaker.begin() as session:
        run = await RunRepo(session).start("provision_engagement", subject="opp-1")
        repo = ExceptionRepo(session, clock=clock)
        first = await repo.open(
            flow="provision_engagement",
            reason_code="ACCOUNT_INCOMPLETE",
            subject="opp-1",
            run_id=run.id,
            step="erp:customer:a1",
            payload={"opp": "opp-1"},
            correlation_id="c-1",
            legal_entity="US01",
        )
        clock.advance(hours=3)
        await repo.open(
            flow="post_time",
            reason_code="PERIOD_CLOSED",
            subject="t-9",
            upstream_error=ERROR,
            legal_entity="UK01",
        )
        first_id = first.id
    async with sessionmaker() as session:
        repo = ExceptionRepo(session, clock=clock)
        got = await repo.get(first_id)
        assert (got.status, got.run_id, got.payload, got.occurrences) == ("OPEN", run.id, {"opp": "opp-1"}, 1)
        assert [e.subject for e in await repo.list()] == ["opp-1", "t-9"]
        assert [e.subject for e in await repo.list(flow="post_time")] == ["t-9"]
        assert [e.subject for e in await repo.list(reason_code="ACCOUNT_INCOMPLETE")] == ["opp-1"]
        assert [e.subject for e in await repo.list(legal_entity="UK01")] == ["t-9"]
        assert [e.subject for e in await repo.list(older_than=timedelta(hours=2))] == ["opp-1"]
        assert [e.subject for e in await repo.list(status=["RESOLVED", "DISMISSED"])] == []
        assert [e.subject for e in await repo.list(limit=1, offset=1)] == ["t-9"]
        assert (await repo.list(subject="t-9"))[0].upstream_error == ERROR
        assert await repo.count_by_status() == {"OPEN": 2}
        with pytest.raises(NotFound):
            await repo.get("nope")


async def test_failing_again_reopens_the_same_exception(sessionmaker: Sessions, clock: Any) -> None:
    async with sessionmaker.begin() as session:
        repo = ExceptionRepo(session, clock=clock)
        first = await repo.open(
            flow="post_time", reason_code="RATE_UNKNOWN", subject="t-1", step="erp:timebill:t-1"
        )
        await repo.mark_replaying(first.id)
        clock.advance(minutes=5)
        again = await repo.open(
            flow="post_time",
            reason_code="PERIOD_CLOSED",
            subject="t-1",
            step="erp:timebill:t-1",
            upstream_error=ERROR,
        )
        assert again.id == first.id
        assert (again.status, again.reason_code, again.occurrences) == ("OPEN", "PERIOD_CLOSED", 2)
        other_step = await repo.open(flow="post_time", reason_code="X", subject="t-1", step="erp:expense:t-1")
        assert other_step.id != first.id


async def test_lifecycle_replay_resolve_and_dismiss(sessionmaker: Sessions) -> None:
    async with sessionmaker.begin() as session:
        repo = ExceptionRepo(session)
        fixed = await repo.open(flow="post_time", reason_code="BAD_PAYLOAD", subject="t-1", payload={"h": 0})
        await repo.update_payload(fixed.id, {"h": 7.5})
        await repo.mark_replaying(fixed.id)
        with pytest.raises(Conflict, match="already being replayed"):
            await repo.mark_replaying(fixed.id)
        resolved = await repo.mark_resolved(fixed.id, "replayed after fixing hours")
        assert (resolved.status, resolved.payload) == ("RESOLVED", {"h": 7.5})
        assert resolved.resolved_at is not None
        with pytest.raises(Conflict, match="it is RESOLVED"):
            await repo.dismiss(fixed.id, by="ops@firm", note="late")

        noise = await repo.open(flow="post_time", reason_code="DUPLICATE", subject="t-2")
        dismissed = await repo.dismiss(noise.id, by="ops@firm", note="posted by hand in the ERP")
        assert (dismissed.status, dismissed.dismissed_by, dismissed.resolution_note) == (
            "DISMISSED",
            "ops@firm",
            "posted by hand in the ERP",
        )
        with pytest.raises(Conflict):
            await repo.mark_replaying(noise.id)
        assert await repo.count_by_status() == {"RESOLVED": 1, "DISMISSED": 1}
