"""The bulk reads a reconciliation compares: each system once, concurrently, filtered by period and entity.

Upstream cost (independent of the firm's size but for paging — 2,000 CRM rows, 1,000 ERP rows, 2,000 PSA
rows a page):

    CRM  accounts (billing fields), opportunities closed in the period, Invoice__c dated in the period
    ERP  jobs, time bills dated in the period, invoices dated in the period, invoice/credit totals per
         customer (one SUM ... GROUP BY), reference data (its own TTL cache); plus, only when the store's
         posting ledger names live time bills outside the period (a posting moved out of a closed period),
         those by external id (SuiteQL IN lists)
    PSA  time entries spent in the period, users (emails → ERP employees)
    store cross-references (accounts, PSA projects), open exceptions, posting heads, the billing poller's
         last-seen invoice states, the first backfill run (the go-live date)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mutations.identity import PROJECT, account_id_of
from store.models import IntegrationException, IntegrationRun, IntegrationStep
from store.repositories import CrossReferenceRepo
from store.repositories.postings import PostingRepo
from subgraphs.crm.client import CrmClient, soql_literal
from subgraphs.erp.client import ErpClient
from subgraphs.erp.refdata import Reference
from subgraphs.erp.wire import sql_string
from subgraphs.psa.client import PsaClient

Record = dict[str, Any]
IN_CHUNK = 500  # store IN lists

ACCOUNT_SOQL = (
    "SELECT Id, Name, P2C_Id__c, Legal_Entity__c, CurrencyIsoCode, ERP_Customer_Id__c, Billed_To_Date__c, "
    "Open_Receivables__c FROM Account{where} ORDER BY Id"
)
OPPORTUNITY_SOQL = (
    "SELECT Id, AccountId, Name, StageName, IsWon, CloseDate, Amount, CurrencyIsoCode, ERP_Project_Id__c, "
    "Provisioning_Status__c FROM Opportunity WHERE CloseDate >= {start} AND CloseDate <= {end} ORDER BY Id"
)
INVOICE_SOQL = (
    "SELECT Id, Name, P2C_Id__c, ERP_Invoice_Id__c, Account__c, Invoice_Date__c, Amount__c, "
    "Amount_Remaining__c, CurrencyIsoCode, Legal_Entity__c FROM Invoice__c "
    "WHERE Invoice_Date__c >= {start} AND Invoice_Date__c <= {end} ORDER BY Id"
)
JOB_SUITEQL = "SELECT id, externalid, entityid, companyname, parent, subsidiary, status FROM job ORDER BY id"
TIME_BILL_COLUMNS = "id, externalid, employee, customer, trandate, hours, approvalstatus, memo"
TIME_BILL_SUITEQL = (
    f"SELECT {TIME_BILL_COLUMNS} FROM timebill "
    "WHERE trandate >= {start} AND trandate <= {end} ORDER BY id"
)
INVOICE_SUITEQL = (
    "SELECT id, externalid, tranid, type, entity, job, trandate, duedate, currency, foreigntotal, "
    "amountpaid, amountremaining, status, subsidiary FROM transaction WHERE type = 'CustInvc' "
    "AND trandate >= {start} AND trandate <= {end}{where} ORDER BY id"
)
TOTALS_SUITEQL = (
    "SELECT entity, currency, type, SUM(foreigntotal) AS total, SUM(amountremaining) AS remaining "
    "FROM transaction WHERE type IN ('CustInvc', 'CustCred') AND trandate <= {as_of} "
    "AND (status IS NULL OR status NOT IN ('voided', 'draft')){where} GROUP BY entity, currency, type"
)


@dataclass
class StoreView:
    erp_customer_of: dict[str, str]  # account canonical id → ERP customer id
    erp_job_of_psa_project: dict[str, str]  # PSA project id → ERP job id
    exceptions: dict[str, str]  # subject → reason code of its newest open exception
    heads: dict[str, dict[str, Any]]  # PSA entry id → posting head
    invoice_seen: dict[str, str | None]  # ERP invoice id → fingerprint the billing poller last saw
    live_since: date | None  # the first successful backfill: the gateway took over from then


@dataclass
class Snapshot:
    reference: Reference
    subsidiary: str | None  # the legal entity's ERP subsidiary id (None: every entity)
    accounts: list[Record]
    opportunities: list[Record]
    crm_invoices: list[Record]
    jobs: list[Record]
    time_bills: list[Record]
    erp_invoices: list[Record]
    totals: list[Record]
    entries: list[Record]
    users: list[Record]
    store: StoreView
    extra_bills: list[Record] = field(default_factory=list)  # live bills outside the period (moved)


async def read_snapshot(
    *,
    crm: CrmClient,
    psa: PsaClient,
    erp: ErpClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    legal_entity: str | None,
    period_start: date,
    period_end: date,
    as_of: date,
) -> Snapshot:
    reference = await erp.reference_data()
    subsidiary = reference.subsidiary_id(legal_entity) if legal_entity else None
    sub_sql = f" AND subsidiary = {int(subsidiary)}" if subsidiary is not None else ""
    if legal_entity and subsidiary is None:
        sub_sql = " AND subsidiary = -1"  # an entity the ERP does not know holds nothing there
    # A credit memo may carry no subsidiary (the demo firm's do not): its customer decides, in memory.
    totals_sql = (
        f" AND (subsidiary = {int(subsidiary)} OR type = 'CustCred')" if subsidiary is not None else sub_sql
    )
    start, end = sql_string(period_start.isoformat()), sql_string(period_end.isoformat())
    account_where = f" WHERE Legal_Entity__c = {soql_literal(legal_entity)}" if legal_entity else ""

    async def entries() -> list[Record]:
        return [dict(e) async for page in psa.time_entries(from_=period_start, to=period_end) for e in page]

    async def users() -> list[Record]:
        return [dict(u) for u in await psa.users()]

    results = await gather(
        crm.query_all(ACCOUNT_SOQL.format(where=account_where)),
        crm.query_all(OPPORTUNITY_SOQL.format(start=period_start.isoformat(), end=period_end.isoformat())),
        crm.query_all(INVOICE_SOQL.format(start=period_start.isoformat(), end=period_end.isoformat())),
        erp.suiteql(JOB_SUITEQL),
        erp.suiteql(TIME_BILL_SUITEQL.format(start=start, end=end)),
        erp.suiteql(INVOICE_SUITEQL.format(start=start, end=end, where=sub_sql)),
        erp.suiteql(TOTALS_SUITEQL.format(as_of=sql_string(as_of.isoformat()), where=totals_sql)),
        entries(),
        users(),
    )
    accounts, opps, crm_invoices, jobs, bills, invoices, totals, psa_entries, psa_users = (
        [dict(r) for r in rows] for rows in results
    )
    store = await read_store(
        sessionmaker,
        account_ids=[account_id_of(a) for a in accounts],
        psa_projects={str(e["project"]["id"]) for e in psa_entries},
        entry_ids=[str(e["id"]) for e in psa_entries],
        invoice_ids=[str(i["id"]) for i in invoices],
    )
    snap = Snapshot(
        reference,
        subsidiary,
        accounts,
        opps,
        crm_invoices,
        jobs,
        bills,
        invoices,
        totals,
        psa_entries,
        psa_users,
        store,
    )
    found = {str(b.get("externalid")) for b in bills if b.get("externalid")}
    missing = [h["live"] for h in store.heads.values() if h.get("live") and h["live"] not in found]
    if missing:
        snap.extra_bills = [dict(r) for r in (await erp.time_bills_by_external_ids(missing)).values()]
    return snap


async def gather(*calls: Awaitable[Sequence[Any]]) -> list[Sequence[Any]]:
    """Concurrently; the first failure cancels the others and is raised as it is."""
    tasks = [asyncio.ensure_future(c) for c in calls]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), IN_CHUNK):
        yield items[i : i + IN_CHUNK]


async def read_store(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    account_ids: list[str],
    psa_projects: set[str],
    entry_ids: list[str],
    invoice_ids: list[str],
) -> StoreView:
    async with sessionmaker() as session:
        xrefs = CrossReferenceRepo(session)
        customers = await xrefs.system_ids_for("erp", account_ids)
        canonical = await xrefs.resolve_many("psa", PROJECT, sorted(psa_projects))
        jobs = await xrefs.system_ids_for("erp", sorted(set(canonical.values())))
        heads_by_key: dict[str, Any] = {}
        for chunk in _chunks([f"psa:time:{e}:head" for e in entry_ids]):
            heads_by_key.update(await PostingRepo(session).heads(chunk))
        exceptions: dict[str, str] = {}
        rows = await session.execute(
            sa.select(IntegrationException.subject, IntegrationException.reason_code)
            .where(IntegrationException.status.in_(("OPEN", "REPLAYING")))
            .order_by(IntegrationException.created_at)
        )
        for subject, reason in rows:
            if subject is not None:
                exceptions[str(subject)] = str(reason)
        seen: dict[str, str | None] = {}
        keys = [f"erp:invoice:{i}:last" for i in invoice_ids]
        for chunk in _chunks(keys):
            found = await session.execute(
                sa.select(IntegrationStep.key, IntegrationStep.result).where(IntegrationStep.key.in_(chunk))
            )
            for key, result in found:
                seen[str(key).split(":")[2]] = (result or {}).get("fingerprint")
        first: datetime | None = await session.scalar(
            sa.select(sa.func.min(IntegrationRun.started_at)).where(
                IntegrationRun.flow == "backfill", IntegrationRun.status == "SUCCEEDED"
            )
        )
    return StoreView(
        erp_customer_of=customers,
        erp_job_of_psa_project={p: jobs[c] for p, c in canonical.items() if c in jobs},
        exceptions=exceptions,
        heads={k.split(":")[2]: dict(v) for k, v in heads_by_key.items() if isinstance(v, dict)},
        invoice_seen=seen,
        live_since=first.date() if first is not None else None,
    )
