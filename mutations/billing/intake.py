"""ERP invoice, payment and credit-memo changes in; billing events and CRM write-back work out.

    poller = ErpChangePoller(deps, lag=timedelta(seconds=60))
    result = await poller.poll()                     # one round; the worker runs it every interval_s
    result = await handle_erp_event(deps, event)     # POST /webhooks/erp

Both triggers share one pipeline. It reads outside any transaction (the changed ``transaction`` rows,
the invoices the changed payments and credit memos apply to — ``NextTransactionLineLink`` —, reference
data), then records in one transaction, together with the cursor move (poller) or the inbox row
(webhook): the events (``mutations.billing.events``) and one ``crm_writeback`` work item per real
invoice change. If that transaction rolls back, nothing of it happened and the next round reads the same
changes again (the lag window and cursor work exactly like ``mutations.pollers.OpportunityPoller``).

"A real change": each invoice's billing state (status, total, paid, remaining, due date, currency) is
fingerprinted. The last state seen is kept in ``integration_steps`` (key ``erp:invoice:<erp id>:last``,
its result ``{fingerprint, status, seq}``) — no table of our own. A change is claimed by creating the step
``crm:invoice:<erp id>:<seq>:<fingerprint>`` under this round's run; whoever created it (PostgreSQL
serialises the insert on the unique key) emits the events, the others see it exists and emit nothing.
That step is also the write-back's step (``mutations.billing.writeback`` runs it through ``FlowRunner``),
so each change is written to the CRM once. ``seq`` counts changes, so a state seen before (a payment
reversed) is still a change. Payments and credit memos are claimed the same way (``erp:receipt:...``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical.errors import NotFound, ValidationFailed
from mutations.billing import events as ev
from mutations.billing.state import TYPES, digest, invoice_fingerprint, invoice_state, receipt_event
from mutations.deps import Clock
from mutations.identity import customer_canonical_id
from mutations.intake import IntakeResult, Outcome, format_stamp, normalise_stamp
from mutations.pollers import DEFAULT_LAG, PollResult
from mutations.pollers import _parse as parse_stamp
from store.repositories import CrossReferenceRepo, CursorRepo, InboxRepo, OutboxRepo, RunRepo, WorkQueueRepo
from subgraphs.erp.client import ErpClient
from subgraphs.erp.refdata import Reference
from subgraphs.erp.wire import Record, ref_id, sql_ids, sql_string

ERP_CURSOR = "erp.transactions.lastmodifieddate"
CRM_WRITEBACK = "crm_writeback"  # work item kind
INTAKE_FLOW = "billing_intake"
COLUMNS = (
    "id, externalid, tranid, type, entity, job, trandate, duedate, currency, foreigntotal, amountpaid, "
    "amountremaining, status, subsidiary, lastmodifieddate"
)
LINK_COLUMNS = "nextdoc, nextline, previousdoc, foreignamount, amount"


class IntakeDeps(Protocol):
    """What intake needs of ``mutations.deps.FlowDeps`` (which satisfies it); the webhook builds less."""

    @property
    def erp(self) -> ErpClient: ...

    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]: ...

    @property
    def clock(self) -> Clock: ...


# -- reading (no transaction open) --------------------------------------------------------------------------


@dataclass
class Changes:
    """What one round read: changed rows, the invoices they touch, and the links between them."""

    reference: Reference
    invoices: dict[str, Record] = field(default_factory=dict)  # erp id → invoice row (current)
    receipts: list[Record] = field(default_factory=list)  # changed payments and credit memos
    links: dict[str, list[Record]] = field(default_factory=dict)  # receipt id → its applications
    read: int = 0


async def changed_since(erp: ErpClient, since: datetime) -> list[Record]:
    """Invoices, payments and credit memos modified at or after ``since``, oldest change first."""
    return await erp.suiteql(
        f"SELECT {COLUMNS} FROM transaction WHERE type IN ('CustInvc', 'CustPymt', 'CustCred') "
        f"AND lastmodifieddate >= {sql_string(format_stamp(since))} ORDER BY lastmodifieddate, id"
    )


async def transactions_by_ids(erp: ErpClient, ids: Sequence[str]) -> list[Record]:
    if not ids:
        return []
    return await erp.suiteql(
        f"SELECT {COLUMNS} FROM transaction WHERE type IN ('CustInvc', 'CustPymt', 'CustCred') "
        f"AND id IN ({sql_ids(list(ids))}) ORDER BY id"
    )


async def read_changes(erp: ErpClient, rows: Iterable[Record]) -> Changes:
    """The changed rows with the invoices their payments and credits apply to (two SuiteQL at most)."""
    rows = list(rows)
    changes = Changes(await erp.reference_data(), read=len(rows))
    for row in rows:
        if row.get("type") == "CustInvc":
            changes.invoices[str(row["id"])] = row
        elif row.get("type") in TYPES:
            changes.receipts.append(row)
    receipt_ids = [str(r["id"]) for r in changes.receipts]
    if receipt_ids:
        links = await erp.suiteql(
            f"SELECT {LINK_COLUMNS} FROM NextTransactionLineLink WHERE nextdoc IN ({sql_ids(receipt_ids)}) "
            "ORDER BY nextdoc, nextline"
        )
        for link in links:
            changes.links.setdefault(str(link["nextdoc"]), []).append(link)
        missing = sorted({str(li["previousdoc"]) for li in links} - set(changes.invoices), key=int)
        for row in await transactions_by_ids(erp, missing):
            changes.invoices[str(row["id"])] = row
    return changes


# -- deciding and recording (in the caller's transaction) -------------------------------------------------


@dataclass
class Recorded:
    events: list[int] = field(default_factory=list)  # outbox ids, in order
    queued: list[int] = field(default_factory=list)  # crm_writeback work items


class _Round:
    """One transaction's bookkeeping: the run its steps hang from, created on the first change only."""

    def __init__(self, session: AsyncSession, deps: IntakeDeps, subject: str, correlation_id: str) -> None:
        self.session, self.deps, self.subject, self.correlation_id = session, deps, subject, correlation_id
        self.runs = RunRepo(session, clock=deps.clock)
        self.run_id: str | None = None

    async def last(self, key: str) -> dict[str, Any]:
        try:
            step = await self.runs.get_step(key)
        except NotFound:
            return {}
        return dict(step.result or {})

    async def claim(self, register: str, fingerprint: str, prefix: str) -> tuple[str, dict[str, Any]] | None:
        """(change step key, last-seen state) when ``fingerprint`` is a change we are first to record."""
        seen = await self.last(register)
        if seen.get("fingerprint") == fingerprint:
            return None
        if self.run_id is None:
            run = await self.runs.start(INTAKE_FLOW, subject=self.subject, correlation_id=self.correlation_id)
            self.run_id = run.id
        key = f"{prefix}:{int(seen.get('seq', 0)) + 1}:{fingerprint}"
        step = await self.runs.step(self.run_id, "change", key)
        if step.run_id != self.run_id:
            return None  # another round recorded this change first
        state = {"fingerprint": fingerprint, "seq": int(seen.get("seq", 0)) + 1}
        await self.runs.step(self.run_id, "last_seen", register)
        return key, {**seen, "next": state}

    async def remember(self, register: str, state: Mapping[str, Any]) -> None:
        await self.runs.step_succeeded(register, dict(state))

    async def close(self) -> None:
        if self.run_id is not None:
            await self.runs.finish(self.run_id, "SUCCEEDED")


