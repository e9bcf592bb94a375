"""PSA time entries and expenses in, ``post_time`` / ``post_expense`` work out — poller and webhook alike.

    poller = TimeEntryPoller(deps, lag=timedelta(seconds=60))
    result = await poller.poll()                          # one round; the worker runs it every interval_s
    result = await handle_psa_event(deps, event)          # POST /webhooks/psa

What is queued (``entry_requests``): every approved entry version, and an unapproved version of an entry
whose earlier version is live in the ERP (it must be reversed). Anything else — submitted, rejected,
never posted — is not. Dedupe key ``post_time:<entry id>:v<version>``: the poller re-reading its lag
window, the webhook and the poller seeing the same change all land on one work item.

The cursor (``updated_at`` of the newest entry seen, never past our clock) moves in the same transaction as
the work items it covers, exactly as ``mutations.pollers.OpportunityPoller`` does, whose helpers this
reuses; the lag window re-reads the last ``lag`` so an entry whose ``updated_at`` was stamped before a
slow commit is still picked up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from canonical.errors import ValidationFailed
from mutations.intake import IntakeResult, Outcome, format_stamp, normalise_stamp
from mutations.pollers import DEFAULT_LAG, PollResult
from mutations.pollers import _parse as parse_stamp
from mutations.posting.model import EXPENSE, MAX_ATTEMPTS, RELEASE_MILESTONE, TIME, Spec
from mutations.posting.plan import live
from store.repositories import CursorRepo, InboxRepo, WorkQueueRepo
from store.repositories.postings import PostingRepo
from subgraphs.psa.mapping import version_of

TIME_CURSOR = "psa.time_entries.updated_at"
EXPENSE_CURSOR = "psa.expenses.updated_at"


async def entry_requests(
    session: AsyncSession, spec: Spec, records: Iterable[Mapping[str, Any]]
) -> list[tuple[Mapping[str, Any], int]]:
    """``(entry, version)`` of the records to queue: approved, or unapproved with a version live in the
    ERP (one store query for all the unapproved ones)."""
    records = [r for r in records if r.get("id") is not None and r.get("updated_at")]
    unapproved = [r for r in records if not r.get("is_closed")]
    heads = await PostingRepo(session).heads(spec.head(int(r["id"])) for r in unapproved)
    wanted = []
    for record in records:
        if record.get("is_closed") or live(heads.get(spec.head(int(record["id"])))) is not None:
            wanted.append((record, version_of(str(record["updated_at"]))))
    return wanted


async def enqueue_entries(
    session: AsyncSession,
    spec: Spec,
    records: Iterable[Mapping[str, Any]],
    *,
    clock: Any,
    trigger: Mapping[str, Any],
) -> list[int]:
    queue = WorkQueueRepo(session, clock=clock)
    queued: list[int] = []
    for entry, version in await entry_requests(session, spec, records):
        payload = {"kind": spec.kind, "entry": dict(entry), "version": version, **trigger}
        item_id = await queue.enqueue(
            spec.kind,
            payload,
            dedupe_key=spec.dedupe_key(int(entry["id"]), version),
            max_attempts=MAX_ATTEMPTS,
        )
        if item_id is not None:
            queued.append(item_id)
    return queued


class EntryPoller:
    """PSA records changed since the cursor (minus ``lag``) → work items; see the module docstring."""

    def __init__(
        self,
        deps: Any,
        spec: Spec = TIME,
        *,
        name: str | None = None,
        interval_s: float = 30.0,
        lag: timedelta = DEFAULT_LAG,
        cursor: str | None = None,
        start: datetime | None = None,
    ) -> None:
        if lag < timedelta(0):
            raise ValueError("the lag window cannot be negative")
        self.deps = deps
        self.spec = spec
        self.name = name or f"psa.{spec.noun}"
        self.interval_s = interval_s
        self.lag = lag
        self.cursor = cursor or (TIME_CURSOR if spec is TIME else EXPENSE_CURSOR)
        self.start = start

    def _read(self, since: datetime) -> Any:
        if self.spec is TIME:
            return self.deps.psa.time_entries(updated_since=since)
        return self.deps.psa.expenses(updated_since=since)

    async def poll(self) -> PollResult:
        async with self.deps.sessionmaker() as session:
            before = await CursorRepo(session).get(self.cursor)
        moment = parse_stamp(before) if before is not None else None
        anchor = moment if moment is not None else (self.start or self.deps.clock())
        since = anchor - self.lag
        records = [dict(r) async for page in self._read(since) for r in page]
        stamps = [s for s in (normalise_stamp(r.get("updated_at")) for r in records) if s is not None]
        newest = min(max(stamps), format_stamp(self.deps.clock())) if stamps else None
        seen = [s for s in (before, newest) if s is not None]
        after = max(seen) if seen else format_stamp(anchor)
        async with self.deps.sessionmaker.begin() as session:
            await CursorRepo(session, clock=self.deps.clock).set(self.cursor, after)
            queued = await enqueue_entries(
                session, self.spec, records, clock=self.deps.clock, trigger={"trigger": self.name}
            )
        return PollResult(self.name, since, len(records), queued, before, after)


class TimeEntryPoller(EntryPoller):
    def __init__(self, deps: Any, **kwargs: Any) -> None:
        super().__init__(deps, TIME, **kwargs)


class ExpensePoller(EntryPoller):
    def __init__(self, deps: Any, **kwargs: Any) -> None:
        super().__init__(deps, EXPENSE, **kwargs)


# -- the webhook ----------------------------------------------------------------------------------------
#: ``{"id": "<delivery id>", "event": "time_entry.updated", "data": {"id": 123, ...}}``
EVENTS = {"time_entry": TIME, "expense": EXPENSE}


def delivery_of(event: Mapping[str, Any]) -> tuple[str, str, str, int]:
    """(delivery id, object, action, record id); ``ValidationFailed`` when the body is no PSA event."""
    delivery, name, data = event.get("id"), event.get("event"), event.get("data")
    if isinstance(delivery, bool) or not isinstance(delivery, int | str) or str(delivery) == "":
        raise ValidationFailed("a PSA event needs an id")
    if not isinstance(name, str) or "." not in name:
        raise ValidationFailed("a PSA event needs event: '<object>.<action>'")
    if not isinstance(data, dict) or isinstance(data.get("id"), bool) or not isinstance(data.get("id"), int):
        raise ValidationFailed("a PSA event needs data.id")
    obj, action = name.split(".", 1)
    return str(delivery), obj, action, int(data["id"])


async def handle_psa_event(
    deps: Any, event: Mapping[str, Any], *, source: str = "psa", correlation_id: str | None = None
) -> IntakeResult:
    """Record one PSA event (inbox dedupe by its id) and queue what it asks for. The record is read
    again from the PSA first — the event may be stale, the PSA is the owner — outside any transaction."""
    delivery, obj, action, record_id = delivery_of(event)
    spec = EVENTS.get(obj)
    record: Mapping[str, Any] | None = None
    if spec is TIME:
        record = dict(await deps.psa.time_entry(record_id))
    elif spec is EXPENSE:
        record = dict(await deps.psa.expense(record_id))
    milestone = obj == "milestone" and action == "completed"
    trigger: dict[str, Any] = {"trigger": source, "event_id": delivery}
    if correlation_id is not None:
        trigger["correlation_id"] = correlation_id
    async with deps.sessionmaker.begin() as session:
        inbox = InboxRepo(session, clock=deps.clock)
        if not await inbox.record(source, delivery, dict(event)):
            return IntakeResult(Outcome.DUPLICATE, delivery)
        queued: list[int] = []
        if spec is not None and record is not None:
            queued = await enqueue_entries(session, spec, [record], clock=deps.clock, trigger=trigger)
        elif milestone:
            queued = await enqueue_milestones(session, [event["data"]], clock=deps.clock, trigger=trigger)
        else:
            await inbox.mark_processed(source, delivery, status="IGNORED")
            return IntakeResult(Outcome.IGNORED, delivery)
        await inbox.mark_processed(source, delivery)
    return IntakeResult(Outcome.ACCEPTED, delivery, queued)


async def enqueue_milestones(
    session: AsyncSession, milestones: Sequence[Mapping[str, Any]], *, clock: Any, trigger: Mapping[str, Any]
) -> list[int]:
    """One ``release_milestone`` item per completed milestone, ever (dedupe by milestone id)."""
    queue = WorkQueueRepo(session, clock=clock)
    queued = []
    for m in milestones:
        raw = m.get("project")
        project: Mapping[str, Any] = raw if isinstance(raw, dict) else {"id": m.get("project_id")}
        payload = {
            "milestone_id": int(m["id"]),
            "project_id": project.get("id"),
            "name": m.get("name"),
            **trigger,
        }
        item_id = await queue.enqueue(RELEASE_MILESTONE, payload, dedupe_key=f"{RELEASE_MILESTONE}:{m['id']}")
        if item_id is not None:
            queued.append(item_id)
    return queued
