"""Retention for finished work items: a periodic step of ``p2c worker`` (``--keep-done-hours``).

    pruner = DonePruner(sessionmaker, kinds=["post_time"], keep=timedelta(days=7))
    worker = Worker(sessionmaker, handlers, pollers=[*pollers, pruner])   # runs every ``interval_s``

A month-end spike leaves tens of thousands of DONE items behind; nothing reads them once ``syncStatus``'s
throughput windows (minutes) have passed, and every claim and count works around them. The pruner
deletes DONE items older than ``keep``, ``chunk`` at a time, each chunk in its own short transaction so a
big backlog never holds locks for long. FAILED items are kept: they wait for an operator. Exactly-once
does not rest on them (see ``WorkQueueRepo.prune_done``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.models import utcnow
from store.repositories import WorkQueueRepo


@dataclass(frozen=True)
class Pruned:
    pruned: int


@dataclass
class DonePruner:
    """A ``Poller`` (name, interval, poll) that deletes DONE items of ``kinds`` older than ``keep``."""

    sessionmaker: async_sessionmaker[AsyncSession]
    kinds: Sequence[str]
    keep: timedelta
    interval_s: float = 600.0
    chunk: int = 10_000
    clock: Callable[[], datetime] = utcnow
    name: str = "prune_done"

    def __post_init__(self) -> None:
        if self.keep <= timedelta(0):
            raise ValueError("finished work items must be kept for some time")

    async def poll(self) -> Pruned:
        total = 0
        while True:
            async with self.sessionmaker.begin() as session:
                queue = WorkQueueRepo(session, clock=self.clock)
                deleted = await queue.prune_done(list(self.kinds), self.keep, limit=self.chunk)
            total += deleted
            if deleted < self.chunk:
                return Pruned(total)


__all__ = ["DonePruner", "Pruned"]
