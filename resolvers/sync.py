"""The sync console: ``syncStatus`` (read) and ``syncApprovedTime`` (write), plus a ledger-based posting
status loader for ``TimeEntry.postingStatus``.

    query { syncStatus {
      asOf
      flows { kind depth ready oldestWaitingSeconds throughput { windowMinutes completed perMinute }
              openExceptions exceptionsByReason { reasonCode count } }
      exceptionsByReason { reasonCode count oldestAgeSeconds }
      pollers { poller cursor value updatedAt }
    } }

    mutation { syncApprovedTime(since: "2026-11-01T00:00:00Z", idempotencyKey: "k-1") {
      timeEntriesQueued expensesQueued queued } }

``syncStatus`` is for integration admins, finance and auditors (anyone else: ``FORBIDDEN``). Queue
figures are operational and cover every legal entity (work items carry none yet); exception counts
cover only the legal entities the caller may see (an exception with no entity only for all-entity
callers), like ``integrationExceptions``.

``syncApprovedTime`` needs ``post_time`` (delivery, finance, integration admins). It runs one intake pass
of the PSA time & expense pollers from ``since`` (``mutations.posting.force``; at most 62 days back,
never in the future, else ``VALIDATION_FAILED``) under an idempotency key like every governed write
(argument, else the ``Idempotency-Key`` header; same key + same ``since`` → the first answer, no new
work; another ``since`` → ``IDEMPOTENCY_KEY_REUSED``). Audited, refusals too.

Wiring (``resolvers/mutation.py``, ``extend_schema_kwargs``)::

    query=merge_types("Query", (Query, OperationsQuery, SyncQuery)),
    mutation=merge_types("Mutation", (Mutation, SyncMutation))

This module must not import ``resolvers.mutation`` (that one imports this): the few lines it shares with
it (the key's resolution, the audited permission check) are repeated here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import strawberry
from aiodataloader import DataLoader
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical import entities
from canonical.enums import ApprovalStatus, PostingStatus
from canonical.principal import Permission, Role
from mutations.governance import run_idempotent
from mutations.intake import PROVISION
from mutations.intake import format_stamp as _stamp
from mutations.pollers import OPPORTUNITY_CURSOR
from mutations.posting.force import ForcedIntake, force_intake
from mutations.posting.intake import EXPENSE_CURSOR, TIME_CURSOR
from mutations.posting.model import EXPENSE, POST_EXPENSE, POST_TIME, RELEASE_MILESTONE, TIME, Spec
from mutations.provisioning.outcomes import FLOW as PROVISION_FLOW
from resolvers.context import Info
from resolvers.operations import KeyArgument, flow_deps, now_of, permit, resolve_idempotency_key
from resolvers.types.sync import FlowSyncStatus, PollerCursor, ReasonCount, SyncPassResult, SyncStatus
from store.repositories import WorkQueueRepo
from store.repositories.postings import PostingRepo
from store.repositories.sync_stats import SyncStatsRepo

SYNC_STATUS = "syncStatus"
SYNC_APPROVED_TIME = "syncApprovedTime"

#: Work item kind → the ``flow`` its exceptions carry, in the order ``syncStatus`` lists them.
FLOWS: Mapping[str, str] = {
    POST_TIME: POST_TIME,
    POST_EXPENSE: POST_EXPENSE,
    RELEASE_MILESTONE: RELEASE_MILESTONE,
    PROVISION: PROVISION_FLOW,
}
#: Throughput windows.
WINDOWS = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15))
#: Poller name (as the worker names them) → its cursor. The milestone poller keeps none.
POLLER_CURSORS: Mapping[str, str] = {
    "crm.opportunities": OPPORTUNITY_CURSOR,
    f"psa.{TIME.noun}": TIME_CURSOR,
    f"psa.{EXPENSE.noun}": EXPENSE_CURSOR,
}
#: Who may read ``syncStatus``.
SYNC_READERS = (Role.INTEGRATION_ADMIN, Role.FINANCE, Role.AUDITOR)


async def sync_status(info: Info) -> SyncStatus:
    ctx = info.context
    ctx.principal.require_role(*SYNC_READERS, action=SYNC_STATUS)
    now = now_of(info)

    def clock() -> datetime:  # one instant for every figure of the answer
        return now

    async with ctx.sessionmaker() as session:
        queue, stats = WorkQueueRepo(session, clock=clock), SyncStatsRepo(session, clock=clock)
        queues = {kind: await queue.stats(kind) for kind in FLOWS}
        finished = await stats.throughput(FLOWS, WINDOWS)
        groups = await stats.active_exceptions()
        cursors = await stats.cursors(POLLER_CURSORS.values())
    visible = ctx.principal.visible(groups, lambda g: g.legal_entity)
    return SyncStatus(
        as_of=now,
        flows=[
            FlowSyncStatus.of(kind, flow, queues[kind], finished[kind], visible, now)
            for kind, flow in FLOWS.items()
        ],
        exceptions_by_reason=ReasonCount.summed(visible, now),
        pollers=[PollerCursor.of(p, c, cursors.get(c)) for p, c in POLLER_CURSORS.items()],
    )


@strawberry.type
class SyncQuery:
    @strawberry.field(
        description="Queues, throughput, open exceptions by reason and poller cursors of the sync flows. "
        "Integration admins, finance and auditors only"
    )
    async def sync_status(self, info: Info) -> SyncStatus:
        return await sync_status(info)


@strawberry.type
class SyncMutation:
    @strawberry.mutation(
        description="Force one intake pass of the PSA time & expense pollers from `since` (at most 62 days "
        "back); answers what it queued"
    )
    async def sync_approved_time(
        self, info: Info, since: datetime, idempotency_key: KeyArgument = None
    ) -> SyncPassResult:
        ctx, deps = info.context, flow_deps(info)
        request: dict[str, Any] = {"since": _stamp(since)}
        await permit(deps, info, Permission.POST_TIME, SYNC_APPROVED_TIME, request)

        async def sync() -> ForcedIntake:
            return await force_intake(deps, since, correlation_id=ctx.correlation_id)

        result = await run_idempotent(
            deps,
            ctx.principal,
            SYNC_APPROVED_TIME,
            resolve_idempotency_key(info, idempotency_key),
            request,
            sync,
            load=ForcedIntake.from_json,
            dump=ForcedIntake.to_json,
            correlation_id=ctx.correlation_id,
        )
        return SyncPassResult.of(result)


# --- TimeEntry.postingStatus from the posting ledger ---------------------------------------------------
#
# For the owner of resolvers/types/time.py and resolvers/delivery.py to adopt: build one
# ``LedgerLoaders(sessionmaker, batching=...)`` per request (e.g. ``DeliveryLoaders.ledger``) and call
# ``ledger_posting_statuses(loaders, entries)`` where ``posting_statuses`` reads the ERP time bills.


@dataclass(frozen=True)
class LedgerKey:
    """One PSA entry version: ``noun`` "time" | "expense", the PSA id, the version (``updated_at`` in µs)."""

    noun: str
    psa_id: str
    version: int


@dataclass(frozen=True)
class LedgerState:
    waiting: bool  # a work item for this very version is QUEUED or CLAIMED
    exception: bool  # an OPEN or REPLAYING exception for the entry (any version)
    head: Mapping[str, Any] | None  # the posting head: which version is live in the ERP


_SPECS = {TIME.noun: TIME, EXPENSE.noun: EXPENSE}


class LedgerLoaders:
    """One store round trip per batch of entries (three statements: work items, exceptions, heads)."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], *, batching: bool = True) -> None:
        self.sessionmaker = sessionmaker
        self.state: DataLoader[LedgerKey, LedgerState] = DataLoader(self._load, batch=batching)

    async def _load(self, keys: Sequence[LedgerKey]) -> list[LedgerState]:
        def spec(k: LedgerKey) -> Spec:
            return _SPECS[k.noun]

        dedupe = {k: spec(k).dedupe_key(int(k.psa_id), k.version) for k in keys}
        subjects = {k: spec(k).subject(int(k.psa_id)) for k in keys}
        heads = {k: spec(k).head(int(k.psa_id)) for k in keys}
        async with self.sessionmaker() as session:
            stats = SyncStatsRepo(session)
            waiting = await stats.waiting(dedupe.values())
            failing = await stats.active_subjects(subjects.values())
            found = await PostingRepo(session).heads(heads.values())
        return [LedgerState(dedupe[k] in waiting, subjects[k] in failing, found.get(heads[k])) for k in keys]


