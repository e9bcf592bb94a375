"""Pollers: for systems that cannot call our webhooks, ask them what changed since a stored cursor.

    poller = OpportunityPoller(deps, lag=timedelta(seconds=60))
    result = await poller.poll()      # one round; the worker runtime calls it every ``interval_s``

``OpportunityPoller`` reads CRM opportunities whose ``SystemModstamp`` is later than the cursor minus a lag
window and queues ``provision`` work exactly like the webhook does (``mutations.intake``): same rule,
same dedupe keys, so an opportunity change seen by both triggers is queued once.

Why a lag window: a record's ``SystemModstamp`` is taken before its transaction commits, so a slow
transaction can make visible a record stamped earlier than one we have already seen. Re-reading the last
``lag`` seconds on every round costs a few repeated rows, which the dedupe keys turn into no-ops. The
cursor moves to the newest stamp seen, in the same transaction as the work it covers — if the enqueue
rolls back, so does the cursor, and the next round reads the same changes again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from mutations.intake import (
    IntakeDeps,
    enqueue_provisions,
    format_stamp,
    normalise_stamp,
    provision_requests,
    provisioned_opportunities,
)
from store.repositories import CursorRepo

OPPORTUNITY_CURSOR = "crm.opportunity.systemmodstamp"
DEFAULT_LAG = timedelta(seconds=60)


@dataclass(frozen=True)
class PollResult:
    poller: str
    since: datetime  # the lower bound asked for (cursor minus lag)
    read: int  # records the system returned
    queued: list[int]  # work items created by this round
    cursor_before: str | None
    cursor_after: str


class OpportunityPoller:
    """Closed-won (or already provisioned) opportunities changed since the cursor → ``provision`` work.

    ``start`` anchors a poller without a stored cursor (default: now; it reads from ``start - lag``): a
    new installation does not provision the firm's history — backfill links that.
    """

    def __init__(
        self,
        deps: IntakeDeps,
        *,
        name: str = "crm.opportunities",
        interval_s: float = 30.0,
        lag: timedelta = DEFAULT_LAG,
        cursor: str = OPPORTUNITY_CURSOR,
        start: datetime | None = None,
    ) -> None:
        if lag < timedelta(0):
            raise ValueError("the lag window cannot be negative")
        self.deps = deps
        self.name = name
        self.interval_s = interval_s
        self.lag = lag
        self.cursor = cursor
        self.start = start

    async def poll(self) -> PollResult:
        async with self.deps.sessionmaker() as session:
            before = await CursorRepo(session).get(self.cursor)
        since = self._since(before)
        records = await self.deps.crm.opportunities(modified_since=since)
        stamps = [s for s in (normalise_stamp(r.get("SystemModstamp")) for r in records) if s is not None]

        after = self._advance(before, since, stamps)
        async with self.deps.sessionmaker.begin() as session:
            # The cursor is written first, on every round: on SQLite the transaction then holds the write
            # lock from its first statement (a read first could not upgrade once another writer committed),
            # and ``updated_at`` shows when the poller last ran. A concurrent poller may set it a little
            # back; that only re-reads a few rows, never skips any.
            await CursorRepo(session, clock=self.deps.clock).set(self.cursor, after)
            ids = [str(r["Id"]) for r in records if r.get("Id")]
            provisioned = await provisioned_opportunities(session, ids)
            queued = await enqueue_provisions(
                session,
                provision_requests(records, provisioned),
                clock=self.deps.clock,
                trigger={"trigger": self.name},
            )
        return PollResult(self.name, since, len(records), queued, before, after)

    def _advance(self, before: str | None, since: datetime, stamps: list[str]) -> str:
        """The newest stamp seen — but never past our own clock: a stamp in the future (bad data, a clock
        ahead of ours) would move the window beyond changes still to come. Too early only re-reads."""
        newest = max(stamps, default=None)
        if newest is not None:
            newest = min(newest, format_stamp(self.deps.clock()))
        seen = [s for s in (before, newest) if s is not None]
        # Nothing seen yet: remember where this installation started, so the window stays put.
        return max(seen) if seen else format_stamp(since + self.lag)

    def _since(self, cursor: str | None) -> datetime:
        if cursor is not None:
            moment = _parse(cursor)
            if moment is not None:
                return moment - self.lag
        return (self.start if self.start is not None else self.deps.clock()) - self.lag


def _parse(stamp: str) -> datetime | None:
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
