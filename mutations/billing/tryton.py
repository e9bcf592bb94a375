"""Invoice and payment status from Tryton → the same events and CRM write-back as NetSuite's.

    poller = TrytonInvoicePoller(deps)   # the worker runs it beside ErpChangePoller for a Tryton entity
    result = await poller.poll()

Customer invoices (``account.invoice``, type ``out``) written since the cursor (minus the lag) are read in
id-ordered pages; their payments are their ``payment_lines``. Each is recorded with the intake's own
bookkeeping (``intake._Round``): a real change of an invoice's billing state — fingerprinted like
NetSuite's — emits ``invoice.status_changed`` once and queues one ``crm_writeback`` item; each new payment
line emits ``payment.received`` once. Registers are ``tryton:invoice:<id>:last`` and
``tryton:payment:<move line id>:last``, so NetSuite and Tryton ids never collide. The account is the party's
code (the canonical account id provisioning stamped on it); the legal entity is the Tryton company's.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from canonical import analytics
from canonical.entities import Invoice
from mutations.billing import events as ev
from mutations.billing.intake import CRM_WRITEBACK, Recorded, _Round
from mutations.billing.state import digest, fingerprint_of, money, state_of
from mutations.deps import FlowDeps
from mutations.intake import format_stamp
from mutations.pollers import DEFAULT_LAG, PollResult
from mutations.pollers import _parse as parse_stamp
from store.repositories import CrossReferenceRepo, CursorRepo, OutboxRepo, WorkQueueRepo
from subgraphs.crm.mapping import receivables_to_wire
from subgraphs.erp_tryton.client import TrytonClient
from subgraphs.erp_tryton.loaders import search_invoices
from subgraphs.erp_tryton.mapping import (
    INVOICE_FIELDS,
    ISSUED,
    PAYMENT_LINE_FIELDS,
    invoice_from_row,
    payment_from_line,
)
from subgraphs.erp_tryton.wire import Record

TRYTON_CURSOR = "tryton.invoices.write_date"
FIELDS = (*INVOICE_FIELDS, "create_date", "payment_lines")


def invoice_state(invoice: Invoice, previous: str | None, today: date) -> ev.InvoiceState:
    return state_of(invoice, str(invoice.erp_id), previous, today)


def _stamp(row: Record) -> datetime | None:
    moment = row.get("write_date") or row.get("create_date")
    return moment.replace(tzinfo=UTC) if isinstance(moment, datetime) and moment.tzinfo is None else moment


async def read_invoices(
    client: TrytonClient, since: datetime | None
) -> tuple[list[Record], dict[int, Record]]:
    """Issued customer invoices changed at or after ``since`` (all when None) and their payment lines by id.

    Only issued ones (``ISSUED``: posted, paid or cancelled, with a number), as in the graph: a draft is the
    accountant's work in progress, owed by nobody — in the CRM it would be an invoice the customer never
    got, dated the day it was seen. It reaches the CRM when it is posted."""
    domain: list[Any] = list(ISSUED)
    if since is not None:
        naive = since.astimezone(UTC).replace(tzinfo=None)
        domain.append(["OR", ["write_date", ">=", naive], ["create_date", ">=", naive]])
    rows = await search_invoices(client, domain, FIELDS)
    line_ids = sorted({int(i) for r in rows for i in r.get("payment_lines") or []})
    lines = {int(r["id"]): r for r in await client.read("account.move.line", line_ids, PAYMENT_LINE_FIELDS)}
    return rows, lines


async def record_invoices(
    deps: FlowDeps, rows: list[Record], lines: dict[int, Record], *, subject: str, correlation_id: str
) -> Recorded:
    entities = deps.tryton_entities()
    entity = entities[0] if entities else None
    today = deps.today()
    accounts = sorted({str((r.get("party.") or {}).get("code") or "") for r in rows} - {""})
    done = Recorded()
    async with deps.sessionmaker.begin() as session:
        crm_ids = await CrossReferenceRepo(session).system_ids_for("crm", accounts)
        outbox = OutboxRepo(session, clock=deps.clock)
        queue = WorkQueueRepo(session, clock=deps.clock)
        rnd = _Round(session, deps, subject, correlation_id)
        for row in sorted(rows, key=lambda r: (_stamp(r) or datetime.min.replace(tzinfo=UTC), r["id"])):
            invoice = invoice_from_row(row, legal_entity=entity)
            stamp = _stamp(row)
            base: dict[str, Any] = {
                "legal_entity": entity,
                "account_id": invoice.account_id,
                "crm_account_id": crm_ids.get(invoice.account_id),
                "occurred_at": format_stamp(stamp or deps.clock()),
                "correlation_id": correlation_id,
            }
            for line_id in sorted(int(i) for i in row.get("payment_lines") or []):
                paid = payment_from_line({**lines.get(line_id, {}), "id": line_id}, invoice, today=today)
                amount = paid.amount.amount
                register = f"{paid.id}:last"
                claimed = await rnd.claim(register, digest([str(amount)]), paid.id)
                if claimed is None:
                    continue
                key, seen = claimed
                await rnd.runs.step_succeeded(key, {"amount": str(amount)})
                await rnd.remember(register, seen["next"])
                payment: ev.PaymentState = {
                    "id": paid.id,
                    "erpId": str(line_id),
                    "kind": "PAYMENT",
                    "number": paid.reference,
                    "date": paid.date.isoformat(),
                    "amount": money(amount, invoice.currency),
                    "applied": money(amount, invoice.currency),
                }
                state = invoice_state(invoice, None, today)
                payload = {
                    **base,
                    "invoice": state,
                    "payment": payment,
                    "kind": None,
                    "fingerprint": fingerprint_of(invoice),
                }
                done.events.append(
                    await outbox.add(ev.PAYMENT_RECEIVED, payload, key=invoice.id, legal_entity=entity)
                )
            fp = fingerprint_of(invoice)
            register = f"tryton:invoice:{row['id']}:last"
            claimed = await rnd.claim(register, fp, f"crm:invoice:tryton:{row['id']}")
            if claimed is None:
                continue
            key, seen = claimed
            state = invoice_state(invoice, seen.get("status"), today)
            await rnd.remember(register, {**seen["next"], "status": state["status"]})
            payload = {**base, "invoice": state, "payment": None, "kind": None, "fingerprint": fp}
            done.events.append(
                await outbox.add(ev.INVOICE_STATUS_CHANGED, payload, key=invoice.id, legal_entity=entity)
            )
            work = {
                **payload,
                "step_key": key,
                "register": register,
                "erp": "tryton",
                "customer_erp_id": str(row.get("party") or ""),
                "currency": invoice.currency,
            }
            item = await queue.enqueue(CRM_WRITEBACK, work, dedupe_key=key, legal_entity=entity)
            if item is not None:
                done.queued.append(item)
        await rnd.close()
    return done


class TrytonInvoicePoller:
    """Tryton invoices written since the cursor (minus ``lag``) → billing events and CRM write-back work.
    The first round reads every customer invoice (a new Tryton entity's invoices are few and all new)."""

    def __init__(
        self,
        deps: FlowDeps,
        *,
        name: str = "tryton.billing",
        interval_s: float = 30.0,
        lag: timedelta = DEFAULT_LAG,
        cursor: str = TRYTON_CURSOR,
    ) -> None:
        self.deps, self.name, self.interval_s, self.lag, self.cursor = deps, name, interval_s, lag, cursor

    async def poll(self) -> PollResult:
        client = self.deps.tryton
        if client is None:
            return PollResult(self.name, self.deps.clock(), 0, [], None, "")
        async with self.deps.sessionmaker() as session:
            before = await CursorRepo(session).get(self.cursor)
        moment = parse_stamp(before) if before is not None else None
        since = moment - self.lag if moment is not None else None
        rows, lines = await read_invoices(client, since)
        stamps = [s for s in (_stamp(r) for r in rows) if s is not None]
        after = format_stamp(max([*stamps, *([moment] if moment else [])])) if stamps or moment else None
        done = await record_invoices(
            self.deps, rows, lines, subject=self.name, correlation_id=f"poll-{uuid.uuid4().hex[:12]}"
        )
        if after is not None:
            async with self.deps.sessionmaker.begin() as session:
                await CursorRepo(session, clock=self.deps.clock).set(self.cursor, after)
        return PollResult(self.name, since or self.deps.clock(), len(rows), done.queued, before, after or "")


async def account_billing(client: TrytonClient, party_id: str, currency: str, as_of: date) -> dict[str, Any]:
    """The CRM account's billing fields from the party's Tryton invoices (like NetSuite's)."""
    rows = await search_invoices(client, [["type", "=", "out"], ["party", "=", int(party_id)]], FIELDS)
    invoices = [invoice_from_row(r, legal_entity=None) for r in rows]
    invoices = [i for i in invoices if i.currency == currency]
    line_ids = sorted({int(i) for r in rows for i in r.get("payment_lines") or []})
    payments = [
        r["date"]
        for r in await client.read("account.move.line", line_ids, ["date"])
        if r.get("date") and r["date"] <= as_of
    ]
    wire = receivables_to_wire(
        billed_to_date=analytics.billed_to_date(invoices, currency, as_of=as_of),
        open_receivables=analytics.open_receivables(invoices, currency, as_of=as_of),
        overdue=analytics.overdue_total(invoices, as_of, currency),
        last_payment=max(payments, default=None),
    )
    return dict(wire)
