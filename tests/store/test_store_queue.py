from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.db import make_engine, make_sessionmaker
from store.migrate import upgrade_to_head
from store.repositories import WorkQueueRepo, backoff
from store.repositories.queue import Failed

Sessions = async_sessionmaker[AsyncSession]


def test_backoff_doubles_up_to_a_cap() -> None:
    assert [backoff(n).total_seconds() for n in (1, 2, 3)] == [10, 20, 40]
    assert backoff(30) == timedelta(hours=1)


async def test_enqueue_dedupes_on_key(sessionmaker: Sessions) -> None:
    async with sessionmaker.begin() as session:
        queue = WorkQueueRepo(session)
        first = await queue.enqueue("post_time", {"entry": 1}, dedupe_key="psa:time:1:v1")
        assert first is not None
        assert await queue.enqueue("post_time", {"entry": 1}, dedupe_key="psa:time:1:v1") is None
        assert await queue.enqueue("post_time", {"entry": 1}, dedupe_key="psa:time:1:v2") is not None
        assert await queue.enqueue("post_time", {"n": "no key"}) is not None
        assert await queue.enqueue("post_time", {"n": "no key"}) is not None
        assert (await queue.stats("post_time")).depth == 4


async def test_claim_takes_due_items_oldest_first_in_batches(sessionmaker: Sessions, clock: Any) -> None:
    async with sessionmaker.begin() as session:
        queue = WorkQueueRepo(session, clock=clock)
        for n in range(5):
            await queue.enqueue(
                "post_time", {"n": n}, dedupe_key=f"t{n}", available_at=clock.now - timedelta(minutes=5 - n)
            )
        await queue.enqueue("post_time", {"n": "later"}, available_at=clock.now + timedelta(hours=1))
        await queue.enqueue("post_expense", {"n": "other kind"})
    async with sessionmaker.begin() as session:
        queue = WorkQueueRepo(session, clock=clock)
        batch = await queue.claim("post_time", worker="w1", batch=3, lease=timedelta(minutes=2))
        assert [item.payload["n"] for item in batch] == [0, 1, 2]
        assert {(item.status, item.claimed_by, item.attempts) for item in batch} == {("CLAIMED", "w1", 1)}
        assert batch[0].lease_expires_at == clock.now + timedelta(minutes=2)
        rest = await queue.claim(["post_time", "post_expense"], worker="w2", batch=10)
        assert sorted(str(item.payload["n"]) for item in rest) == ["3", "4", "other kind"]
        assert await queue.claim(None, worker="w3") == []
        stats = await queue.stats()
        assert stats.by_status == {"CLAIMED": 6, "QUEUED": 1}
        assert (stats.depth, stats.ready, stats.oldest_waiting_age) == (1, 0, None)


async def test_expired_lease_is_taken_over_and_the_old_worker_cannot_finish(
    sessionmaker: Sessions, clock: Any
) -> None:
    async with sessionmaker.begin() as session:
        queue = WorkQueueRepo(session, clock=clock)
        item_id = await queue.enqueue("post_time", {"n": 1})
        assert item_id is not None
        await queue.claim("post_time", worker="crashed", lease=timedelta(seconds=30))
        clock.advance(seconds=10)
        assert await queue.claim("post_time", worker="w2") == []  # lease still valid
        clock.advance(seconds=21)
        (taken,) = await queue.claim("post_time", worker="w2")
        assert (taken.id, taken.claimed_by, taken.attempts) == (item_id, "w2", 2)
        assert not await queue.complete(item_id, "crashed")
        assert await queue.fail(item_id, "crashed", {"x": 1}) is None
        assert not await queue.extend_lease(item_id, "crashed")
        assert await queue.extend_lease(item_id, "w2", timedelta(minutes=10))
        assert await queue.complete(item_id, "w2")
        done = await queue.get(item_id)
        assert done is not None
        assert (done.status, done.lease_expires_at) == ("DONE", None)
        assert await queue.claim("post_time", worker="w3") == []


