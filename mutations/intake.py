"""CRM change events in, provisioning work out: the one intake every trigger shares.

    result = await handle_crm_event(deps, event, source="crm")   # webhook, or a change-event poller
    result.outcome  # ACCEPTED | DUPLICATE | IGNORED_ECHO | IGNORED

The webhook (``gateway.webhooks``) and the ``SystemModstamp`` poller (``mutations.pollers``) never call
``provision_engagement`` themselves. They put a ``provision`` work item on the queue, and the worker
(``gateway.worker``) runs the flow under a system principal. Both triggers derive the item's dedupe key
from the same thing — the opportunity's current ``SystemModstamp`` as the CRM reports it — so the same
change seen by both lands on the queue once; two different changes may queue twice, and the flow's own
step keys still leave exactly one customer, contract and project.

Which opportunities are queued: those that are closed-won now, and those the gateway has provisioned
before (a reopen or an amount change must reach the flow's amendment logic). Deciding needs the record's
current state — a CDC ``UPDATE`` carries only the changed fields — so the handler reads the records
(one query for all of an event's ids) *before* its transaction: no network call holds a database lock,
and when the CRM cannot be read nothing is stored, so the sender's retry is not mistaken for a duplicate.

One transaction per event: the inbox row (dedupe by ``(source, event id)``), its status, and the work
items commit together or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol, cast

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical.errors import ValidationFailed
from canonical.principal import Principal
from mutations.deps import FlowDeps
from mutations.identity import provisioned_project_canonical_id
from store.repositories import CrossReferenceRepo, InboxRepo, WorkQueueRepo
from subgraphs.crm.client import CrmClient
from subgraphs.crm.wire import ChangeEvent, OpportunityRecord

PROVISION = "provision"  # work item kind
WORKER = "worker"  # the system principal queued flows run as: ``Principal.system("worker")``
OPPORTUNITY = "Opportunity"
# GAP_* events say "this record changed, details lost": the current record tells us what we need.
RELEVANT_CHANGES = frozenset({"CREATE", "UPDATE", "UNDELETE", "GAP_CREATE", "GAP_UPDATE", "GAP_UNDELETE"})

Clock = Callable[[], datetime]


class IntakeDeps(Protocol):
    """What intake needs of ``mutations.deps.FlowDeps`` (which satisfies it)."""

    @property
    def crm(self) -> CrmClient: ...

    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]: ...

    @property
    def clock(self) -> Clock: ...


class Outcome(StrEnum):
    ACCEPTED = "ACCEPTED"  # recorded and acted on (zero or more work items queued)
    DUPLICATE = "DUPLICATE"  # this event id was recorded before: nothing done
    IGNORED_ECHO = "IGNORED_ECHO"  # our own write coming back: recorded, nothing queued
    IGNORED = "IGNORED"  # not an opportunity change we act on: recorded, nothing queued


@dataclass(frozen=True)
class IntakeResult:
    outcome: Outcome
    event_id: str
    queued: list[int] = field(default_factory=list)  # ids of work items this event created
    opportunities: list[str] = field(default_factory=list)  # opportunity ids it asked to provision


@dataclass(frozen=True)
class ProvisionRequest:
    """One ``provision`` work item to be: the opportunity and the version of it that asked."""

    opportunity_id: str
    stamp: str  # SystemModstamp (normalised), else commitTimestamp

    @property
    def dedupe_key(self) -> str:
        return f"{PROVISION}:{self.opportunity_id}:{self.stamp}"


def event_id_of(event: Mapping[str, Any]) -> str:
    """The event's id (its replay id); ``ValidationFailed`` when the body is no change event."""
    replay_id = event.get("replayId")
    payload = event.get("payload")
    if isinstance(replay_id, bool) or not isinstance(replay_id, int | str) or str(replay_id) == "":
        raise ValidationFailed("a change event needs a replayId")
    if not isinstance(payload, dict) or not isinstance(payload.get("ChangeEventHeader"), dict):
        raise ValidationFailed("a change event needs payload.ChangeEventHeader")
    return str(replay_id)


def normalise_stamp(value: object) -> str | None:
    """A Salesforce datetime (``...+0000``, ``Z``, any offset) or epoch milliseconds as one fixed-width
    UTC text, so the webhook and the poller spell the same instant the same way."""
    if isinstance(value, bool) or value is None or value == "":
        return None
    try:
        if isinstance(value, int | float):
            moment = datetime.fromtimestamp(value / 1000, tz=UTC)
        else:
            text = str(value).replace("Z", "+00:00")
            if len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit():
                text = text[:-2] + ":" + text[-2:]
            moment = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        return None
    return format_stamp(moment)


