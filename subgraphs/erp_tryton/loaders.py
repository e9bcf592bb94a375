"""Batch load functions for aiodataloader: one ``search_read`` by ids per batch, results in key order.

    loader = DataLoader(parties_loader(client, legal_entity="EU01", currency="EUR"))   # per request
    account = await loader.load("12")              # None when Tryton has no such party

Keys are Tryton record ids (strings, like NetSuite's internal ids). The graph's lists are keyed by the legal
entity the Tryton company books (its rows are labelled with it), one read per request whatever the keys:

    projects = DataLoader(project_list_loader(client))                        # [(Project, "tryton:<party>")]
    invoices = DataLoader(invoice_list_loader(client, projects.load))         # [(Invoice, "tryton:<party>")]
    await invoices.load("EU01")     # one search (paged) of issued invoices, each with its project
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from canonical.entities import Account, Invoice, Project
from canonical.money import Money
from subgraphs.erp.queries import InvoiceTotals
from subgraphs.erp_tryton.client import TrytonClient
from subgraphs.erp_tryton.mapping import (
    CHILD_FIELDS,
    INVOICE_FIELDS,
    ISSUED,
    LIST_INVOICE_FIELDS,
    PARTY_FIELDS,
    PAYMENT_LINE_FIELDS,
    PREFIX,
    TIMESHEET_LINK_FIELDS,
    WORK_FIELDS,
    account_from_party,
    invoice_from_row,
    invoice_project,
    listed_project,
    party_ref,
    project_from_work,
    timesheet_roots,
)
from subgraphs.erp_tryton.wire import Record

#: a project or an invoice as the graph lists it, with its party named ``tryton:<party id>``
ProjectRow = tuple[Project, str | None]
InvoiceRow = tuple[Invoice, str | None]
ProjectList = Callable[[str], Awaitable[list[ProjectRow]]]


def _ints(ids: Sequence[str]) -> list[int]:
    return sorted({int(i) for i in ids if str(i).isdigit()})


async def search_invoices(client: TrytonClient, domain: Sequence[Any], fields: Sequence[str]) -> list[Record]:
    """Customer invoices matching ``domain`` (every page), without the credit notes that only void one.

    Tryton's credit *with refund* posts a credit note, makes its move the original's ``cancel_move`` and
    cancels the original: the canonical invoice is then VOIDED, and the note is that void's counter-move —
    not a second, negative invoice (counted too, it took the invoice's amount off billed and paid twice).
    A credit note that voids nothing (a credit without refund) stays: a negative invoice. One more read,
    only when the rows hold a credit note."""
    wanted = [*fields, *(f for f in ("move", "total_amount") if f not in fields)]
    rows = await client.search_all("account.invoice", list(domain), wanted)
    notes = {
        int(r["move"]): int(r["id"])
        for r in rows
        if r.get("move") and Decimal(r.get("total_amount") or 0) < 0
    }
    if not notes:
        return rows
    voided = await client.search_read(
        "account.invoice", [["cancel_move", "in", sorted(notes)]], ["cancel_move"]
    )
    counter_moves = {notes[int(r["cancel_move"])] for r in voided}
    return [r for r in rows if int(r["id"]) not in counter_moves]


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
        rows = await search_invoices(
            client,
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
        rows = await search_invoices(
            client,
            [
                ["type", "=", "out"],
                ["party", "in", _ints(ids)],
                ["state", "in", ["posted", "paid"]],
                ["invoice_date", "<=", as_of],
            ],
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
            found.setdefault(party, []).append(
                InvoiceTotals(
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
                )
            )
        return [found.get(str(i), []) for i in ids]

    return load


def payment_lines_loader(client: TrytonClient) -> Callable[[Sequence[str]], Awaitable[list[list[Record]]]]:
    """The payment lines (``PAYMENT_LINE_FIELDS``) of each invoice id, in id order: one read per batch."""

    async def load(ids: Sequence[str]) -> list[list[Record]]:
        fields = [f"payment_lines.{f}" for f in PAYMENT_LINE_FIELDS]
        rows = await client.read("account.invoice", _ints(ids), fields)
        by_id = {str(r["id"]): r.get("payment_lines.") or [] for r in rows}
        return [sorted(by_id.get(str(i), []), key=lambda line: int(line["id"])) for i in ids]

    return load


def work_children_loader(client: TrytonClient) -> Callable[[Sequence[str]], Awaitable[list[list[Record]]]]:
    """The child works (``CHILD_FIELDS``) of each project work id: one search per batch."""

    async def load(ids: Sequence[str]) -> list[list[Record]]:
        rows = await client.search_all("project.work", [["parent", "in", _ints(ids)]], CHILD_FIELDS)
        by_parent: dict[str, list[Record]] = {}
        for row in rows:
            by_parent.setdefault(str(row["parent"]), []).append(row)
        return [by_parent.get(str(i), []) for i in ids]

    return load


def project_list_loader(client: TrytonClient) -> Callable[[Sequence[str]], Awaitable[list[list[ProjectRow]]]]:
    """Every project (``project.work`` of type project), in id order: one search (paged) per batch."""

    async def load(entities: Sequence[str]) -> list[list[ProjectRow]]:
        rows = await client.search_all("project.work", [["type", "=", "project"]], WORK_FIELDS)
        return [[(listed_project(r, legal_entity=e), party_ref(r)) for r in rows] for e in entities]

    return load


async def _linked(
    client: TrytonClient, rows: Sequence[Record], projects: Sequence[ProjectRow], legal_entity: str
) -> list[InvoiceRow]:
    """Invoices read with ``LIST_INVOICE_FIELDS``, each with the canonical id of the project it bills. Only
    invoices neither their description nor their lines tie to a project (a task's timesheets invoiced on
    their own) cost a second read: their timesheet lines, all in one search."""
    by_code = {p.code: p for p, _ in projects if p.code}
    by_work = {int(p.erp_id.removeprefix(PREFIX)): p for p, _ in projects if p.erp_id}
    found: Mapping[int, Project | None] = {int(r["id"]): invoice_project(r, by_code, by_work) for r in rows}
    loose = sorted(i for i, p in found.items() if p is None)
    if loose:
        lines = await client.search_all(
            "timesheet.line", [["invoice_line.invoice", "in", loose]], TIMESHEET_LINK_FIELDS
        )
        roots = timesheet_roots(lines)
        found = {i: p or by_work.get(roots.get(i, 0)) for i, p in found.items()}
    result: list[InvoiceRow] = []
    for row in rows:
        project = found[int(row["id"])]
        invoice = invoice_from_row(row, legal_entity=legal_entity, project_id=project.id if project else None)
        result.append((invoice, party_ref(row)))
    return result


def invoice_list_loader(
    client: TrytonClient, projects: ProjectList
) -> Callable[[Sequence[str]], Awaitable[list[list[InvoiceRow]]]]:
    """Every issued customer invoice, in id order, with its project (``projects``: the request's project list
    loader, so the list costs no second project read)."""

    async def load(entities: Sequence[str]) -> list[list[InvoiceRow]]:
        rows = await search_invoices(client, ISSUED, LIST_INVOICE_FIELDS)
        return [await _linked(client, rows, await projects(e), e) for e in entities]

    return load


def party_invoices_loader(
    client: TrytonClient, projects: ProjectList
) -> Callable[[Sequence[tuple[str, str]]], Awaitable[list[list[InvoiceRow]]]]:
    """Issued invoices of each ``(legal entity, party id)``, in id order: one search per batch."""

    async def load(keys: Sequence[tuple[str, str]]) -> list[list[InvoiceRow]]:
        parties = _ints([party for _e, party in keys])
        rows = await search_invoices(client, [*ISSUED, ["party", "in", parties]], LIST_INVOICE_FIELDS)
        by_party: dict[tuple[str, str], list[InvoiceRow]] = {}
        for entity in dict.fromkeys(e for e, _p in keys):
            for invoice, party in await _linked(client, rows, await projects(entity), entity):
                by_party.setdefault((entity, (party or "").removeprefix(PREFIX)), []).append((invoice, party))
        return [by_party.get((e, str(p)), []) for e, p in keys]

    return load