async def test_failures_retry_with_backoff_until_attempts_run_out(sessionmaker: Sessions, clock: Any) -> None:
    async with sessionmaker.begin() as session:
        queue = WorkQueueRepo(session, clock=clock)
        item_id = await queue.enqueue("post_time", {"n": 1}, max_attempts=2)
        assert item_id is not None
        await queue.claim("post_time", worker="w1")
        assert await queue.fail(item_id, "w1", {"code": "UPSTREAM_TIMEOUT"}) == "QUEUED"
        retried = await queue.get(item_id)
        assert retried is not None
        assert (retried.claimed_by, retried.available_at) == (None, clock.now + backoff(1))
        assert retried.last_error == {"code": "UPSTREAM_TIMEOUT"}
        assert await queue.claim("post_time", worker="w1") == []  # not due yet
        stats = await queue.stats()
        assert (stats.depth, stats.ready) == (1, 0)
        clock.advance(seconds=15)
        stats = await queue.stats()
        assert (stats.ready, stats.oldest_waiting_age) == (1, timedelta(seconds=5))
        await queue.claim("post_time", worker="w1")
        assert await queue.fail(item_id, "w1", {"code": "UPSTREAM_TIMEOUT"}) == "FAILED"
        assert await queue.claim("post_time", worker="w1") == []
        assert (await queue.stats()).by_status == {"FAILED": 1}
        assert await queue.requeue(item_id)
        (again,) = await queue.claim("post_time", worker="w1")
        assert again.attempts == 1
        assert await queue.fail(item_id, "w1", {"code": "BAD"}, retry=False) == "FAILED"


async def test_concurrent_claimers_never_get_the_same_item(scratch_database_url: str) -> None:
    engine = make_engine(scratch_database_url)
    sessions = make_sessionmaker(engine)
    try:
        async with sessions.begin() as session:
            queue = WorkQueueRepo(session)
            for n in range(60):
                await queue.enqueue("post_time", {"n": n}, dedupe_key=f"entry-{n}")

        async def worker(name: str) -> list[int]:
            claimed: list[int] = []
            while True:
                async with sessions.begin() as session:
                    batch = await WorkQueueRepo(session).claim("post_time", worker=name, batch=7)
                    # hold the row locks a little so the claimers really overlap
                    await asyncio.sleep(0.01)
                if not batch:
                    return claimed
                claimed.extend(item.id for item in batch)

        results = await asyncio.gather(*(worker(f"w{i}") for i in range(4)))
    finally:
        await engine.dispose()
    every = [item_id for result in results for item_id in result]
    assert len(every) == 60
    assert len(set(every)) == 60
    if engine.dialect.name == "postgresql":
        assert sum(1 for result in results if result) > 1, "SKIP LOCKED should let claimers work in parallel"


@pytest.mark.parametrize("batch", [1, 5])
async def test_an_open_claim_on_postgres_is_skipped_not_waited_for(pg_scratch_url: str, batch: int) -> None:
    """Two transactions open at once: the second skips the rows the first has locked."""
    upgrade_to_head(pg_scratch_url)
    engine = make_engine(pg_scratch_url)
    sessions = make_sessionmaker(engine)
    try:
        async with sessions.begin() as session:
            for n in range(10):
                await WorkQueueRepo(session).enqueue("post_time", {"n": n})
        async with sessions.begin() as first, sessions.begin() as second:
            a = await WorkQueueRepo(first).claim("post_time", worker="a", batch=batch)
            b = await asyncio.wait_for(WorkQueueRepo(second).claim("post_time", worker="b", batch=batch), 10)
    finally:
        await engine.dispose()
    assert len(a) == len(b) == batch
    assert not {item.id for item in a} & {item.id for item in b}


