"""The ERP's account-wide concurrency cap shared by the workers holding posting work
(``gateway.worker_share``), and the resizable ``ConcurrencyLimit`` it drives."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from gateway.cli import worker as worker_cli
from gateway.worker import POSTING_KINDS, BatchHandler, Job, Worker
from gateway.worker_batch import Completer
from gateway.worker_share import SharedCap, concurrency_limit, split
from store.migrate import upgrade_to_head
from store.models import utcnow
from store.repositories import WorkQueueRepo
from subgraphs.common.transport import ConcurrencyLimit, RetryPolicy, build_transport

Sessions = async_sessionmaker[AsyncSession]
URL = "https://erp.example/x"


# -- the split ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", range(1, 8))
def test_the_parts_add_up_to_the_cap_and_differ_by_at_most_one(workers: int) -> None:
    names = [f"w{i}" for i in range(workers)]
    parts = [split(15, me, names) for me in names]
    assert sum(parts) == 15
    assert max(parts) - min(parts) <= 1


def test_two_workers_take_eight_and_seven_and_one_alone_takes_all() -> None:
    assert [split(15, me, ["b", "a"]) for me in ("a", "b")] == [8, 7]
    assert split(15, "a", []) == 15  # holding nothing yet: counts itself
    assert split(15, "a", ["a"]) == 15


def test_more_workers_than_slots_each_keep_one() -> None:
    assert [split(2, me, "abc") for me in "abc"] == [1, 1, 1]


def test_a_shared_cap_needs_a_slot() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SharedCap(ConcurrencyLimit(httpx.MockTransport(lambda r: httpx.Response(204)), 1), 0, POSTING_KINDS)


def test_the_connectors_concurrency_limit_is_found_in_its_stack() -> None:
    vendor = httpx.MockTransport(lambda r: httpx.Response(204))
    stack = build_transport(RetryPolicy(), 15, vendor, timeout_s=5)
    assert concurrency_limit(stack).limit == 15
    with pytest.raises(TypeError, match="no concurrency limit"):
        concurrency_limit(httpx.MockTransport(lambda r: httpx.Response(204)))


# -- the resizable limit ------------------------------------------------------------------------------


class Gate:
    """A vendor whose requests wait until released; records the most it ever had in flight."""

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.release = asyncio.Event()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await self.release.wait()
        finally:
            self.active -= 1
        return httpx.Response(204)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_smaller_limit_lets_requests_in_flight_finish_and_holds_the_next_back() -> None:
    vendor = Gate()
    limit = ConcurrencyLimit(httpx.MockTransport(vendor), 8)
    first = [asyncio.create_task(limit.handle_async_request(httpx.Request("GET", URL))) for _ in range(8)]
    await settle()
    assert vendor.active == 8
    limit.resize(3)
    more = [asyncio.create_task(limit.handle_async_request(httpx.Request("GET", URL))) for _ in range(10)]
    await settle()
    assert vendor.active == 8  # in flight before the shrink: not interrupted, nothing new admitted
    vendor.release.set()
    vendor.release = asyncio.Event()
    await asyncio.gather(*first)
    await settle()
    assert vendor.active == 3  # the next ones, at the new limit
    vendor.release.set()
    await asyncio.gather(*more)
    assert limit.stats.in_flight == 0
    vendor.release = asyncio.Event()
    burst = [asyncio.create_task(limit.handle_async_request(httpx.Request("GET", URL))) for _ in range(6)]
    await settle()
    assert vendor.active == 3  # the shrink is paid for good
    vendor.release.set()
    await asyncio.gather(*burst)


async def test_a_larger_limit_admits_waiting_requests_at_once_and_cancels_an_unpaid_shrink() -> None:
    vendor = Gate()
    limit = ConcurrencyLimit(httpx.MockTransport(vendor), 4)
    tasks = [asyncio.create_task(limit.handle_async_request(httpx.Request("GET", URL))) for _ in range(12)]
    await settle()
    assert vendor.active == 4
    limit.resize(2)  # not taken back yet: all 4 are still in flight
    limit.resize(6)  # pays back the 2 first, then 2 more slots
    await settle()
    assert vendor.active == 6
    vendor.release.set()
    await asyncio.gather(*tasks)
    assert vendor.peak == 6
    assert limit.limit == 6
    with pytest.raises(ValueError, match="at least 1"):
        limit.resize(0)


async def test_a_request_cancelled_while_waiting_gives_no_slot_away() -> None:
    vendor = Gate()
    limit = ConcurrencyLimit(httpx.MockTransport(vendor), 2)
    running = [asyncio.create_task(limit.handle_async_request(httpx.Request("GET", URL))) for _ in range(2)]
    limit.resize(1)
    waiting = asyncio.create_task(limit.handle_async_request(httpx.Request("GET", URL)))
    await settle()
    waiting.cancel()
    await settle()
    vendor.release.set()
    await asyncio.gather(*running)
    vendor.release = asyncio.Event()
    burst = [asyncio.create_task(limit.handle_async_request(httpx.Request("GET", URL))) for _ in range(5)]
    await settle()
    assert vendor.active == 1
    vendor.release.set()
    await asyncio.gather(*burst)
    assert limit.stats.in_flight == 0


# -- divided between the workers holding posting work ---------------------------------------------------


async def test_holders_are_the_workers_with_unexpired_claims_of_the_kinds(sessions: Sessions) -> None:
    async with sessions.begin() as session:
        queue = WorkQueueRepo(session)
        for n in range(3):
            await queue.enqueue("post_time", {"n": n}, dedupe_key=f"t{n}")
        await queue.enqueue("provision", {}, dedupe_key="p")
    async with sessions.begin() as session:
        queue = WorkQueueRepo(session)
        await queue.claim("post_time", worker="a", batch=1)
        await queue.claim("post_time", worker="b", batch=1, lease=timedelta(seconds=-1))  # expired
        await queue.claim("provision", worker="c", batch=1)
        assert await queue.holders(["post_time", "post_expense"]) == {"a"}
    async with sessions.begin() as session:
        later = WorkQueueRepo(session, clock=lambda: utcnow() + timedelta(hours=1))
        assert await later.holders(["post_time"]) == set()  # a dead worker drops out with its leases


async def test_two_posting_workers_share_the_cap_and_the_last_one_busy_takes_it_all(
    sessions: Sessions,
) -> None:
    async with sessions.begin() as session:
        for n in range(6):
            await WorkQueueRepo(session).enqueue("post_time", {"n": n}, dedupe_key=f"post_time:{n}:v1")
    hold = asyncio.Event()
    seen: dict[str, list[int]] = {"a": [], "b": []}
    limits = {name: ConcurrencyLimit(httpx.MockTransport(lambda r: httpx.Response(204)), 15) for name in seen}

    def handler(name: str) -> BatchHandler:
        async def post(jobs: Sequence[Job], complete: Completer) -> Mapping[int, BaseException | None]:
            seen[name].append(limits[name].limit)
            if len(seen[name]) == 1:
                await hold.wait()  # both workers hold their first batch at once
            async with sessions.begin() as session:
                kept = await complete(session, [j.id for j in jobs])
            return {j.id: None for j in jobs if j.id in kept}

        return BatchHandler(post)

    workers = {
        name: Worker(
            sessions,
            {"post_time": handler(name)},
            name=name,
            batch=2,
            shared=[SharedCap(limits[name], 15, POSTING_KINDS)],
        )
        for name in seen
    }
    first_a = asyncio.create_task(workers["a"].process_batch())
    await asyncio.sleep(0.05)
    first_b = asyncio.create_task(workers["b"].process_batch())
    await asyncio.sleep(0.05)
    hold.set()
    assert list(await asyncio.gather(first_a, first_b)) == [2, 2]
    assert seen == {"a": [15], "b": [7]}  # a claimed alone; b found a holding claims
    assert await workers["a"].process_batch() == 2  # b holds nothing now: a takes the whole cap
    assert seen["a"] == [15, 15]
    assert limits["a"].limit == 15 and limits["b"].limit == 7


def test_cli_worker_takes_erp_slots_and_refuses_none(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'worker.db'}"
    upgrade_to_head(url)
    app = typer.Typer()
    worker_cli.register(app)
    env = {"P2C_DEMO_ACCOUNTS": "3"}

    args = ["--once", "--erp-slots", "15", "--lanes", "2", "--batch", "200", "--database-url", url]
    ok = CliRunner().invoke(app, args, env=env)
    refused = CliRunner().invoke(app, ["--once", "--erp-slots", "0", "--database-url", url], env=env)

    assert ok.exit_code == 0, ok.output
    assert "worker: 0 done" in ok.output
    assert refused.exit_code == 2
    assert "--erp-slots" in refused.output
