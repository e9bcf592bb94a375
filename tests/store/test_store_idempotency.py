from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical.errors import Conflict, IdempotencyKeyReused, NotFound
from store.repositories import IdempotencyRepo, fingerprint

OP = "provisionEngagement"
INPUT = {"opportunityId": "006A", "billing": {"method": "FIXED_FEE", "amount": "1000.00"}}
FP = fingerprint(INPUT)
Sessions = async_sessionmaker[AsyncSession]


def test_fingerprint_ignores_key_order_but_not_values() -> None:
    reordered = {"billing": {"amount": "1000.00", "method": "FIXED_FEE"}, "opportunityId": "006A"}
    assert fingerprint(reordered) == FP
    assert fingerprint({**INPUT, "opportunityId": "006B"}) != FP


async def test_first_use_is_new_then_completed_result_replays(sessionmaker: Sessions) -> None:
    async with sessionmaker.begin() as session:
        outcome = await IdempotencyRepo(session).begin("k1", "alice", OP, FP)
        assert outcome.kind == "NEW"
        assert not outcome.replay
    async with sessionmaker.begin() as session:
        await IdempotencyRepo(session).complete("k1", "alice", OP, {"runId": "r-1"}, http_status=201)
    async with sessionmaker.begin() as session:
        replay = await IdempotencyRepo(session).begin("k1", "alice", OP, FP)
    assert replay.replay
    assert replay.response == {"runId": "r-1"}
    assert replay.http_status == 201


async def test_same_key_while_first_request_runs_is_a_conflict(sessionmaker: Sessions) -> None:
    async with sessionmaker.begin() as session:
        await IdempotencyRepo(session).begin("k1", "alice", OP, FP)
    async with sessionmaker() as session:
        with pytest.raises(Conflict) as caught:
            await IdempotencyRepo(session).begin("k1", "alice", OP, FP)
    assert caught.value.code == "CONFLICT"
    assert caught.value.http_status == 409


async def test_same_key_with_different_input_is_reused(sessionmaker: Sessions) -> None:
    async with sessionmaker.begin() as session:
        repo = IdempotencyRepo(session)
        await repo.begin("k1", "alice", OP, FP)
        await repo.complete("k1", "alice", OP, {"ok": True})
    async with sessionmaker() as session:
        with pytest.raises(IdempotencyKeyReused) as caught:
            await IdempotencyRepo(session).begin("k1", "alice", OP, fingerprint({"other": 1}))
    assert caught.value.code == "IDEMPOTENCY_KEY_REUSED"
    assert caught.value.http_status == 422


async def test_keys_are_scoped_to_principal_and_operation(sessionmaker: Sessions) -> None:
    async with sessionmaker.begin() as session:
        repo = IdempotencyRepo(session)
        assert (await repo.begin("k1", "alice", OP, FP)).kind == "NEW"
        assert (await repo.begin("k1", "bob", OP, FP)).kind == "NEW"
        assert (await repo.begin("k1", "alice", "postTime", FP)).kind == "NEW"


async def test_release_after_validation_failure_stores_nothing(sessionmaker: Sessions) -> None:
    async with sessionmaker.begin() as session:
        repo = IdempotencyRepo(session)
        await repo.begin("k1", "alice", OP, FP)
        await repo.release("k1", "alice", OP)
        assert await repo.get("k1", "alice", OP) is None
    async with sessionmaker.begin() as session:
        # the client fixes the input and retries with the same key: a fresh start, not a reuse error
        assert (
            await IdempotencyRepo(session).begin("k1", "alice", OP, fingerprint({"fixed": 1}))
        ).kind == "NEW"


async def test_complete_without_begin_is_not_found(sessionmaker: Sessions) -> None:
    async with sessionmaker() as session:
        with pytest.raises(NotFound):
            await IdempotencyRepo(session).complete("ghost", "alice", OP, {})


async def test_expired_records_count_as_absent_and_are_purged(sessionmaker: Sessions, clock: Any) -> None:
    async with sessionmaker.begin() as session:
        repo = IdempotencyRepo(session, clock=clock)
        await repo.begin("old", "alice", OP, FP, ttl=timedelta(hours=1))
        await repo.complete("old", "alice", OP, {"v": 1})
        await repo.begin("young", "alice", OP, FP, ttl=timedelta(hours=3))
    clock.advance(hours=2)
    async with sessionmaker.begin() as session:
        repo = IdempotencyRepo(session, clock=clock)
        outcome = await repo.begin("old", "alice", OP, fingerprint({"different": True}))
        assert outcome.kind == "NEW"  # no reuse error: the old record had expired
        record = await repo.get("old", "alice", OP)
        assert record is not None
        assert record.status == "IN_PROGRESS"
        assert record.response is None
    clock.advance(hours=30)
    async with sessionmaker.begin() as session:
        repo = IdempotencyRepo(session, clock=clock)
        assert await repo.purge_expired() == 2
        assert await repo.get("young", "alice", OP) is None
