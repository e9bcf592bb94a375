"""Batch load functions for aiodataloader: one SuiteQL per chunk of keys, results in key order.

    loader = DataLoader(customers_loader(client))       # per request, never shared between users
    account = await loader.load("1042")                  # None when NetSuite has no such customer

Keys are NetSuite internal ids (strings). Aggregates are keyed by customer id and computed as of the date
the loader was built with.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import date

from canonical.entities import Account, Invoice, Project
from subgraphs.erp.client import ErpClient
from subgraphs.erp.mapping import account_from_customer, invoice_from_record, project_from_job
from subgraphs.erp.queries import InvoiceTotals


def customers_loader(client: ErpClient) -> Callable[[Sequence[str]], Awaitable[list[Account | None]]]:
    async def load(ids: Sequence[str]) -> list[Account | None]:
        rows = await client.customers_by_ids(ids)
        reference = await client.reference_data()
        return [account_from_customer(rows[i], reference) if i in rows else None for i in ids]

    return load


def jobs_loader(client: ErpClient) -> Callable[[Sequence[str]], Awaitable[list[Project | None]]]:
    async def load(ids: Sequence[str]) -> list[Project | None]:
        rows = await client.jobs_by_ids(ids)
        reference = await client.reference_data()
        return [project_from_job(rows[i], reference) if i in rows else None for i in ids]

    return load


def invoices_by_customer_loader(
    client: ErpClient,
) -> Callable[[Sequence[str]], Awaitable[list[list[Invoice]]]]:
    async def load(customer_ids: Sequence[str]) -> list[list[Invoice]]:
        rows = await client.invoices_by_customer_ids(customer_ids)
        reference = await client.reference_data()
        return [[invoice_from_record(r, reference) for r in rows.get(i, [])] for i in customer_ids]

    return load


def invoice_totals_loader(
    client: ErpClient, as_of: date, window_start: date | None = None
) -> Callable[[Sequence[str]], Awaitable[list[list[InvoiceTotals]]]]:
    """Totals as of ``as_of``, with billing from ``window_start`` (default: the 90 days to ``as_of``)."""

    async def load(customer_ids: Sequence[str]) -> list[list[InvoiceTotals]]:
        totals = await client.invoice_totals_by_customer(customer_ids, as_of, window_start)
        return [totals.get(i, []) for i in customer_ids]

    return load
