from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical.errors import NotFound
from canonical.ids import step_key
from store.db import make_engine, make_sessionmaker
from store.repositories import RunRepo
from store.repositories.runs import CLAIM_TIMEOUT
from tests.store.conftest import FakeClock

Sessions = async_sessionmaker[AsyncSession]
CUSTOMER = step_key("erp", "customer", "acct-1")
CONTRACT = step_key("erp", "contract", "opp-1")
PROJECT = step_key("erp", "project", "opp-1")


async def test_replay_resumes_at_the_first_unfinished_step(sessionmaker: Sessions) -> None:
    async with sessionmaker.begin() as session:
        runs = RunRepo(session)
        run = await runs.start(
            "provision_engagement", subject="opp-1", input={"o": 1}, legal_entity="US01", correlation_id="c-1"
        )
        for name, key in [("customer", CUSTOMER), ("contract", CONTRACT), ("project", PROJECT)]:
            await runs.step(run.id, name, key)
        await runs.begin_step(CUSTOMER)
        await runs.step_succeeded(CUSTOMER, {"erp_id": "C-17"})
        await runs.begin_step(CONTRACT)
        await runs.step_failed(CONTRACT, {"code": "UPSTREAM_REJECTED", "message": "period closed"})
        await runs.finish(run.id, "FAILED")
        run_id = run.id

    async with sessionmaker.begin() as session:
        runs = RunRepo(session)
        resumed = await runs.resume(run_id, correlation_id="c-2")
        assert (resumed.status, resumed.attempts, resumed.finished_at) == ("RUNNING", 2, None)
        first = await runs.first_unfinished_step(run_id)
        assert first is not None
        assert (first.key, first.status, first.attempts) == (CONTRACT, "FAILED", 1)
        assert first.error == {"code": "UPSTREAM_REJECTED", "message": "period closed"}
        done = await runs.get_step(CUSTOMER)
        assert (done.status, done.result) == ("SUCCEEDED", {"erp_id": "C-17"})
        assert [s.key for s in await runs.steps(run_id)] == [CUSTOMER, CONTRACT, PROJECT]


async def test_step_keys_are_shared_across_runs_so_a_write_happens_once(sessionmaker: Sessions) -> None:
    async with sessionmaker.begin() as session:
        runs = RunRepo(session)
        first = await runs.start("provision_engagement", subject="opp-1")
        await runs.step(first.id, "customer", CUSTOMER)
        await runs.step_succeeded(CUSTOMER, {"erp_id": "C-17"})
        second = await runs.start("provision_engagement", subject="opp-2")
        again = await runs.step(second.id, "customer", CUSTOMER)
        assert again.run_id == first.id
        assert again.status == "SUCCEEDED"
        latest = await runs.latest("provision_engagement", "opp-2")
        assert latest is not None
        assert latest.id == second.id


async def test_finished_run_has_a_finish_time_and_unknown_ids_are_not_found(sessionmaker: Sessions) -> None:
    async with sessionmaker.begin() as session:
        runs = RunRepo(session)
        run = await runs.start("post_time")
        assert await runs.first_unfinished_step(run.id) is None
        finished = await runs.finish(run.id, "SUCCEEDED")
        assert finished.finished_at is not None
        with pytest.raises(ValueError, match="SUCCEEDED or FAILED"):
            await runs.finish(run.id, "RUNNING")
        with pytest.raises(NotFound):
            await runs.get("no-such-run")
        with pytest.raises(NotFound):
            await runs.step_succeeded("erp:nothing:1")


# --- claims: claim_step / release_step ------------------------------------------------------------------


async def new_run(sessionmaker: Sessions, clock: FakeClock, subject: str = "opp-1") -> str:
    async with sessionmaker.begin() as session:
        return (await RunRepo(session, clock=clock).start("provision_engagement", subject=subject)).id


async def claim(
    sessionmaker: Sessions, clock: FakeClock, run_id: str, key: str = CUSTOMER, **kw: timedelta
) -> bool:
    async with sessionmaker.begin() as session:
        return await RunRepo(session, clock=clock).claim_step(key, run_id, "customer", **kw)


async def step_row(sessionmaker: Sessions, key: str = CUSTOMER) -> tuple[str, int, datetime | None]:
    async with sessionmaker() as session:
        step = await RunRepo(session).get_step(key)
        return step.status, step.attempts, step.started_at


async def test_claim_creates_the_step_running_with_one_attempt(
    sessionmaker: Sessions, clock: FakeClock
) -> None:
    run_id = await new_run(sessionmaker, clock)

    assert await claim(sessionmaker, clock, run_id) is True

    async with sessionmaker() as session:
        step = await RunRepo(session).get_step(CUSTOMER)
        assert (step.run_id, step.name, step.status, step.attempts) == (run_id, "customer", "RUNNING", 1)
        assert step.started_at is not None and step.started_at.replace(tzinfo=None) == clock.now.replace(
            tzinfo=None
        )
        assert step.finished_at is None


