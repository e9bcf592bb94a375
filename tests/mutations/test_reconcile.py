"""Reconciliation (issue 8): a synced demo firm reconciles clean; each injected discrepancy is reported
exactly, by record; the reads stay a handful of requests per system.

"Synced" is how an installation gets there: backfill, then the billing write-back of every ERP invoice
(the billing poller anchored before the firm's history, its queue drained)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import strawberry
from graphql import ExecutionResult
from strawberry.tools import merge_types

from canonical.errors import ValidationFailed
from canonical.principal import Principal, Role
from gateway.worker import Job, Worker
from mutations.backfill import backfill
from mutations.billing_feedback import CRM_WRITEBACK, ErpChangePoller, crm_writeback
from mutations.reconciliation import ReconciliationReport, reconcile
from mutations.reconciliation.model import (
    AMOUNT_DIFFERS,
    NOT_POSTED,
    PENDING_SYNC,
    RECEIVABLES_DIFFER,
)
from resolvers.context import build_context
from resolvers.reconciliation import ReconciliationQuery
from subgraphs.demo import Invoice, TimeEntry
from tests.mutations.conftest import Flow

OCTOBER = (date(2026, 10, 1), date(2026, 10, 31))
AS_OF = date(2026, 11, 27)  # the flow fixture's clock: the day the write-back computed the account fields


async def sync_firm(flow: Flow) -> None:
    deps = flow.deps
    await backfill(crm=deps.crm, psa=deps.psa, erp=deps.erp, sessionmaker=deps.sessionmaker)
    poller = ErpChangePoller(deps, start=datetime(2000, 1, 1, tzinfo=UTC))

    async def writeback(job: Job) -> object:
        return await crm_writeback(deps, job.payload, correlation_id=job.correlation_id)

    worker = Worker(deps.sessionmaker, {CRM_WRITEBACK: writeback}, pollers=[poller], clock=deps.clock)
    await worker.drain()


async def run(flow: Flow, entity: str | None = "US01") -> ReconciliationReport:
    deps = flow.deps
    return await reconcile(
        crm=deps.crm,
        psa=deps.psa,
        erp=deps.erp,
        sessionmaker=deps.sessionmaker,
        legal_entity=entity,
        period_start=OCTOBER[0],
        period_end=OCTOBER[1],
        as_of=AS_OF,
    )


def entity_of_project(flow: Flow, code: str) -> str:
    return flow.firm.accounts[flow.firm.project(code).account_index].legal_entity


def october_entry(flow: Flow, entity: str = "US01") -> TimeEntry:
    """A day-one posted, approved entry of October."""
    return next(
        t
        for t in flow.firm.time_entries
        if t.erp_time_bill_id is not None
        and OCTOBER[0] <= t.spent_date <= OCTOBER[1]
        and entity_of_project(flow, t.project_code) == entity
    )


def october_invoice(flow: Flow, entity: str = "US01") -> Invoice:
    return next(
        i
        for i in flow.firm.invoices
        if OCTOBER[0] <= i.tran_date <= OCTOBER[1]
        and flow.firm.accounts[i.account_index].legal_entity == entity
    )


async def test_clean_demo_firm_reconciles_with_zero_mismatches(flow: Flow) -> None:
    await sync_firm(flow)
    for entity in ("US01", "EU01", None):
        report = await run(flow, entity)
        assert report.mismatches == [], [m.as_dict() for m in report.mismatches]
        assert report.clean and set(report.counts().values()) == {0}
        hours, invoices, receivables = (report.summaries[k] for k in ("hours", "invoices", "receivables"))
        # Meaningful: there was something on both sides, it agreed, and nothing was left unsynced.
        assert hours.source_records > 0 and hours.source_total == hours.target_total
        assert invoices.source_records > 0 and invoices.source_total == invoices.target_total
        assert receivables.source_total == receivables.target_total
        assert invoices.not_yet_synced == 0 and receivables.not_yet_synced == 0


async def test_a_firm_never_written_back_is_not_yet_synced_not_mismatched(flow: Flow) -> None:
    deps = flow.deps
    await backfill(crm=deps.crm, psa=deps.psa, erp=deps.erp, sessionmaker=deps.sessionmaker)
    report = await run(flow)
    assert report.mismatches == []
    assert report.summaries["invoices"].not_yet_synced > 0
    assert report.summaries["receivables"].not_yet_synced > 0
    assert report.summaries["invoices"].target_records == 0


async def test_a_deleted_erp_time_bill_is_one_not_posted_naming_the_entry(flow: Flow) -> None:
    await sync_firm(flow)
    entry = october_entry(flow)
    await flow.deps.erp.delete("timeBill", str(entry.erp_time_bill_id))
    report = await run(flow)
    assert [(m.category, m.psa_id) for m in report.mismatches] == [(NOT_POSTED, str(entry.psa_id))]
    (m,) = report.mismatches
    assert m.expected == entry.hours and m.actual == 0 and m.legal_entity == "US01"
    assert report.summaries["hours"].source_total - report.summaries["hours"].target_total == entry.hours


async def test_a_changed_erp_invoice_amount_is_one_amount_differs(flow: Flow) -> None:
    await sync_firm(flow)
    invoice = october_invoice(flow)
    await flow.deps.erp.update("invoice", str(invoice.erp_id), {"total": float(invoice.total + 100)})
    report = await run(flow)
    differs = [m for m in report.mismatches if m.category == AMOUNT_DIFFERS]
    assert [(m.erp_id, m.expected, m.actual) for m in differs] == [
        (str(invoice.erp_id), invoice.total + 100, invoice.total)
    ]
    assert differs[0].reason == PENDING_SYNC  # the ERP changed after the poller last saw it
    assert differs[0].crm_id is not None
    # The customer's receivables moved with it (the ERP recomputes what remains): same record, same cause.
    others = [m for m in report.mismatches if m.category != AMOUNT_DIFFERS]
    customer = str(flow.firm.accounts[invoice.account_index].erp_customer_id)
    assert all(m.category == RECEIVABLES_DIFFER and m.erp_id == customer for m in others)


async def test_an_edited_crm_open_receivables_is_one_receivables_differ(flow: Flow) -> None:
    await sync_firm(flow)
    invoice = october_invoice(flow)
    account = flow.firm.accounts[invoice.account_index]
    (record,) = await flow.deps.crm.query_all(
        f"SELECT Id, Open_Receivables__c FROM Account WHERE Id = '{account.crm_id}'"
    )
    before = Decimal(str(record["Open_Receivables__c"]))
    await flow.deps.crm.update("Account", account.crm_id, {"Open_Receivables__c": float(before + 250)})
    report = await run(flow)
    assert [(m.category, m.crm_id, m.expected, m.actual) for m in report.mismatches] == [
        (RECEIVABLES_DIFFER, account.crm_id, before, before + 250)
    ]
    assert report.mismatches[0].reason is None  # nothing the gateway knows explains it


async def test_upstream_requests_stay_a_handful_per_system(flow: Flow) -> None:
    await sync_firm(flow)
    await run(flow)  # warm the ERP's reference data cache, as a running gateway has it
    await flow.reset_counters()
    await run(flow, None)
    served = {s: (await flow.counters(s))["by_endpoint"] for s in ("crm", "psa", "erp")}
    totals = {s: sum(int(v) for v in counts.values()) for s, counts in served.items()}
    assert totals["crm"] <= 4, served["crm"]  # accounts, opportunities, invoices (+ a token at most)
    assert totals["psa"] <= 3, served["psa"]  # time entries, users
    assert totals["erp"] <= 6, served["erp"]  # jobs, time bills, invoices, totals (+ a token at most)


async def test_a_bad_period_is_refused_before_any_read(flow: Flow) -> None:
    deps = flow.deps
    with pytest.raises(ValidationFailed):
        await reconcile(
            crm=deps.crm,
            psa=deps.psa,
            erp=deps.erp,
            sessionmaker=deps.sessionmaker,
            legal_entity="US01",
            period_start=date(2026, 10, 31),
            period_end=date(2026, 10, 1),
        )


# -- GraphQL: reconciliation(filter) --------------------------------------------------------------------

QUERY = """
query ($filter: ReconciliationFilter!) {
  reconciliation(filter: $filter) {
    legalEntities from to clean
    counts { category count }
    checks { check sourceRecords sourceTotal targetTotal notYetSynced }
    mismatches { category legalEntity crmId erpId psaId expected actual reason detail }
  }
}
"""


async def graphql(flow: Flow, principal: Principal, **filter: object) -> ExecutionResult:
    schema = strawberry.Schema(query=merge_types("Query", (ReconciliationQuery,)))
    deps = flow.deps
    context = build_context(
        principal=principal,
        crm=deps.crm,
        psa=deps.psa,
        erp=deps.erp,
        sessionmaker=deps.sessionmaker,
        as_of=date(2026, 11, 27),
    )
    variables = {"filter": {"from": "2026-10-01", "to": "2026-10-31", **filter}}
    return await schema.execute(QUERY, variable_values=variables, context_value=context)


def who(role: Role, *entities: str) -> Principal:
    if entities == ("*",):
        return Principal(subject=f"t:{role}", roles=frozenset({role}), all_entities=True)
    return Principal(subject=f"t:{role}", roles=frozenset({role}), legal_entities=frozenset(entities))


def code_of(result: ExecutionResult) -> str:
    assert result.errors
    error = result.errors[0].original_error
    return str(getattr(error, "code", ""))


async def test_graphql_reconciliation_needs_finance_audit_or_admin(flow: Flow) -> None:
    await sync_firm(flow)
    assert code_of(await graphql(flow, who(Role.SALES, "*"))) == "FORBIDDEN"
    assert code_of(await graphql(flow, who(Role.DELIVERY, "*"))) == "FORBIDDEN"
    for role in (Role.FINANCE, Role.AUDITOR, Role.INTEGRATION_ADMIN):
        result = await graphql(flow, who(role, "*"), legalEntity="US01")
        assert result.errors is None, result.errors
        assert result.data is not None and result.data["reconciliation"]["clean"] is True


async def test_graphql_a_us01_principal_never_sees_eu01(flow: Flow) -> None:
    await sync_firm(flow)
    # One discrepancy in each entity: the US01 caller sees its own, never the other.
    us, eu = october_entry(flow, "US01"), october_entry(flow, "EU01")
    for entry in (us, eu):
        await flow.deps.erp.delete("timeBill", str(entry.erp_time_bill_id))
    finance_us = who(Role.FINANCE, "US01")
    result = await graphql(flow, finance_us)
    assert result.errors is None and result.data is not None
    report = result.data["reconciliation"]
    assert report["legalEntities"] == ["US01"]
    assert [(m["category"], m["psaId"], m["legalEntity"]) for m in report["mismatches"]] == [
        (NOT_POSTED, str(us.psa_id), "US01")
    ]
    assert code_of(await graphql(flow, finance_us, legalEntity="EU01")) == "FORBIDDEN"

    everyone = await graphql(flow, who(Role.AUDITOR, "*"), categories=["NOT_POSTED"])
    assert everyone.data is not None
    assert {m["psaId"] for m in everyone.data["reconciliation"]["mismatches"]} == {
        str(us.psa_id),
        str(eu.psa_id),
    }
    assert code_of(await graphql(flow, finance_us, categories=["NOPE"])) == "VALIDATION_FAILED"


async def test_a_won_deal_reopened_in_the_crm_is_one_provisioned_not_won(flow: Flow) -> None:
    await sync_firm(flow)
    project = next(
        p
        for p in flow.firm.projects
        if flow.firm.accounts[p.account_index].legal_entity == "US01"
        and OCTOBER[0]
        <= next(o for o in flow.firm.opportunities if o.crm_id == p.opportunity_crm_id).close_date
        <= OCTOBER[1]
    )
    await flow.deps.crm.update("Opportunity", project.opportunity_crm_id, {"StageName": "Negotiation/Review"})
    report = await run(flow)
    assert [(m.category, m.crm_id, m.erp_id) for m in report.mismatches] == [
        ("PROVISIONED_NOT_WON", project.opportunity_crm_id, str(project.erp_job_id))
    ]
