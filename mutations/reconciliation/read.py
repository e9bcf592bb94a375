"""The bulk reads a reconciliation compares: each system once, concurrently, filtered by period and entity.

Upstream cost (independent of the firm's size but for paging — 2,000 CRM rows, 1,000 ERP rows, 2,000 PSA
rows a page):

    CRM  accounts (billing fields), opportunities closed in the period, Invoice__c dated in the period
    ERP  jobs, time bills dated in the period, invoices dated in the period, invoice/credit totals per
         customer (one SUM ... GROUP BY), reference data (its own TTL cache); plus, only when the store's
         posting ledger names live time bills outside the period (a posting moved out of a closed period),
         those by external id (SuiteQL IN lists)
    Tryton (when an entity in scope books there; ``tryton``) project works, timesheet lines of the
         period, customer invoices up to the later of the period's end and as_of, employees (cached)
    PSA  time entries spent in the period, users (emails → ERP employees)
    store cross-references (accounts, PSA projects; system "erp" or "tryton"), open exceptions, posting
         heads, the billing poller's last-seen invoice states, the first backfill run (the go-live date)

Which ERP answers for what: ``erp_by_entity`` names the entities booked in Tryton. A Tryton entity is read
from Tryton only, a NetSuite entity from NetSuite only; with no entity, both are read and each ERP's
snapshot answers for its own entities only (``Snapshot.books``), so a NetSuite time bill is never set
against a Tryton line, nor a CRM field holding a Tryton id (``tryton:<id>``) against NetSuite.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical.errors import ConfigurationError
from mutations.billing.state import invoice_fingerprint
from mutations.identity import PROJECT, account_id_of
from mutations.reconciliation.tryton import PREFIX, TrytonSide, owns, read_tryton, tid
from mutations.reconciliation.tryton import SYSTEM as TRYTON
from store.models import IntegrationException, IntegrationRun, IntegrationStep
from store.repositories import CrossReferenceRepo
from store.repositories.postings import PostingRepo
from subgraphs.crm.client import CrmClient, soql_literal
from subgraphs.erp.client import ErpClient
from subgraphs.erp.refdata import Reference
from subgraphs.erp.wire import sql_string
from subgraphs.erp_tryton.client import TrytonClient
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


NETSUITE = "netsuite"


@dataclass
class StoreView:
    erp_customer_of: dict[str, str]  # account canonical id → ERP customer id (as the snapshot's records)
    erp_job_of_psa_project: dict[str, str]  # PSA project id → ERP job id
    exceptions: dict[str, str]  # subject → reason code of its newest open exception
    heads: dict[str, dict[str, Any]]  # PSA entry id → posting head
    invoice_seen: dict[str, str | None]  # ERP invoice id → fingerprint the billing poller last saw
    live_since: date | None  # the first successful backfill: the gateway took over from then
    elsewhere: set[str] = field(default_factory=set)  # PSA projects whose project another ERP books


@dataclass
class Snapshot:
    """What one ERP says, beside the CRM and the PSA. A reconciliation over entities booked in different
    ERPs has one snapshot per ERP (the CRM and PSA rows shared), each checked on its own."""

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
    erp: str = NETSUITE  # "netsuite" or "tryton": whose records jobs … totals are
    only: frozenset[str] | None = None  # the legal entities this ERP books (None: any not excluded)
    exclude: frozenset[str] = frozenset()  # legal entities another ERP books

    def books(self, entity: str | None) -> bool:
        """Whether records of ``entity`` are this ERP's to answer for."""
        if entity in self.exclude:
            return False
        return self.only is None or entity in self.only

    def owns(self, reference: str | None) -> bool:
        """Whether an ERP id copied elsewhere (a CRM field) names a record of this ERP."""
        return owns(self.erp, reference)

    def foreign_invoice(self, crm_invoice: Record) -> bool:
        """Whether a CRM ``Invoice__c`` was written back from another ERP's invoice (a Tryton invoice's
        ``P2C_Id__c`` is ``tryton:<id>``; a NetSuite one's is not)."""
        p2c = crm_invoice.get("P2C_Id__c")
        if self.erp == TRYTON:
            return bool(p2c or crm_invoice.get("ERP_Invoice_Id__c")) and not owns(TRYTON, p2c)
        return owns(TRYTON, p2c)

    def fingerprint(self, invoice: Record) -> str:
        """The invoice's billing state as the ERP's billing poller fingerprints it."""
        if self.erp == TRYTON:
            return str(invoice["fingerprint"])
        return invoice_fingerprint(invoice, self.reference)


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
    tryton: TrytonClient | None = None,
    erp_by_entity: Mapping[str, str] | None = None,
) -> list[Snapshot]:
    """One snapshot per ERP that books ``legal_entity`` (None: every entity, so both ERPs when some entity
    books in Tryton). ``erp_by_entity`` says which ERP books each entity ("netsuite", the default, or
    "tryton"); a Tryton entity needs ``tryton``, else ``ConfigurationError``."""
    on_tryton = frozenset(code for code, system in (erp_by_entity or {}).items() if system == TRYTON)
    netsuite_wanted = legal_entity is None or legal_entity not in on_tryton
    tryton_wanted = bool(on_tryton) and (legal_entity is None or legal_entity in on_tryton)
    if tryton_wanted and tryton is None:
        raise ConfigurationError(
            f"legal entit{'y' if len(on_tryton) == 1 else 'ies'} {', '.join(sorted(on_tryton))} book(s) in "
            "Tryton but no Tryton connector is configured (P2C_TRYTON__BASE_URL)"
        )
    # One Tryton connector books one company, so one entity (as the posting and billing adapters have it).
    tryton_entity = legal_entity if legal_entity in on_tryton else min(on_tryton, default=None)
    account_where = f" WHERE Legal_Entity__c = {soql_literal(legal_entity)}" if legal_entity else ""

    async def entries() -> list[Record]:
        return [dict(e) async for page in psa.time_entries(from_=period_start, to=period_end) for e in page]

    async def users() -> list[Record]:
        return [dict(u) for u in await psa.users()]

    async def netsuite() -> NetSuiteSide | None:
        if not netsuite_wanted:
            return None
        return await read_netsuite(erp, legal_entity, period_start, period_end, as_of)

    async def tryton_side() -> TrytonSide | None:
        if not tryton_wanted or tryton is None or tryton_entity is None:
            return None
        return await read_tryton(
            tryton, entity=tryton_entity, period_start=period_start, period_end=period_end, as_of=as_of
        )

    results = await gather(
        crm.query_all(ACCOUNT_SOQL.format(where=account_where)),
        crm.query_all(OPPORTUNITY_SOQL.format(start=period_start.isoformat(), end=period_end.isoformat())),
        crm.query_all(INVOICE_SOQL.format(start=period_start.isoformat(), end=period_end.isoformat())),
        entries(),
        users(),
        netsuite(),
        tryton_side(),
    )
    accounts, opps, crm_invoices, psa_entries, psa_users = ([dict(r) for r in rows] for rows in results[:5])
    ns: NetSuiteSide | None = results[5]
    ty: TrytonSide | None = results[6]
    account_ids = [account_id_of(a) for a in accounts]
    psa_projects = {str(e["project"]["id"]) for e in psa_entries}
    entry_ids = [str(e["id"]) for e in psa_entries]
    snapshots: list[Snapshot] = []
    if ns is not None:
        store = await read_store(
            sessionmaker,
            system="erp",
            account_ids=account_ids,
            psa_projects=psa_projects,
            entry_ids=entry_ids,
            invoice_keys={f"erp:invoice:{i['id']}:last": str(i["id"]) for i in ns.invoices},
            elsewhere_system=TRYTON if on_tryton else None,
        )
        snap = Snapshot(
            ns.reference, ns.subsidiary, accounts, opps,
            [r for r in crm_invoices if not owns(TRYTON, r.get("P2C_Id__c"))],  # Tryton's ids are not ours
            ns.jobs, ns.time_bills, ns.invoices, ns.totals, psa_entries, psa_users, store,
            exclude=on_tryton,
        )  # fmt: skip
        # Heads of Tryton postings carry the same kind of reference: never look for them in NetSuite.
        heads = [h for h in store.heads.values() if h.get("erp", NETSUITE) == NETSUITE]
        found = {str(b.get("externalid")) for b in ns.time_bills if b.get("externalid")}
        missing = [h["live"] for h in heads if h.get("live") and h["live"] not in found]
        if missing:
            snap.extra_bills = [dict(r) for r in (await erp.time_bills_by_external_ids(missing)).values()]
        snapshots.append(snap)
    if ty is not None:
        store = await read_store(
            sessionmaker,
            system=TRYTON,
            account_ids=account_ids,
            psa_projects=psa_projects,
            entry_ids=entry_ids,
            invoice_keys={
                f"tryton:invoice:{str(i['id']).removeprefix(PREFIX)}:last": str(i["id"]) for i in ty.invoices
            },
        )
        snapshots.append(
            Snapshot(
                ty.reference, ty.subsidiary, accounts, opps, crm_invoices, ty.jobs, ty.time_bills,
                ty.invoices, ty.totals, psa_entries, psa_users, store, erp=TRYTON,
                only=frozenset({tryton_entity}) if tryton_entity else frozenset(),
            )
        )  # fmt: skip
    return snapshots


