"""Batch load functions for aiodataloader: one ``search_read`` by ids per batch, results in key order.

    loader = DataLoader(parties_loader(client, legal_entity="EU01", currency="EUR"))   # per request
    account = await loader.load("12")              # None when Tryton has no such party

Keys are Tryton record ids (strings, like NetSuite's internal ids).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from decimal import Decimal

from canonical.entities import Account, Invoice, Project
from canonical.money import Money
from subgraphs.erp.queries import InvoiceTotals
from subgraphs.erp_tryton.client import TrytonClient
from subgraphs.erp_tryton.mapping import (
    INVOICE_FIELDS,
    PARTY_FIELDS,
    WORK_FIELDS,
    account_from_party,
    invoice_from_row,
    project_from_work,
)


def _ints(ids: Sequence[str]) -> list[int]:
    return sorted({int(i) for i in ids if str(i).isdigit()})


def parties_loader(
    client: TrytonClient, *, legal_entity: str, currency: str
) -> Callable[[Sequence[str]], Awaitable[list[Account | None]]]:
    async def load(ids: Sequence[str]) -> list[Account | None]:
        rows = await client.search_read("party.party", [["id", "in", _ints(ids)]], PARTY_FIELDS)
        found = {
            str(r["id"]): account_from_party(r, legal_entity=legal_entity, currency=currency) for r in rows
        }
        return [found.get(str(i)) for i in ids]

    return load


def projects_loader(
    client: TrytonClient, *, legal_entity: str
) -> Callable[[Sequence[str]], Awaitable[list[Project | None]]]:
    async def load(ids: Sequence[str]) -> list[Project | None]:
        rows = await client.search_read(
            "project.work", [["id", "in", _ints(ids)], ["type", "=", "project"]], WORK_FIELDS
        )
        found = {str(r["id"]): project_from_work(r, legal_entity=legal_entity) for r in rows}
        return [found.get(str(i)) for i in ids]

    return load


def invoices_by_party_loader(
    client: TrytonClient, *, legal_entity: str
) -> Callable[[Sequence[str]], Awaitable[list[list[Invoice]]]]:
    """Customer invoices (posted or paid; drafts are not issued) of each party."""

    async def load(ids: Sequence[str]) -> list[list[Invoice]]:
        rows = await client.search_all(
            "account.invoice",
            [["type", "=", "out"], ["party", "in", _ints(ids)], ["state", "in", ["posted", "paid"]]],
            INVOICE_FIELDS,
        )
        by_party: dict[str, list[Invoice]] = {str(i): [] for i in ids}
        for row in rows:
            invoice = invoice_from_row(row, legal_entity=legal_entity)
            by_party.setdefault(str(row["party"]), []).append(invoice)
        return [by_party.get(str(i), []) for i in ids]

    return load


def _bucket(days: int) -> str:
    return "1-30" if days <= 30 else "31-60" if days <= 60 else "61-90" if days <= 90 else "91+"


def invoice_totals_loader(
    client: TrytonClient, as_of: date, window_start: date
) -> Callable[[Sequence[str]], Awaitable[list[list[InvoiceTotals]]]]:
    """Receivables per party and currency as of ``as_of`` — the shape NetSuite's ``invoice_totals`` has, so
    account health is computed the same way whichever ERP books the account. One read per batch."""

    async def load(ids: Sequence[str]) -> list[list[InvoiceTotals]]:
        rows = await client.search_all(
            "account.invoice",
            [["type", "=", "out"], ["party", "in", _ints(ids)], ["state", "in", ["posted", "paid"]],
             ["invoice_date", "<=", as_of]],
            INVOICE_FIELDS,
        )
        grouped: dict[tuple[str, str], list[Invoice]] = {}
        for row in rows:
            invoice = invoice_from_row(row, legal_entity=None)
            grouped.setdefault((str(row["party"]), invoice.currency), []).append(invoice)
        found: dict[str, list[InvoiceTotals]] = {}
        for (party, currency), invoices in grouped.items():
            zero = Money(Decimal(0), currency)
            buckets = {label: zero for label in ("1-30", "31-60", "61-90", "91+")}
            overdue = zero
            for inv in invoices:
                late = inv.days_past_due(as_of)
                if late > 0 and inv.amount_remaining.amount > 0:
                    buckets[_bucket(late)] = buckets[_bucket(late)] + inv.amount_remaining
                    overdue = overdue + inv.amount_remaining
            found.setdefault(party, []).append(InvoiceTotals(
                customer_id=party,
                currency=currency,
                invoices=len(invoices),
                billed=Money.sum((i.total for i in invoices), currency),
                paid=Money.sum((i.amount_paid for i in invoices), currency),
                remaining=Money.sum((i.amount_remaining for i in invoices), currency),
                overdue=overdue,
                overdue_buckets=buckets,
                billed_in_window=Money.sum(
                    (i.total for i in invoices if window_start <= i.tran_date <= as_of), currency
                ),
            ))
        return [found.get(str(i), []) for i in ids]

    return load