async def record_changes(
    session: AsyncSession, deps: IntakeDeps, changes: Changes, *, subject: str, correlation_id: str
) -> Recorded:
    """Events and write-back work for the real changes among ``changes``; see the module docstring."""
    reference, today = changes.reference, deps.clock().date()
    rows = [*changes.receipts, *changes.invoices.values()]
    customers = sorted({c for c in (ref_id(r, "entity") for r in rows) if c})
    linked = await CrossReferenceRepo(session).resolve_many("erp", "Account", customers)
    crm_ids = await CrossReferenceRepo(session).system_ids_for("crm", list(set(linked.values())))
    outbox = OutboxRepo(session, clock=deps.clock)
    queue = WorkQueueRepo(session, clock=deps.clock)
    rnd = _Round(session, deps, subject, correlation_id)
    done = Recorded()

    def base(row: Record) -> dict[str, Any]:
        customer = ref_id(row, "entity") or ""
        account = linked.get(customer) or customer_canonical_id(customer)
        return {
            "legal_entity": reference.legal_entities.get(ref_id(row, "subsidiary") or ""),
            "account_id": account,
            "crm_account_id": crm_ids.get(account),
            "occurred_at": normalise_stamp(row.get("lastmodifieddate")) or format_stamp(deps.clock()),
            "correlation_id": correlation_id,
        }

    # Payments and credit memos first: subscribers see the payment, then the invoice state it caused.
    for receipt in changes.receipts:
        receipt_id = str(receipt["id"])
        links = changes.links.get(receipt_id, [])
        fp = digest(
            [str(receipt.get("foreigntotal")), str(receipt.get("currency"))]
            + [[str(li["previousdoc"]), str(li.get("amount"))] for li in links]
        )
        claimed = await rnd.claim(f"erp:receipt:{receipt_id}:last", fp, f"erp:receipt:{receipt_id}")
        if claimed is None:
            continue
        key, seen = claimed
        await rnd.runs.step_succeeded(key, {"fingerprint": fp})
        await rnd.remember(f"erp:receipt:{receipt_id}:last", seen["next"])
        for link in links:
            invoice = changes.invoices.get(str(link["previousdoc"]))
            if invoice is None:
                continue
            payload = receipt_event(receipt, link, invoice, reference, today, base(receipt))
            topic = ev.PAYMENT_RECEIVED if receipt.get("type") == "CustPymt" else ev.INTEGRATION_EVENT
            done.events.append(
                await outbox.add(
                    topic, payload, key=payload["invoice"]["id"], legal_entity=payload["legal_entity"]
                )
            )

    for erp_id, row in changes.invoices.items():
        fp = invoice_fingerprint(row, reference)
        register = f"erp:invoice:{erp_id}:last"
        claimed = await rnd.claim(register, fp, f"crm:invoice:{erp_id}")
        if claimed is None:
            continue
        key, seen = claimed
        state = invoice_state(row, reference, seen.get("status"), today)
        await rnd.remember(register, {**seen["next"], "status": state["status"]})
        payload = {**base(row), "invoice": state, "payment": None, "kind": None, "fingerprint": fp}
        done.events.append(
            await outbox.add(
                ev.INVOICE_STATUS_CHANGED, payload, key=state["id"], legal_entity=payload["legal_entity"]
            )
        )
        work = {
            **payload,
            "step_key": key,
            "register": register,
            "customer_erp_id": ref_id(row, "entity"),
            "currency": state["total"]["currency"],
        }
        item = await queue.enqueue(CRM_WRITEBACK, work, dedupe_key=key, legal_entity=payload["legal_entity"])
        if item is not None:
            done.queued.append(item)
    await rnd.close()
    return done