def ledger_status(entry: entities.TimeEntry | entities.Expense, state: LedgerState | None) -> PostingStatus:
    """The posting status from the ledger, most pressing first:

    a work item for this version waiting → QUEUED (whatever happened to earlier versions); an active
    exception → EXCEPTION; a head with a version live in the ERP → BILLED when the PSA says billed, else
    POSTED; a head whose last act was a reversal → REVERSED; else the PSA's flags (approved but never
    polled → QUEUED, billed → BILLED, otherwise NOT_READY)."""
    head = state.head if state is not None else None
    if state is not None and state.waiting:
        return PostingStatus.QUEUED
    if state is not None and state.exception:
        return PostingStatus.EXCEPTION
    if head is not None and head.get("live"):
        return PostingStatus.BILLED if entry.is_billed else PostingStatus.POSTED
    if head is not None and head.get("reversed"):
        return PostingStatus.REVERSED
    if entry.is_billed:
        return PostingStatus.BILLED
    if entry.approval_status is ApprovalStatus.APPROVED:
        return PostingStatus.QUEUED
    return PostingStatus.NOT_READY


async def ledger_posting_statuses(
    loaders: LedgerLoaders, entries: Sequence[entities.TimeEntry | entities.Expense]
) -> list[PostingStatus]:
    """Posting statuses of ``entries`` from the store's ledger, batched per query level. An entry with no
    PSA id (not from the PSA) falls back to its flags."""
    keys: list[LedgerKey | None] = []
    for e in entries:
        noun = TIME.noun if isinstance(e, entities.TimeEntry) else EXPENSE.noun
        keys.append(LedgerKey(noun, e.psa_id, e.version) if e.psa_id and e.psa_id.isdigit() else None)
    wanted = [k for k in keys if k is not None]
    states = dict(zip(wanted, await loaders.state.load_many(wanted), strict=True))
    return [ledger_status(e, None if k is None else states[k]) for e, k in zip(entries, keys, strict=True)]


__all__ = [
    "FLOWS",
    "POLLER_CURSORS",
    "SYNC_APPROVED_TIME",
    "SYNC_STATUS",
    "WINDOWS",
    "LedgerKey",
    "LedgerLoaders",
    "LedgerState",
    "SyncMutation",
    "SyncQuery",
    "ledger_posting_statuses",
    "ledger_status",
    "sync_status",
]
