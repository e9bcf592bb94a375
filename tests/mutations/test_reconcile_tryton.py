"""Reconciliation of a legal entity booked in Tryton (issue 9): EU01 on a real trytond, US01 on NetSuite.

The EU01 engagement goes the way an installation takes it: the won deal provisioned in Tryton, approved time
posted as timesheet lines, Tryton's invoice run posted, the Tryton billing poller's write-back to the CRM.
Then EU01 reconciles clean, each injected discrepancy is reported once by record (Tryton ids ``tryton:<id>``),
and a report over every entity holds both ERPs' records, each checked against its own ERP.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import strawberry
from strawberry.tools import merge_types

from canonical.errors import ConfigurationError
from canonical.principal import Principal, Role
from gateway.worker import Job, Worker
from mutations.billing.tryton import TrytonInvoicePoller
from mutations.billing_feedback import CRM_WRITEBACK, crm_writeback
from mutations.identity import account_canonical_id, provisioned_project_canonical_id
from mutations.provision import provision_engagement
from mutations.reconciliation import ReconciliationReport, reconcile
from mutations.reconciliation.model import (
    AMOUNT_DIFFERS,
    HOURS_DIFFER,
    NOT_POSTED,
    RECEIVABLES_DIFFER,
    WON_NOT_PROVISIONED,
)
from mutations.time_posting import PostingCaches
from resolvers.context import build_context
from resolvers.reconciliation import ReconciliationQuery
from store.repositories import CrossReferenceRepo
from subgraphs.erp_tryton.client import TrytonClient
from tests.mutations.conftest import ADMIN, Flow
from tests.mutations.posting_support import Posting
from tests.mutations.test_reconcile import sync_firm
from tests.subgraphs.erp_tryton.tryton_support import Server

TM = "006000000000032AAA"  # account 10, EU01, T&M, closes 2026-12-04
UNPROVISIONED = "006000000000059AAA"  # account 19, EU01, closes 2026-12-22, not won in the demo firm
DECEMBER = (date(2026, 12, 1), date(2026, 12, 31))
AS_OF = date(2026, 12, 31)  # the write-back's day, so the CRM's account figures are as of it
HOURS = (2.5, 3.0, 1.5)  # the third is posted after the invoice run: a line still editable in Tryton


@dataclasses.dataclass
class Booked:
    flow: Flow
    client: TrytonClient
    project: int  # Tryton project.work
    party: int
    entries: list[int]  # PSA entries, approved and posted
    invoice: int  # Tryton account.invoice, posted and written back
    total: Decimal
    crm_account: str

    async def run(
        self, entity: str | None = "EU01", period: tuple[date, date] = DECEMBER
    ) -> ReconciliationReport:
        deps = self.flow.deps
        return await reconcile(
            crm=deps.crm, psa=deps.psa, erp=deps.erp, sessionmaker=deps.sessionmaker, legal_entity=entity,
            period_start=period[0], period_end=period[1], as_of=AS_OF, tryton=self.client,
            erp_by_entity=deps.erp_by_entity,
        )  # fmt: skip

    async def line(self, entry: int) -> dict[str, Any]:
        (row,) = await self.client.search_read(
            "timesheet.line", [["description", "like", f"psa:{entry}:v%"]], ["duration", "invoice_line"]
        )
        return row


async def _writeback(flow: Flow) -> None:
    """The Tryton billing poller and the CRM write-back, as the worker runs them, on ``AS_OF``."""
    deps = dataclasses.replace(flow.deps, clock=lambda: datetime(2026, 12, 31, 12, tzinfo=UTC))

    async def writeback(job: Job) -> object:
        return await crm_writeback(deps, job.payload, correlation_id=job.correlation_id)

    poller = TrytonInvoicePoller(deps, lag=timedelta(0))
    await Worker(deps.sessionmaker, {CRM_WRITEBACK: writeback}, pollers=[poller], clock=deps.clock).drain()


async def book(flow: Flow, client: TrytonClient) -> Booked:
    flow.deps = dataclasses.replace(flow.deps, tryton=client, erp_by_entity={"EU01": "tryton"})
    await flow.deps.crm.update("Opportunity", TM, {"StageName": "Closed Won"})
    result = await provision_engagement(flow.deps, TM, principal=ADMIN, correlation_id="c-reconcile")
    assert result.status == "PROVISIONED", result
    crm_account = flow.firm.accounts[10].crm_id
    account = account_canonical_id(crm_account)
    async with flow.deps.sessionmaker.begin() as session:  # what backfill links on day one
        if not (await CrossReferenceRepo(session).system_ids_for("crm", [account])):
            await CrossReferenceRepo(session).link(account, "Account", "crm", crm_account)
    posting = Posting(flow, PostingCaches(ttl_s=0))
    started = await posting.psa_now()
    later = started + timedelta(hours=1)
    flow.deps = dataclasses.replace(flow.deps, clock=lambda: later)
    project = int(str(result.erp_job_id))
    psa_project = int(str(result.psa_project_id))
    task = int((await flow.deps.psa.task_assignments(psa_project))[0]["task"]["id"])
    user = next(e for e in flow.firm.employees if e.legal_entity == "EU01").psa_user_id
    (work,) = await client.read("project.work", [project], ["timesheet_start_date", "party"])
    start: date = work["timesheet_start_date"]
    assert DECEMBER[0] <= start and start + timedelta(days=3) <= DECEMBER[1], start

    async def post(n: int) -> int:
        body = {
            "project_id": psa_project,
            "task_id": task,
            "user_id": user,
            "hours": HOURS[n],
            "spent_date": (start + timedelta(days=n)).isoformat(),
            "notes": "reconcile",
        }
        entry = int((await flow.deps.psa.create_time_entry(body))["id"])
        await posting.approve(entry)
        report = await posting.round(started)
        assert report.failed == 0, report
        return entry

    entries = [await post(0), await post(1)]
    before = {r["id"] for r in await client.search_read("account.invoice", [], ["id"])}
    await client.button("project.work", "invoice", [project])
    (invoice,) = [
        r["id"] for r in await client.search_read("account.invoice", [], ["id"]) if r["id"] not in before
    ]
    # Tryton refuses an invoice dated after its own today: the first of the month is in the past already.
    await client.write("account.invoice", [invoice], {"invoice_date": DECEMBER[0]})
    await client.button("account.invoice", "post", [invoice])
    (posted,) = await client.read("account.invoice", [invoice], ["total_amount"])
    entries.append(await post(2))
    await _writeback(flow)
    return Booked(flow, client, project, int(work["party"]), entries, int(invoice),
                  Decimal(posted["total_amount"]).quantize(Decimal("0.01")), crm_account)  # fmt: skip


@pytest.fixture
async def booked(flow: Flow, tryton: Server) -> AsyncIterator[Booked]:
    tryton.reset()  # the sandboxes start afresh per test, their ids too: so does Tryton
    client = tryton.client()
    try:
        yield await book(flow, client)
    finally:
        await client.aclose()


def pairs(report: ReconciliationReport) -> list[tuple[str, str | None]]:
    return [(m.category, m.legal_entity) for m in report.mismatches]


async def test_a_synced_tryton_entity_reconciles_with_zero_mismatches(booked: Booked) -> None:
    report = await booked.run()

    assert report.mismatches == [], [m.as_dict() for m in report.mismatches]
    engagements, hours, invoices, receivables = (
        report.summaries[k] for k in ("engagements", "hours", "invoices", "receivables")
    )
    # Meaningful: each check found the Tryton side's records and they agreed.
    assert engagements.source_records == engagements.target_records == 1
    assert hours.source_records == hours.target_records == 3
    assert hours.source_total == hours.target_total == Decimal("7.00")
    assert (invoices.source_records, invoices.target_records, invoices.not_yet_synced) == (1, 1, 0)
    assert invoices.source_total == invoices.target_total == booked.total and invoices.unit == "EUR"
    assert receivables.source_records == receivables.target_records == 1
    assert receivables.source_total == receivables.target_total == booked.total
    assert receivables.not_yet_synced == 0


async def test_a_line_deleted_in_tryton_is_one_not_posted(booked: Booked) -> None:
    entry = booked.entries[2]
    await booked.client.delete("timesheet.line", [int((await booked.line(entry))["id"])])

    report = await booked.run()

    assert [(m.category, m.psa_id, m.legal_entity) for m in report.mismatches] == [
        (NOT_POSTED, str(entry), "EU01")
    ]
    (m,) = report.mismatches
    assert (m.expected, m.actual) == (Decimal("1.50"), 0)
    assert m.erp_id is not None and m.erp_id.startswith(f"psa:{entry}:v")  # the ledger says it was posted


async def test_hours_edited_in_tryton_are_one_hours_differ(booked: Booked) -> None:
    entry = booked.entries[2]
    line = await booked.line(entry)
    assert not line["invoice_line"]
    await booked.client.write("timesheet.line", [int(line["id"])], {"duration": timedelta(hours=4)})

    report = await booked.run()

    assert [(m.category, m.psa_id, m.erp_id, m.expected, m.actual) for m in report.mismatches] == [
        (HOURS_DIFFER, str(entry), f"tryton:{line['id']}", Decimal("1.50"), Decimal("4.00"))
    ]


async def test_a_changed_crm_invoice_amount_is_one_amount_differs(booked: Booked) -> None:
    crm = booked.flow.deps.crm
    (record,) = await crm.invoices_by_p2c_ids([f"tryton:{booked.invoice}"])
    await crm.update("Invoice__c", str(record["Id"]), {"Amount__c": float(booked.total + 100)})

    report = await booked.run()

    assert [(m.category, m.crm_id, m.erp_id, m.expected, m.actual) for m in report.mismatches] == [
        (AMOUNT_DIFFERS, str(record["Id"]), f"tryton:{booked.invoice}", booked.total, booked.total + 100)
    ]
    assert report.mismatches[0].legal_entity == "EU01" and report.mismatches[0].currency == "EUR"


async def test_open_receivables_off_in_the_crm_is_one_receivables_differ(booked: Booked) -> None:
    crm = booked.flow.deps.crm
    await crm.update("Account", booked.crm_account, {"Open_Receivables__c": float(booked.total + 250)})

    report = await booked.run()

    assert [(m.category, m.crm_id, m.erp_id, m.expected, m.actual) for m in report.mismatches] == [
        (RECEIVABLES_DIFFER, booked.crm_account, f"tryton:{booked.party}", booked.total, booked.total + 250)
    ]


async def test_a_won_deal_without_a_tryton_project_is_one_won_not_provisioned(booked: Booked) -> None:
    await booked.flow.deps.crm.update("Opportunity", UNPROVISIONED, {"StageName": "Closed Won"})

    report = await booked.run()

    assert [(m.category, m.crm_id, m.canonical_id, m.legal_entity) for m in report.mismatches] == [
        (WON_NOT_PROVISIONED, UNPROVISIONED, provisioned_project_canonical_id(UNPROVISIONED), "EU01")
    ]
    assert report.summaries["engagements"].source_records == 2


async def test_a_tryton_entity_without_a_tryton_connector_is_a_configuration_error(flow: Flow) -> None:
    deps = flow.deps
    with pytest.raises(ConfigurationError):
        await reconcile(
            crm=deps.crm, psa=deps.psa, erp=deps.erp, sessionmaker=deps.sessionmaker, legal_entity="EU01",
            period_start=DECEMBER[0], period_end=DECEMBER[1], erp_by_entity={"EU01": "tryton"},
        )  # fmt: skip


# -- every entity: both ERPs, each record against its own -------------------------------------------------

QUERY = """
query ($filter: ReconciliationFilter!) {
  reconciliation(filter: $filter) { clean mismatches { category legalEntity psaId erpId } }
}
"""


async def test_every_entity_holds_both_erps_records_each_against_its_own(flow: Flow, tryton: Server) -> None:
    # NetSuite's day-one history synced (backfill, write-back) on Tryton's write-back day; then in December
    # EU01's engagement on Tryton and a US01 entry posted to NetSuite by the same posting worker.
    flow.deps = dataclasses.replace(flow.deps, clock=lambda: datetime(2026, 12, 31, 12, tzinfo=UTC))
    await sync_firm(flow)
    tryton.reset()
    async with tryton.client() as client:
        booked = await book(flow, client)
        posting = Posting(flow, PostingCaches(ttl_s=0))
        started = await posting.psa_now()
        project = posting.project(entity="US01")
        us = int((await posting.entry(project, hours=4.0, on=date(2026, 12, 2)))["id"])
        await posting.approve(us)
        assert (await posting.round(started)).failed == 0
        (bill,) = await posting.time_bills(us)
        assert bill["approvalstatus"] == "approved"

        clean = await booked.run(None)
        assert clean.mismatches == [], [m.as_dict() for m in clean.mismatches]
        hours = clean.summaries["hours"]
        # Both ERPs' time, each matched in its own ERP: 7 h on Tryton lines, 4 h on a NetSuite bill.
        assert (hours.source_records, hours.target_records) == (4, 4)
        assert hours.source_total == hours.target_total == Decimal("11.00")
        assert clean.summaries["invoices"].source_records == 1  # Tryton's; NetSuite has none in December

        await flow.deps.erp.delete("timeBill", str(bill["id"]))
        eu = booked.entries[2]
        await client.delete("timesheet.line", [int((await booked.line(eu))["id"])])

        report = await booked.run(None)
        assert sorted((m.category, m.legal_entity, m.psa_id) for m in report.mismatches) == [
            (NOT_POSTED, "EU01", str(eu)),
            (NOT_POSTED, "US01", str(us)),
        ]
        assert (await booked.run("US01")).mismatches == [
            m for m in report.mismatches if m.legal_entity == "US01"
        ]

        schema = strawberry.Schema(query=merge_types("Query", (ReconciliationQuery,)))
        auditor = Principal(subject="t:auditor", roles=frozenset({Role.AUDITOR}), all_entities=True)
        deps = flow.deps
        context = build_context(
            principal=auditor, crm=deps.crm, psa=deps.psa, erp=deps.erp, sessionmaker=deps.sessionmaker,
            as_of=AS_OF, tryton=client, erp_by_entity=deps.erp_by_entity,
        )  # fmt: skip
        variables = {"filter": {"from": DECEMBER[0].isoformat(), "to": DECEMBER[1].isoformat()}}
        answer = await schema.execute(QUERY, variable_values=variables, context_value=context)
    assert answer.errors is None, answer.errors
    assert answer.data is not None
    found = answer.data["reconciliation"]["mismatches"]
    assert sorted((m["legalEntity"], m["psaId"]) for m in found) == [("EU01", str(eu)), ("US01", str(us))]
