"""``p2c worker`` deletes DONE work items past their retention (``gateway.worker_prune``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from gateway.cli import worker as worker_cli
from gateway.worker import Job, Worker
from gateway.worker_prune import DonePruner
from store.migrate import upgrade_to_head
from store.models import WorkItem
from store.repositories import WorkQueueRepo

Sessions = async_sessionmaker[AsyncSession]
START = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


async def remaining(sessions: Sessions) -> dict[str, str]:
    async with sessions() as session:
        rows = await session.execute(sa.select(WorkItem.dedupe_key, WorkItem.status))
        return {str(key): str(status) for key, status in rows}


async def test_the_worker_prunes_done_items_past_retention_in_chunks(sessions: Sessions) -> None:
    clock = Clock()
    async with sessions.begin() as session:
        queue = WorkQueueRepo(session, clock=clock)
        for n in range(5):
            await queue.enqueue("post_time", {"n": n}, dedupe_key=f"spike:{n}")

    async def post(job: Job) -> None:
        return None

    worker = Worker(sessions, {"post_time": post}, batch=10, clock=clock)
    await worker.drain()
    clock.now = START + timedelta(days=2)
    async with sessions.begin() as session:
        await WorkQueueRepo(session, clock=clock).enqueue("post_time", {"n": 5}, dedupe_key="today")
    await worker.drain()
    assert set((await remaining(sessions)).values()) == {"DONE"}

    clock.now = START + timedelta(days=2, hours=1)
    pruner = DonePruner(sessions, ["post_time"], keep=timedelta(days=1), chunk=2, clock=clock)
    pruning = Worker(sessions, {"post_time": post}, pollers=[pruner], clock=clock)
    await pruning.drain()  # one round of its pollers: the pruner deletes 2 + 2 + 1

    assert await remaining(sessions) == {"today": "DONE"}
    assert (await pruner.poll()).pruned == 0
    with pytest.raises(ValueError, match="kept for some time"):
        DonePruner(sessions, ["post_time"], keep=timedelta(0))


def test_cli_worker_keep_done_hours(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'worker.db'}"
    upgrade_to_head(url)
    app = typer.Typer()
    worker_cli.register(app)
    env = {"P2C_DEMO_ACCOUNTS": "3"}
    for hours in ("24", "0"):
        args = ["--once", "--keep-done-hours", hours, "--database-url", url]
        result = CliRunner().invoke(app, args, env=env)
        assert result.exit_code == 0, result.output
    args = ["--once", "--keep-done-hours", "-1", "--database-url", url]
    assert CliRunner().invoke(app, args, env=env).exit_code == 2
