"""Shared steps of the Tryton flow tests: a deal provisioned into the module's real Tryton (EU01), and
time logged and invoiced there the way a Tryton user does it."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

from mutations.provision import ProvisionResult, provision_engagement
from mutations.time_posting import PostingCaches
from subgraphs.erp_tryton.client import TrytonClient
from tests.mutations.conftest import ADMIN, Flow
from tests.mutations.posting_support import Posting
from tests.subgraphs.erp_tryton.tryton_support import Server

INVOICE_DATE = date(2026, 11, 30)  # Tryton refuses invoice dates after its own today


def use_tryton(flow: Flow, server: Server) -> TrytonClient:
    """Tryton back to its built state, EU01 booked there; the client (the caller closes it)."""
    server.reset()  # the PSA sandbox starts afresh per test, its ids too: so does Tryton
    client = server.client()
    flow.deps = dataclasses.replace(flow.deps, tryton=client, erp_by_entity={"EU01": "tryton"})
    return client


def tryton_of(flow: Flow) -> TrytonClient:
    assert flow.deps.tryton is not None, "no entity books in Tryton: use the on_tryton fixture"
    return flow.deps.tryton


async def win_and_provision(flow: Flow, opportunity: str, correlation_id: str) -> ProvisionResult:
    await flow.deps.crm.update("Opportunity", opportunity, {"StageName": "Closed Won"})
    result = await provision_engagement(
        flow.deps, opportunity, principal=ADMIN, correlation_id=correlation_id
    )
    assert result.status == "PROVISIONED", result
    return result


async def provisioned_for_posting(
    flow: Flow, opportunity: str, correlation_id: str
) -> tuple[ProvisionResult, Posting]:
    """The deal provisioned and the posting harness on it, the flows' clock an hour past the PSA's (the
    poller's lag window then covers what the test logs)."""
    result = await win_and_provision(flow, opportunity, correlation_id)
    posting = Posting(flow, PostingCaches(ttl_s=0))
    later = await posting.psa_now() + timedelta(hours=1)
    flow.deps = dataclasses.replace(flow.deps, clock=lambda: later)
    return result, posting


async def log_and_invoice(client: TrytonClient, project: int, hours: float, *, post: bool = True) -> int:
    """``hours`` on the project's first timesheet work, Tryton's invoice run, the new invoice posted (or
    left a draft) → its id."""
    (row,) = await client.read("project.work", [project], ["timesheet_works", "timesheet_start_date"])
    employee = next(iter((await client.employees()).values()))
    line = {
        "work": row["timesheet_works"][0],
        "employee": employee,
        "date": row["timesheet_start_date"],
        "duration": timedelta(hours=hours),
    }
    await client.create("timesheet.line", [line])
    before = {r["id"] for r in await client.search_read("account.invoice", [], ["id"])}
    await client.button("project.work", "invoice", [project])
    (invoice,) = [
        r["id"] for r in await client.search_read("account.invoice", [], ["id"]) if r["id"] not in before
    ]
    if post:
        await post_invoice(client, int(invoice))
    return int(invoice)


async def post_invoice(client: TrytonClient, invoice: int) -> None:
    await client.write("account.invoice", [invoice], {"invoice_date": INVOICE_DATE})
    await client.button("account.invoice", "post", [invoice])


async def credit_with_refund(client: TrytonClient, invoice: int) -> None:
    """Tryton's Credit wizard with refund on a posted invoice: a credit note posted as the invoice's cancel
    move, the invoice cancelled."""
    start = {"with_refund": True, "with_refund_allowed": True, "invoice_date": INVOICE_DATE}
    await client.wizard(
        "account.invoice.credit", "account.invoice", [invoice], [("credit", {"start": start})]
    )