# -- the triggers ------------------------------------------------------------------------------------------


class ErpChangePoller:
    """ERP transactions changed since the cursor (minus ``lag``) → events and write-back work.

    Without a stored cursor the first round only anchors it at the ERP's newest change (``start``, when
    given, anchors there instead and reads from ``start - lag``)."""

    def __init__(
        self,
        deps: IntakeDeps,
        *,
        name: str = "erp.billing",
        interval_s: float = 30.0,
        lag: timedelta = DEFAULT_LAG,
        cursor: str = ERP_CURSOR,
        start: datetime | None = None,
    ) -> None:
        if lag < timedelta(0):
            raise ValueError("the lag window cannot be negative")
        self.deps, self.name, self.interval_s, self.lag = deps, name, interval_s, lag
        self.cursor, self.start = cursor, start

    async def poll(self) -> PollResult:
        async with self.deps.sessionmaker() as session:
            before = await CursorRepo(session).get(self.cursor)
        moment = parse_stamp(before) if before is not None else None
        if moment is None and self.start is None:
            return await self._anchor(before)
        anchor = moment if moment is not None else (self.start or self.deps.clock())
        since = anchor - self.lag
        rows = await changed_since(self.deps.erp, since)
        changes = await read_changes(self.deps.erp, rows)
        # Stamps are compared with each other only, never with our clock: the cursor lives on the ERP's
        # time axis (an ERP clock ahead of ours — the embedded sandbox's is the demo firm's date — must
        # not make every round re-read everything).
        stamps = [s for s in (normalise_stamp(r.get("lastmodifieddate")) for r in rows) if s is not None]
        seen = [s for s in (before, max(stamps, default=None)) if s is not None]
        after = max(seen) if seen else format_stamp(anchor)
        correlation_id = f"poll-{uuid.uuid4().hex[:12]}"
        async with self.deps.sessionmaker.begin() as session:
            await CursorRepo(session, clock=self.deps.clock).set(self.cursor, after)
            done = await record_changes(
                session, self.deps, changes, subject=self.name, correlation_id=correlation_id
            )
        return PollResult(self.name, since, len(rows), done.queued, before, after)

    async def _anchor(self, before: str | None) -> PollResult:
        """A new installation starts after the ERP's newest change: the firm's billing history is not
        replayed into the CRM (backfill's job), only what changes from now on. The cursor is put ``lag``
        past it so the next round's window starts just after it — otherwise every record stamped in the
        lag window before install (the whole embedded demo firm, seeded in one instant) would count as
        new. The price: a transaction stamped before install but committed after it is not read."""
        rows = await self.deps.erp.suiteql(
            "SELECT MAX(lastmodifieddate) AS stamp FROM transaction "
            "WHERE type IN ('CustInvc', 'CustPymt', 'CustCred')"
        )
        newest = normalise_stamp(rows[0].get("stamp")) if rows else None
        moment = parse_stamp(newest) if newest is not None else None
        start = (moment + timedelta(milliseconds=1)) if moment is not None else self.deps.clock()
        after = format_stamp(start + self.lag)
        async with self.deps.sessionmaker.begin() as session:
            await CursorRepo(session, clock=self.deps.clock).set(self.cursor, after)
        return PollResult(self.name, parse_stamp(after) or self.deps.clock(), 0, [], before, after)