async def test_a_live_claim_refuses_a_second_claimer_until_it_goes_stale(
    sessionmaker: Sessions, clock: FakeClock
) -> None:
    first, second = await new_run(sessionmaker, clock, "opp-1"), await new_run(sessionmaker, clock, "opp-1")
    assert await claim(sessionmaker, clock, first) is True

    assert await claim(sessionmaker, clock, second) is False  # same instant
    clock.advance(seconds=CLAIM_TIMEOUT.total_seconds() - 1)
    assert await claim(sessionmaker, clock, second) is False  # still live one second before the timeout
    assert (await step_row(sessionmaker))[:2] == ("RUNNING", 1)

    clock.advance(seconds=1)  # exactly stale_after old: the claimer is presumed dead
    assert await claim(sessionmaker, clock, second) is True
    status, attempts, started = await step_row(sessionmaker)
    assert (status, attempts) == ("RUNNING", 2)
    assert started is not None and started.replace(tzinfo=None) == clock.now.replace(tzinfo=None)
    # The takeover is a fresh claim: the first attempt, back from the dead, is refused now.
    assert await claim(sessionmaker, clock, first) is False
    async with sessionmaker() as session:
        assert (await RunRepo(session).get_step(CUSTOMER)).run_id == first  # the step keeps its first run


async def test_stale_after_is_the_callers_choice(sessionmaker: Sessions, clock: FakeClock) -> None:
    run_id = await new_run(sessionmaker, clock)
    assert await claim(sessionmaker, clock, run_id, stale_after=timedelta(seconds=5)) is True
    clock.advance(seconds=4)
    assert await claim(sessionmaker, clock, run_id, stale_after=timedelta(seconds=5)) is False
    clock.advance(seconds=1)
    assert await claim(sessionmaker, clock, run_id, stale_after=timedelta(seconds=5)) is True


async def test_a_succeeded_step_is_never_claimed_again(sessionmaker: Sessions, clock: FakeClock) -> None:
    run_id = await new_run(sessionmaker, clock)
    assert await claim(sessionmaker, clock, run_id) is True
    async with sessionmaker.begin() as session:
        await RunRepo(session, clock=clock).step_succeeded(CUSTOMER, {"erp_id": "C-17"})

    other = await new_run(sessionmaker, clock, "opp-2")
    assert await claim(sessionmaker, clock, other) is False
    clock.advance(days=30)  # however old: SUCCEEDED is not a claim that goes stale
    assert await claim(sessionmaker, clock, other) is False
    async with sessionmaker() as session:
        step = await RunRepo(session).get_step(CUSTOMER)
        assert (step.status, step.attempts, step.result) == ("SUCCEEDED", 1, {"erp_id": "C-17"})


async def test_a_failed_step_is_claimed_at_once_for_a_retry(sessionmaker: Sessions, clock: FakeClock) -> None:
    run_id = await new_run(sessionmaker, clock)
    assert await claim(sessionmaker, clock, run_id) is True
    async with sessionmaker.begin() as session:
        await RunRepo(session, clock=clock).step_failed(CUSTOMER, {"code": "UPSTREAM_UNAVAILABLE"})

    assert await claim(sessionmaker, clock, run_id) is True  # no waiting out a timeout after a failure
    async with sessionmaker() as session:
        step = await RunRepo(session).get_step(CUSTOMER)
        assert (step.status, step.attempts, step.finished_at) == ("RUNNING", 2, None)


async def test_release_gives_the_claim_up_for_an_immediate_claim(
    sessionmaker: Sessions, clock: FakeClock
) -> None:
    run_id = await new_run(sessionmaker, clock)
    assert await claim(sessionmaker, clock, run_id) is True
    async with sessionmaker.begin() as session:
        await RunRepo(session, clock=clock).release_step(CUSTOMER)
    assert await step_row(sessionmaker) == ("PENDING", 1, None)

    assert await claim(sessionmaker, clock, run_id) is True  # same instant: nothing to wait out
    assert (await step_row(sessionmaker))[:2] == ("RUNNING", 2)


async def test_release_leaves_a_finished_step_alone(sessionmaker: Sessions, clock: FakeClock) -> None:
    run_id = await new_run(sessionmaker, clock)
    assert await claim(sessionmaker, clock, run_id) is True
    async with sessionmaker.begin() as session:
        runs = RunRepo(session, clock=clock)
        await runs.step_succeeded(CUSTOMER, {"erp_id": "C-17"})
        await runs.release_step(CUSTOMER)  # a late cancellation after the outcome was recorded
    assert (await step_row(sessionmaker))[:2] == ("SUCCEEDED", 1)
    async with sessionmaker.begin() as session:
        with pytest.raises(NotFound):
            await RunRepo(session, clock=clock).release_step("erp:nothing:1")


async def test_concurrent_claimers_exactly_one_wins(scratch_database_url: str, clock: FakeClock) -> None:
    """Real commits, separate connections: the compare-and-set lets one of many simultaneous claims in."""
    engine = make_engine(scratch_database_url)
    try:
        sessions = make_sessionmaker(engine)
        run_id = await new_run(sessions, clock)
        for key in (CUSTOMER, CONTRACT, PROJECT):
            results = await asyncio.gather(*(claim(sessions, clock, run_id, key) for _ in range(8)))
            assert sorted(results) == [False] * 7 + [True], key
            assert (await step_row(sessions, key))[:2] == ("RUNNING", 1)
    finally:
        await engine.dispose()
