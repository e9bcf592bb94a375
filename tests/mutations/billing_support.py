"""Helpers for the billing feedback tests: an ERP a day on from the seeded firm, a linked account, a poller
and a worker that drains ``crm_writeback`` items, and readers for the outbox and the CRM's change events."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import sqlalchemy as sa

from gateway.worker import Job, Worker
from mutations.billing_feedback import CRM_WRITEBACK, ErpChangePoller, crm_writeback
from mutations.deps import FlowDeps
from mutations.identity import account_canonical_id
from store.models import OutboxEvent
from store.repositories import CrossReferenceRepo
from subgraphs.crm.wire import ChangeEvent
from subgraphs.demo import Account
from tests.mutations.conftest import Flow

ERP_NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)  # the ERP sandbox's clock is set here
OUR_NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)  # the gateway's clock: after every ERP stamp


@dataclass
class Billing:
    flow: Flow
    deps: FlowDeps
    account: Account
    canonical_account: str
    poller: ErpChangePoller
    worker: Worker

    @property
    def customer(self) -> str:
        return str(self.account.erp_customer_id)

    async def erp_admin(self, path: str, body: dict[str, Any]) -> Any:
        transport = httpx.ASGITransport(app=self.flow.apps["erp"])
        async with httpx.AsyncClient(transport=transport, base_url="http://erp") as http:
            response = await http.post(f"/__sandbox/erp/{path}", json=body)
            response.raise_for_status()
            return response.json()

    async def invoice(self, total: float, *, eid: str, currency: str = "1") -> str:
        return await self.deps.erp.upsert(
            "invoice",
            eid,
            {
                "entity": {"id": self.customer},
                "tranDate": "2026-11-28",
                "dueDate": "2026-12-28",
                "total": total,
                "currency": {"id": currency},
                "tranId": f"INV-{eid}",
            },
        )

    async def pay(self, invoice: str, amount: float, *, eid: str, currency: str = "1") -> str:
        return await self.deps.erp.upsert(
            "customerPayment",
            eid,
            {
                "customer": {"id": self.customer},
                "tranDate": "2026-11-28",
                "payment": amount,
                "currency": {"id": currency},
                "apply": {"items": [{"doc": {"id": invoice}, "amount": amount}]},
            },
        )

    async def credit(self, invoice: str, amount: float, *, eid: str) -> str:
        return await self.deps.erp.upsert(
            "creditMemo",
            eid,
            {
                "entity": {"id": self.customer},
                "tranDate": "2026-11-28",
                "currency": {"id": "1"},
                "memo": "goodwill",
                "apply": {"items": [{"doc": {"id": invoice}, "amount": amount}]},
            },
        )

    async def billing_run(self, hours: float) -> list[str]:
        """Billable time on the customer's T&M project, then the ERP's billing run → its new invoices."""
        await self.deps.erp.upsert(
            "timeBill",
            f"billing-test-{hours}",
            {
                "employee": {"id": "3001"},
                "customer": {"id": tm_job(self.flow, self.account)},
                "tranDate": "2026-11-28",
                "hours": hours,
                "rate": 200,
                "isBillable": True,
            },
        )
        result = await self.erp_admin("billing/run", {"asOf": "2026-11-28"})
        assert result["errors"] == []
        return [str(i) for i in result["invoices"]]

    async def round(self) -> None:
        """One poll, then the queue drained: what the worker does every interval."""
        await self.worker.drain()

    async def outbox(self, key: str | None = None) -> list[OutboxEvent]:
        async with self.deps.sessionmaker() as session:
            query = sa.select(OutboxEvent).order_by(OutboxEvent.id)
            if key is not None:
                query = query.where(OutboxEvent.key == key)
            return list((await session.execute(query)).scalars())

    async def crm_events(self, after: int = 0) -> list[ChangeEvent]:
        return await self.deps.crm.events_since(after, limit=1000)

    async def invoice_record(self, canonical_id: str) -> dict[str, Any]:
        (record,) = await self.deps.crm.invoices_by_p2c_ids([canonical_id])
        return dict(record)

    async def account_record(self) -> dict[str, Any]:
        fields = "Id, Billed_To_Date__c, Open_Receivables__c, Overdue_Amount__c, Last_Payment_Date__c"
        (record,) = await self.deps.crm.query_all(
            f"SELECT {fields} FROM Account WHERE Id = '{self.account.crm_id}'"
        )
        return dict(record)


def usd_account(flow: Flow) -> Account:
    """A USD customer in the ERP with a time-and-materials project (billable time → the billing run)."""
    for project in flow.firm.projects:
        account = flow.firm.accounts[project.account_index]
        tm = project.billing_method == "TIME_AND_MATERIALS" and project.currency == "USD"
        if tm and account.erp_customer_id is not None and account.currency == "USD":
            return account
    raise AssertionError("the demo firm has a USD time-and-materials customer")


def tm_job(flow: Flow, account: Account) -> str:
    return next(
        str(p.erp_job_id)
        for p in flow.firm.projects
        if flow.firm.accounts[p.account_index] is account and p.billing_method == "TIME_AND_MATERIALS"
    )


async def billing(flow: Flow) -> Billing:
    deps = dataclasses.replace(flow.deps, clock=lambda: OUR_NOW)
    account = usd_account(flow)
    canonical = account_canonical_id(account.crm_id)
    async with deps.sessionmaker.begin() as session:
        xrefs = CrossReferenceRepo(session)
        await xrefs.link(canonical, "Account", "crm", account.crm_id)
        await xrefs.link(canonical, "Account", "erp", str(account.erp_customer_id))
    poller = ErpChangePoller(deps, start=ERP_NOW)

    async def writeback(job: Job) -> object:
        return await crm_writeback(deps, job.payload, correlation_id=job.correlation_id)

    worker = Worker(deps.sessionmaker, {CRM_WRITEBACK: writeback}, pollers=[poller], clock=lambda: OUR_NOW)
    result = Billing(flow, deps, account, canonical, poller, worker)
    await result.erp_admin("clock", {"set": ERP_NOW.strftime("%Y-%m-%dT%H:%M:%S")})
    return result
