from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical.errors import NotFound
from canonical.ids import step_key
from store.repositories import RunRepo

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
