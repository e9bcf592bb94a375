"""Invoice and payment status from a real Tryton back to the CRM and subscribers (EU01 on Tryton).

The NetSuite billing-feedback assertions where they apply: one ``invoice.status_changed`` per real change,
``payment.received`` per payment, the CRM invoice and the account's billing fields written once per change,
a round with nothing new writes nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.worker import Job, Worker
from mutations.billing.tryton import TrytonInvoicePoller
from mutations.billing_feedback import CRM_WRITEBACK, crm_writeback
from mutations.deps import FlowDeps
from mutations.identity import account_canonical_id
from store.models import OutboxEvent
from store.repositories import CrossReferenceRepo
from subgraphs.erp_tryton.client import TrytonClient
from tests.mutations.conftest import Flow
from tests.mutations.tryton_flow import (
    credit_with_refund,
    log_and_invoice,
    post_invoice,
    use_tryton,
    win_and_provision,
)
from tests.mutations.tryton_graph_support import graph_query
from tests.subgraphs.erp_tryton.tryton_support import Server

TM = "006000000000032AAA"  # account 10, EU01, T&M
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PAYMENTS = """query($r: [_Any!]!) { _entities(representations: $r) { ... on Invoice { status
  amountPaid { amount currency }
  payments { id date accountId reference amount { amount currency }
    applications { invoiceId amount { amount currency } } } } } }"""


@dataclasses.dataclass
class Feedback:
    flow: Flow
    deps: FlowDeps
    client: TrytonClient
    project: int
    account: str  # canonical
    crm_account: str
    worker: Worker

    async def bill(self, spent: float) -> int:
        """Time on the project, Tryton's invoice run, the invoice posted → its id."""
        return await log_and_invoice(self.client, self.project, spent)

    async def pay(self, invoice: int, amount: str) -> None:
        method = await self.client.payment_method()
        (row,) = await self.client.read(
            "account.invoice", [invoice], ["currency", "company", "amount_to_pay"]
        )
        start = {
            "amount": Decimal(amount),
            "payment_method": method,
            "date": date(2026, 12, 1),
            "description": "bank transfer",
            "currency": row["currency"],
            "company": row["company"],
        }
        states: list[tuple[str, dict[str, Any]]] = [("choice", {"start": start})]
        if Decimal(amount) < row["amount_to_pay"]:  # partial: Tryton asks what to do with the rest
            ask = {
                "type": "partial",
                "amount": Decimal(amount),
                "lines": [],
                "payment_lines": [],
                "company": row["company"],
                "invoice": invoice,
                "currency": row["currency"],
                "amount_writeoff": Decimal(0),
            }
            states = [("choice", {"start": start}), ("pay", {"start": start, "ask": ask})]
        await self.client.wizard("account.invoice.pay", "account.invoice", [invoice], states)

    async def outbox(self, after: int = 0) -> list[OutboxEvent]:
        async with self.deps.sessionmaker() as session:
            query = sa.select(OutboxEvent).where(OutboxEvent.id > after).order_by(OutboxEvent.id)
            return list((await session.execute(query)).scalars())


@pytest.fixture
async def feedback(flow: Flow, tryton: Server) -> AsyncIterator[Feedback]:
    client = use_tryton(flow, tryton)
    flow.deps = deps = dataclasses.replace(flow.deps, clock=lambda: NOW)
    result = await win_and_provision(flow, TM, "c-billing")
    crm_account = flow.firm.accounts[10].crm_id
    account = account_canonical_id(crm_account)
    async with deps.sessionmaker.begin() as session:
        if (await CrossReferenceRepo(session).system_ids_for("crm", [account])).get(account) is None:
            await CrossReferenceRepo(session).link(account, "Account", "crm", crm_account)

    async def writeback(job: Job) -> object:
        return await crm_writeback(deps, job.payload, correlation_id=job.correlation_id)

    worker = Worker(
        deps.sessionmaker,
        {CRM_WRITEBACK: writeback},
        pollers=[TrytonInvoicePoller(deps, lag=timedelta(0))],
        clock=lambda: NOW,
    )
    yield Feedback(flow, deps, client, int(str(result.erp_job_id)), account, crm_account, worker)
    await client.aclose()