@dataclass
class NetSuiteSide:
    reference: Reference
    subsidiary: str | None
    jobs: list[Record]
    time_bills: list[Record]
    invoices: list[Record]
    totals: list[Record]


async def read_netsuite(
    erp: ErpClient, legal_entity: str | None, period_start: date, period_end: date, as_of: date
) -> NetSuiteSide:
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
    results = await gather(
        erp.suiteql(JOB_SUITEQL),
        erp.suiteql(TIME_BILL_SUITEQL.format(start=start, end=end)),
        erp.suiteql(INVOICE_SUITEQL.format(start=start, end=end, where=sub_sql)),
        erp.suiteql(TOTALS_SUITEQL.format(as_of=sql_string(as_of.isoformat()), where=totals_sql)),
    )
    jobs, bills, invoices, totals = ([dict(r) for r in rows] for rows in results)
    return NetSuiteSide(reference, subsidiary, jobs, bills, invoices, totals)


async def gather(*calls: Awaitable[Any]) -> list[Any]:
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
    system: str = "erp",
    account_ids: list[str],
    psa_projects: set[str],
    entry_ids: list[str],
    invoice_keys: Mapping[str, str],
    elsewhere_system: str | None = None,
) -> StoreView:
    """The store's half for the ERP whose cross-references are ``system`` ("erp" for NetSuite, "tryton");
    ``invoice_keys`` maps the billing poller's registers to the snapshot's invoice ids. Tryton ids come
    back as the snapshot names them (``tryton:<id>``). ``elsewhere_system``: PSA projects linked there."""

    def named(system_id: str) -> str:
        return (tid(system_id) or system_id) if system == TRYTON else system_id

    async with sessionmaker() as session:
        xrefs = CrossReferenceRepo(session)
        customers = await xrefs.system_ids_for(system, account_ids)
        canonical = await xrefs.resolve_many("psa", PROJECT, sorted(psa_projects))
        jobs = await xrefs.system_ids_for(system, sorted(set(canonical.values())))
        elsewhere: set[str] = set()
        if elsewhere_system is not None:
            other = await xrefs.system_ids_for(elsewhere_system, sorted(set(canonical.values())))
            elsewhere = {p for p, c in canonical.items() if c in other and c not in jobs}
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
        for chunk in _chunks(list(invoice_keys)):
            found = await session.execute(
                sa.select(IntegrationStep.key, IntegrationStep.result).where(IntegrationStep.key.in_(chunk))
            )
            for key, result in found:
                seen[invoice_keys[str(key)]] = (result or {}).get("fingerprint")
        first: datetime | None = await session.scalar(
            sa.select(sa.func.min(IntegrationRun.started_at)).where(
                IntegrationRun.flow == "backfill", IntegrationRun.status == "SUCCEEDED"
            )
        )
    return StoreView(
        erp_customer_of={a: named(c) for a, c in customers.items()},
        erp_job_of_psa_project={p: named(jobs[c]) for p, c in canonical.items() if c in jobs},
        exceptions=exceptions,
        heads={k.split(":")[2]: dict(v) for k, v in heads_by_key.items() if isinstance(v, dict)},
        invoice_seen=seen,
        live_since=first.date() if first is not None else None,
        elsewhere=elsewhere,
    )