def delivery_of(event: Mapping[str, Any]) -> tuple[str, str, str]:
    """(delivery id, record type, record id) of ``{"id", "recordType", "recordId", "action"?}``."""
    delivery, record_type, record_id = event.get("id"), event.get("recordType"), event.get("recordId")
    if isinstance(delivery, bool) or not isinstance(delivery, int | str) or str(delivery) == "":
        raise ValidationFailed("an ERP event needs an id")
    if not isinstance(record_type, str) or not record_type:
        raise ValidationFailed("an ERP event needs a recordType")
    if isinstance(record_id, bool) or not str(record_id or "").isdigit():
        raise ValidationFailed("an ERP event needs a numeric recordId")
    return str(delivery), record_type, str(record_id)


async def handle_erp_event(
    deps: IntakeDeps, event: Mapping[str, Any], *, source: str = "erp", correlation_id: str | None = None
) -> IntakeResult:
    """Record one ERP event (inbox dedupe by its id); the record is read again from the ERP, the owner,
    outside any transaction — when it cannot be read nothing is stored, so the sender's retry counts."""
    delivery, record_type, record_id = delivery_of(event)
    wanted = record_type in TYPES.values() and event.get("action") != "delete"
    rows = await transactions_by_ids(deps.erp, [record_id]) if wanted else []
    changes = await read_changes(deps.erp, rows) if rows else None
    cid = correlation_id or f"erp-webhook-{delivery}"
    async with deps.sessionmaker.begin() as session:
        inbox = InboxRepo(session, clock=deps.clock)
        if not await inbox.record(source, delivery, dict(event)):
            return IntakeResult(Outcome.DUPLICATE, delivery)
        if changes is None:
            await inbox.mark_processed(source, delivery, status="IGNORED")
            return IntakeResult(Outcome.IGNORED, delivery)
        done = await record_changes(
            session, deps, changes, subject=f"{source}:{delivery}", correlation_id=cid
        )
        await inbox.mark_processed(source, delivery)
    return IntakeResult(Outcome.ACCEPTED, delivery, done.queued)
