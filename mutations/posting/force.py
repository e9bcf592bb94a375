"""One forced intake pass of the PSA time and expense pollers from an explicit moment (``syncApprovedTime``).

    result = await force_intake(deps, since=datetime(2026, 11, 1, tzinfo=UTC), correlation_id="c-1")
    result.queued                     # work items created by this pass (time + expenses)

The pollers (``mutations.posting.intake``) only read from their stored cursor (minus the lag) and take an
explicit ``start`` only when there is no cursor yet; this reads ``updated_since=since`` once, for both
record types, and queues exactly what the pollers would (``enqueue_entries``: approved versions, and
unapproved versions whose earlier version is live in the ERP), with the same dedupe keys — so entries the
pollers or the webhook already queued are not queued again, and ``queued`` counts only new work.

The pollers' cursors are left alone: a forced pass is a re-read, not a move of the pollers' window. It
never makes a poller skip anything, and cannot race a running poller into moving its cursor backwards.

``since`` is bounded: not before ``clock() - max_age`` (62 days by default: two closed months is as far
back as an ERP period is usually still open) and not after ``clock()``; otherwise ``ValidationFailed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from canonical.errors import Problem, ValidationFailed
from mutations.deps import FlowDeps
from mutations.intake import format_stamp
from mutations.posting.intake import enqueue_entries
from mutations.posting.model import EXPENSE, TIME, Spec

#: How far back a forced pass may read.
MAX_SYNC_AGE = timedelta(days=62)
TRIGGER = "syncApprovedTime"


@dataclass(frozen=True)
class ForcedIntake:
    """What one forced pass read and queued."""

    since: datetime
    time_entries_read: int
    expenses_read: int
    time_entry_items: list[int] = field(default_factory=list)  # work items created
    expense_items: list[int] = field(default_factory=list)

    @property
    def time_entries_queued(self) -> int:
        return len(self.time_entry_items)

    @property
    def expenses_queued(self) -> int:
        return len(self.expense_items)

    @property
    def queued(self) -> int:
        return self.time_entries_queued + self.expenses_queued

    def to_json(self) -> dict[str, Any]:
        return {
            "since": format_stamp(self.since),
            "time_entries_read": self.time_entries_read,
            "expenses_read": self.expenses_read,
            "time_entry_items": list(self.time_entry_items),
            "expense_items": list(self.expense_items),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ForcedIntake:
        return cls(
            since=datetime.fromisoformat(str(data["since"]).replace("Z", "+00:00")),
            time_entries_read=int(data["time_entries_read"]),
            expenses_read=int(data["expenses_read"]),
            time_entry_items=[int(i) for i in data.get("time_entry_items", [])],
            expense_items=[int(i) for i in data.get("expense_items", [])],
        )


def check_since(since: datetime, now: datetime, *, max_age: timedelta = MAX_SYNC_AGE) -> datetime:
    """``since`` as aware UTC (naive means UTC) truncated to the millisecond, as stored and fingerprinted
    (so a replayed answer equals the first); ``ValidationFailed`` when too old or in the future."""
    moment = since.replace(tzinfo=UTC) if since.tzinfo is None else since.astimezone(UTC)
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    if moment < now - max_age:
        raise ValidationFailed(
            [
                Problem(
                    "since",
                    f"at most {max_age.days} days ago (not before {format_stamp(now - max_age)})",
                    "TOO_OLD",
                )
            ]
        )
    if moment > now:
        raise ValidationFailed([Problem("since", "cannot be in the future", "IN_FUTURE")])
    return moment


async def _read(deps: FlowDeps, spec: Spec, since: datetime) -> list[dict[str, Any]]:
    pages = (
        deps.psa.time_entries(updated_since=since) if spec is TIME else deps.psa.expenses(updated_since=since)
    )
    return [dict(r) async for page in pages for r in page]


async def force_intake(
    deps: FlowDeps,
    since: datetime,
    *,
    max_age: timedelta = MAX_SYNC_AGE,
    correlation_id: str | None = None,
    trigger: str = TRIGGER,
) -> ForcedIntake:
    """Read PSA time entries and expenses changed since ``since`` and queue them; see the module docstring.

    The PSA is read outside any transaction; the work items of both types are queued in one."""
    moment = check_since(since, deps.clock(), max_age=max_age)
    times = await _read(deps, TIME, moment)
    expenses = await _read(deps, EXPENSE, moment)
    marks: dict[str, Any] = {"trigger": trigger}
    if correlation_id is not None:
        marks["correlation_id"] = correlation_id
    async with deps.sessionmaker.begin() as session:
        time_items = await enqueue_entries(session, TIME, times, clock=deps.clock, trigger=marks)
        expense_items = await enqueue_entries(session, EXPENSE, expenses, clock=deps.clock, trigger=marks)
    return ForcedIntake(moment, len(times), len(expenses), time_items, expense_items)


__all__ = ["MAX_SYNC_AGE", "TRIGGER", "ForcedIntake", "check_since", "force_intake"]