async def test_invoice_and_payments_reach_the_crm_once_per_change(feedback: Feedback) -> None:
    f = feedback
    (project,) = await f.client.read("project.work", [f.project], ["list_price"])
    total = (3 * project["list_price"]).quantize(Decimal("0.01"))  # 3 h at the project's rate
    invoice = await f.bill(3)
    await f.worker.drain()

    (posted,) = await f.outbox()
    assert posted.topic == "invoice.status_changed" and posted.legal_entity == "EU01"
    state = posted.payload["invoice"]
    assert (state["status"], state["previousStatus"]) == ("OPEN", None)
    assert state["total"] == {"amount": str(total), "currency": "EUR"}
    assert posted.payload["account_id"] == f.account
    (record,) = await f.deps.crm.invoices_by_p2c_ids([f"tryton:{invoice}"])
    assert (record["Status__c"], record["Name"]) == ("OPEN", "INV/2026/1")
    account = (
        await f.deps.crm.query_all(
            f"SELECT Id, Open_Receivables__c FROM Account WHERE Id = '{f.crm_account}'"
        )
    )[0]
    assert Decimal(str(account["Open_Receivables__c"])) == total

    await f.worker.drain()  # nothing changed in Tryton: nothing new anywhere
    assert len(await f.outbox()) == 1

    await f.pay(invoice, "200.00")
    await f.worker.drain()
    events = await f.outbox(posted.id)
    assert [e.topic for e in events] == ["payment.received", "invoice.status_changed"]
    assert events[0].payload["payment"]["amount"] == {"amount": "200.00", "currency": "EUR"}
    assert (events[1].payload["invoice"]["status"], events[1].payload["invoice"]["previousStatus"]) == (
        "PARTIALLY_PAID",
        "OPEN",
    )
    account = (
        await f.deps.crm.query_all(
            f"SELECT Id, Open_Receivables__c, Last_Payment_Date__c FROM Account WHERE Id = '{f.crm_account}'"
        )
    )[0]
    assert Decimal(str(account["Open_Receivables__c"])) == total - 200
    assert str(account["Last_Payment_Date__c"]) == "2026-12-01"

    await f.pay(invoice, str(total - 200))
    await f.worker.drain()
    last = (await f.outbox(events[-1].id))[-1]
    assert last.payload["invoice"]["status"] == "PAID"
    (record,) = await f.deps.crm.invoices_by_p2c_ids([f"tryton:{invoice}"])
    assert (record["Status__c"], record["Legal_Entity__c"]) == ("PAID", "EU01")
    assert record["Account__c"] == f.crm_account
    assert Decimal(str(record["Amount_Remaining__c"])) == 0 and Decimal(str(record["Amount__c"])) == total

    # the graph shows the invoice's payments from Tryton, under the ids the events carried
    found = await graph_query(
        f.flow, f.client, PAYMENTS, r=[{"__typename": "Invoice", "id": f"tryton:{invoice}"}]
    )
    (node,) = found["_entities"]
    assert node["status"] == "PAID" and node["amountPaid"] == {"amount": str(total), "currency": "EUR"}
    received = [e.payload["payment"] for e in await f.outbox() if e.topic == "payment.received"]
    paid = [{"amount": "200.00", "currency": "EUR"}, {"amount": str(total - 200), "currency": "EUR"}]
    assert [(p["id"], p["amount"]) for p in node["payments"]] == [(r["id"], r["amount"]) for r in received]
    assert [p["amount"] for p in node["payments"]] == paid
    for p in node["payments"]:
        assert p["date"] == "2026-12-01" and p["accountId"] == f.account and p["reference"]
        assert p["applications"] == [{"invoiceId": f"tryton:{invoice}", "amount": p["amount"]}]


async def test_a_draft_invoice_stays_out_of_the_crm_until_it_is_posted(feedback: Feedback) -> None:
    f = feedback
    draft = await log_and_invoice(f.client, f.project, 2, post=False)
    await f.worker.drain()
    assert await f.outbox() == []  # the accountant's work in progress: owed by nobody yet
    assert await f.deps.crm.invoices_by_p2c_ids([f"tryton:{draft}"]) == []

    await post_invoice(f.client, draft)
    await f.worker.drain()
    (posted,) = await f.outbox()
    assert posted.topic == "invoice.status_changed" and posted.payload["invoice"]["status"] == "OPEN"
    (record,) = await f.deps.crm.invoices_by_p2c_ids([f"tryton:{draft}"])
    assert record["Status__c"] == "OPEN"


async def test_an_invoice_credited_with_refund_is_voided_in_the_crm_and_its_credit_note_stays_out(
    feedback: Feedback,
) -> None:
    f = feedback
    invoice = await f.bill(2)
    await f.worker.drain()
    (opened,) = await f.outbox()

    await credit_with_refund(f.client, invoice)
    await f.worker.drain()

    events = await f.outbox(opened.id)
    assert [(e.topic, e.payload["invoice"]["id"]) for e in events] == [
        ("invoice.status_changed", f"tryton:{invoice}")  # nothing about the credit note
    ]
    state = events[0].payload["invoice"]
    assert (state["status"], state["previousStatus"]) == ("VOIDED", "OPEN")
    assert state["amountRemaining"]["amount"] == "0.00"
    (note,) = await f.client.search_read("account.invoice", [["cancel_move", "!=", None]], ["cancel_move"])
    notes = await f.client.search_read("account.invoice", [["move", "=", note["cancel_move"]]], ["id"])
    assert await f.deps.crm.invoices_by_p2c_ids([f"tryton:{n['id']}" for n in notes]) == []
    (record,) = await f.deps.crm.invoices_by_p2c_ids([f"tryton:{invoice}"])
    assert record["Status__c"] == "VOIDED"
    account = (
        await f.deps.crm.query_all(
            f"SELECT Id, Open_Receivables__c FROM Account WHERE Id = '{f.crm_account}'"
        )
    )[0]
    assert Decimal(str(account["Open_Receivables__c"])) == 0


async def test_the_due_date_is_the_payment_terms(feedback: Feedback) -> None:
    invoice = await feedback.bill(1)
    await feedback.worker.drain()

    (event,) = [e for e in await feedback.outbox() if e.payload["invoice"]["erpId"] == str(invoice)]
    assert (event.payload["invoice"]["tranDate"], event.payload["invoice"]["dueDate"]) == (
        "2026-11-30",
        "2026-12-30",  # the party's NET30 term, which provisioning set
    )