def format_stamp(moment: datetime) -> str:
    """Fixed-width UTC text to the millisecond (naive means UTC); such stamps compare correctly as text."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def provision_requests(
    records: Iterable[OpportunityRecord], provisioned: set[str], *, fallback_stamp: str | None = None
) -> list[ProvisionRequest]:
    """The opportunities that go to the flow: closed-won now, or provisioned by us before."""
    wanted: list[ProvisionRequest] = []
    for record in records:
        opportunity_id = str(record.get("Id") or "")
        if not opportunity_id or not (record.get("IsWon") is True or opportunity_id in provisioned):
            continue
        stamp = normalise_stamp(record.get("SystemModstamp")) or fallback_stamp
        if stamp is not None:
            wanted.append(ProvisionRequest(opportunity_id, stamp))
    return wanted


async def provisioned_opportunities(session: AsyncSession, opportunity_ids: Sequence[str]) -> set[str]:
    """Which of these opportunities the gateway has provisioned (their project is linked in the ERP)."""
    by_project = {provisioned_project_canonical_id(oid): oid for oid in opportunity_ids}
    linked = await CrossReferenceRepo(session).system_ids_for("erp", list(by_project))
    return {by_project[project_id] for project_id in linked}


async def enqueue_provisions(
    session: AsyncSession,
    requests: Iterable[ProvisionRequest],
    *,
    clock: Clock,
    trigger: Mapping[str, Any],
) -> list[int]:
    """Queue one ``provision`` item per request in the caller's transaction; an existing key is skipped."""
    queue = WorkQueueRepo(session, clock=clock)
    queued: list[int] = []
    for request in requests:
        payload = {"opportunity_id": request.opportunity_id, "stamp": request.stamp, **trigger}
        item_id = await queue.enqueue(PROVISION, payload, dedupe_key=request.dedupe_key)
        if item_id is not None:
            queued.append(item_id)
    return queued


async def handle_crm_event(
    deps: IntakeDeps,
    event: ChangeEvent | Mapping[str, Any],
    *,
    source: str = "crm",
    correlation_id: str | None = None,
) -> IntakeResult:
    """Record one CRM change event and queue what it asks for; safe to call again with the same event.

    ``correlation_id`` (the webhook request's) travels with the work item, so the flow's run, audit and
    exceptions carry the id of the delivery that caused them.
    """
    event_id = event_id_of(event)
    header: Mapping[str, Any] = event["payload"]["ChangeEventHeader"]
    record_ids = [str(rid) for rid in header.get("recordIds") or [] if rid]
    echo = deps.crm.is_own_echo(cast(ChangeEvent, event))
    relevant = (
        not echo
        and header.get("entityName") == OPPORTUNITY
        and header.get("changeType") in RELEVANT_CHANGES
        and bool(record_ids)
    )
    records = await deps.crm.opportunities_by_ids(record_ids) if relevant else []

    async with deps.sessionmaker.begin() as session:
        inbox = InboxRepo(session, clock=deps.clock)
        if not await inbox.record(source, event_id, _jsonable(event)):
            return IntakeResult(Outcome.DUPLICATE, event_id)
        if not relevant:
            await inbox.mark_processed(source, event_id, status="IGNORED")
            return IntakeResult(Outcome.IGNORED_ECHO if echo else Outcome.IGNORED, event_id)
        provisioned = await provisioned_opportunities(session, record_ids)
        requests = provision_requests(
            records, provisioned, fallback_stamp=normalise_stamp(header.get("commitTimestamp"))
        )
        trigger = {"trigger": source, "event_id": event_id}
        if correlation_id is not None:
            trigger["correlation_id"] = correlation_id
        queued = await enqueue_provisions(session, requests, clock=deps.clock, trigger=trigger)
        await inbox.mark_processed(source, event_id)
    return IntakeResult(Outcome.ACCEPTED, event_id, queued, [r.opportunity_id for r in requests])


def _jsonable(event: Mapping[str, Any]) -> Any:
    """The event as stored JSON: the connector reads numbers as ``Decimal``; on the wire they are numbers."""
    return json.loads(json.dumps(event, default=_number))


def _number(value: object) -> object:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"cannot store {type(value).__name__} in the inbox")


async def run_provision(deps: FlowDeps, payload: Mapping[str, Any], *, correlation_id: str) -> object:
    """Run one queued ``provision`` item: the flow, as the worker's system principal."""
    # Imported here: intake (and the webhook) must not need the whole flow to record and queue events.
    from mutations.provision import provision_engagement

    return await provision_engagement(
        deps,
        str(payload["opportunity_id"]),
        principal=Principal.system(WORKER),
        correlation_id=correlation_id,
    )