async def test_complete_many_and_fail_many_only_touch_what_the_worker_holds(
    sessionmaker: Sessions, clock: Any
) -> None:
    async with sessionmaker.begin() as session:
        queue = WorkQueueRepo(session, clock=clock)
        ids = [await queue.enqueue("post_time", {"n": n}, max_attempts=2) for n in range(6)]
        assert all(i is not None for i in ids)
        mine = [item.id for item in await queue.claim("post_time", worker="w1", batch=5)]
        (theirs,) = [item.id for item in await queue.claim("post_time", worker="w2", batch=5)]
        assert await queue.complete_many([], "w1") == set()
        assert await queue.complete_many([*mine[:2], theirs], "w1") == set(mine[:2])
        delay = timedelta(seconds=3)
        statuses = await queue.fail_many(
            {
                mine[2]: Failed({"code": "UPSTREAM_TIMEOUT"}),
                mine[3]: Failed({"code": "CONFLICT"}, delay=delay),
                mine[4]: Failed({"code": "BAD"}, retry=False),
                theirs: Failed({"code": "X"}),
                mine[0]: Failed({"code": "X"}),  # already DONE: no longer held
            },
            "w1",
        )
        assert statuses == {
            mine[2]: "QUEUED", mine[3]: "QUEUED", mine[4]: "FAILED", theirs: None, mine[0]: None
        }
        rows = {i: row for i in (*mine, theirs) if (row := await queue.get(i)) is not None}
        assert [rows[i].status for i in mine] == ["DONE", "DONE", "QUEUED", "QUEUED", "FAILED"]
        assert rows[mine[2]].available_at == clock.now + backoff(1)
        assert rows[mine[3]].available_at == clock.now + delay
        assert rows[mine[3]].last_error == {"code": "CONFLICT"}
        assert rows[mine[4]].claimed_by is None
        assert (rows[theirs].status, rows[theirs].claimed_by) == ("CLAIMED", "w2")
        clock.advance(seconds=20)
        again = await queue.claim("post_time", worker="w1", batch=5)
        assert sorted(item.id for item in again) == sorted(mine[2:4])
        assert await queue.fail_many({i.id: Failed({"code": "UPSTREAM_TIMEOUT"}) for i in again}, "w1") == {
            i.id: "FAILED" for i in again  # attempts spent
        }


async def test_prune_done_deletes_only_old_done_items_of_the_kinds(
    sessionmaker: Sessions, clock: Any
) -> None:
    async with sessionmaker.begin() as session:
        queue = WorkQueueRepo(session, clock=clock)
        ids: dict[str, int] = {}
        for name, kind in [
            ("old-done", "post_time"),
            ("old-done-2", "post_time"),
            ("old-failed", "post_time"),
            ("old-other-kind", "provision"),
            ("recent-done", "post_time"),
            ("waiting", "post_time"),
        ]:
            item = await queue.enqueue(kind, {"n": name}, dedupe_key=name, max_attempts=1)
            assert item is not None
            ids[name] = item
        claimed = {i.id for i in await queue.claim(["post_time", "provision"], worker="w1", batch=5)}
        assert claimed == {ids[n] for n in ids if n != "waiting"}
        await queue.complete_many([ids["old-done"], ids["old-done-2"], ids["old-other-kind"]], "w1")
        await queue.fail_many({ids["old-failed"]: Failed({"code": "BAD"}, retry=False)}, "w1")
        clock.advance(seconds=8 * 24 * 3600)
        await queue.complete_many([ids["recent-done"]], "w1")

        assert await queue.prune_done(["post_time"], timedelta(days=7), limit=1) == 1  # a chunk at a time
        assert await queue.prune_done(["post_time"], timedelta(days=7)) == 1
        assert await queue.prune_done(["post_time"], timedelta(days=7)) == 0
        left = {name for name, i in ids.items() if await queue.get(i) is not None}
        assert left == {"old-failed", "old-other-kind", "recent-done", "waiting"}
        # the dedupe key of a pruned item is free again: a re-read queues it anew (the flows' ledgers
        # make that run a no-op; the retention keeps it from happening within the pollers' lag window)
        assert await queue.enqueue("post_time", {"n": "again"}, dedupe_key="old-done") is not None
