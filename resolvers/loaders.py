"""Per-request DataLoaders: one per (system, entity, access path), each batch one connector call.

Built fresh for every request by ``build_context`` — a loader caches what it loaded, so sharing one
between requests would leak one caller's rows to another. Keys are the owning system's ids (strings for
the CRM and ERP, integers for the PSA) or canonical ids for the store's cross-references.

    loaders = Loaders(crm, psa, erp, sessionmaker, as_of=date(2026, 11, 27))
    totals = await loaders.erp_invoice_totals.load("1042")     # one SuiteQL per chunk of 1000 customers

Access paths that have no ids to batch on (whole lists) are loaders keyed by the filter, so two aliases
asking for the same list still cost one upstream read.

With the process's ``ReadCache`` (``cache=``), the account aggregates (ERP invoice totals, CRM won value,
PSA time) and the store's cross-references are read through it: a loader batch then asks upstream only
for the keys the cache does not hold. The loaders themselves stay per request. Without it (tests, the
naive variant) every request reads upstream.
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from functools import cached_property, partial
from typing import Any, TypeVar

from aiodataloader import DataLoader
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical.analytics import HealthThresholds
from canonical.entities import Account, Invoice, Opportunity, OpportunityLine, Project, TimeEntry
from canonical.enums import OpportunityStage
from canonical.errors import MappingInvalid
from resolvers.cache import ReadCache
from resolvers.delivery import DeliveryLoaders, make_loader
from resolvers.figures import DSO_WINDOW_DAYS, AccountFigures, AccountRef, load_figures
from store.repositories.xrefs import CrossReferenceRepo
from subgraphs.crm.client import CrmClient
from subgraphs.crm.loaders import load_accounts, load_opportunity_lines
from subgraphs.crm.mapping import account_from_wire, opportunity_from_wire
from subgraphs.crm.wire import OPPORTUNITY_FIELDS, AccountRecord, OpportunityRecord
from subgraphs.erp.client import ErpClient
from subgraphs.erp.lists import INVOICE_COLUMNS, JOB_COLUMNS, ListFilter, RowPage
from subgraphs.erp.loaders import (
    customers_loader,
    invoice_totals_loader,
    invoices_by_customer_loader,
    jobs_loader,
)
from subgraphs.erp.mapping import invoice_from_record, project_from_job
from subgraphs.erp.queries import InvoiceTotals
from subgraphs.erp.wire import ref_id
from subgraphs.erp_tryton.loaders import (
    InvoiceRow,
    ProjectRow,
    invoice_list_loader,
    party_invoices_loader,
    payment_lines_loader,
    project_list_loader,
    work_children_loader,
)
from subgraphs.erp_tryton.mapping import PREFIX as TRYTON
from subgraphs.erp_tryton.wire import Record as TrytonRecord
from subgraphs.psa.aggregates import Contribution, TimeAggregates, TimeTotals, contribution, group
from subgraphs.psa.client import PsaClient
from subgraphs.psa.loaders import load_time_entries_by_project
from subgraphs.psa.mapping import PsaIds, time_entry_to_canonical
from subgraphs.psa.wire import WireProject, WireTimeEntry

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: Without a ``ReadCache``, up to this many PSA clients' time is read per client; beyond, the firm's whole
#: time list (paged at 2000) is cheaper and its cost does not grow with the number of accounts asked for.
PER_CLIENT_THRESHOLD = 4


@dataclass(frozen=True)
class ListKey:
    """One page of a filtered ERP list: ``kind`` "job" or "invoice", after internal id ``after``."""

    kind: str
    filter: ListFilter
    after: int | None
    first: int


def _by_name(account: Account) -> tuple[str, str]:
    return account.name, account.id


def _mapped(records: list[AccountRecord]) -> list[Account]:
    accounts: list[Account] = []
    for record in records:
        try:
            accounts.append(account_from_wire(record))
        except MappingInvalid:
            continue  # a CRM account without master data has no place in the graph yet
    return accounts


class Loaders:
    """All DataLoaders of one request."""

    def __init__(
        self,
        crm: CrmClient,
        psa: PsaClient,
        erp: ErpClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        as_of: date,
        batching: bool = True,
        cache: ReadCache | None = None,
        thresholds: HealthThresholds | None = None,
        tryton: Any = None,
    ) -> None:
        self.crm, self.psa, self.erp, self.sessionmaker, self.as_of = crm, psa, erp, sessionmaker, as_of
        self.tryton = tryton  # the Tryton connector when a legal entity books there (issue 9)
        self.thresholds = thresholds or HealthThresholds()
        self.batching, self.cache = batching, cache
        # the firm's time aggregates: the process's read model, or one read for this request alone
        self.psa_time = cache.psa_time if cache is not None else TimeAggregates(ttl_s=math.inf)
        self.psa_ids = PsaIds()

        self._client_of: dict[str, int] = {}  # time entry canonical id → PSA client id
        self._psa_project_of: dict[str, int] = {}  # time entry canonical id → PSA project id
        self.window_start = as_of - timedelta(days=DSO_WINDOW_DAYS - 1)

    # Each loader is built on first use (``cached_property``): a request touches a handful of the ~40,
    # and building all of them cost a cached single-account query more CPU than resolving it.
    def _loader(self, batch: Callable[[list[K]], Awaitable[list[V]]]) -> DataLoader[K, V]:
        return make_loader(batch, self.batching)

    # store: canonical id → system id, and back
    @cached_property
    def xref_to_system(self) -> dict[str, DataLoader[str, str | None]]:
        systems = ("crm", "erp", "psa", "tryton")
        return {system: self._loader(partial(self._system_ids, system)) for system in systems}

    @cached_property
    def xref_to_canonical(self) -> dict[str, DataLoader[str, str | None]]:
        return {
            system: self._loader(partial(self._canonical_ids, system)) for system in ("crm", "erp", "psa")
        }

    @cached_property
    def account_figures(self) -> DataLoader[AccountRef, AccountFigures]:
        """Every health figure of an account, computed once per request (``resolvers.figures``)."""
        return self._loader(self._account_figures)

    # CRM
    @cached_property
    def crm_accounts(self) -> DataLoader[str, Any]:
        return self._loader(self._crm_accounts)

    @cached_property
    def crm_account_list(self) -> DataLoader[str, list[Account]]:
        return self._loader(self._account_lists)

    @cached_property
    def crm_opportunities_by_account(self) -> DataLoader[str, list[Opportunity]]:
        return self._loader(self._opportunities_by_account)

    @cached_property
    def crm_won_value(self) -> DataLoader[str, dict[str, Decimal]]:
        return self._loader(self._won_value)

    @cached_property
    def crm_opportunity_lines(self) -> DataLoader[str, tuple[OpportunityLine, ...]]:
        return self._loader(partial(load_opportunity_lines, self.crm))

    # ERP
    @cached_property
    def erp_customers(self) -> DataLoader[str, Account | None]:
        return self._loader(customers_loader(self.erp))

    @cached_property
    def erp_jobs(self) -> DataLoader[str, Project | None]:
        return self._loader(jobs_loader(self.erp))

    @cached_property
    def erp_invoices_by_customer(self) -> DataLoader[str, list[Invoice]]:
        return self._loader(invoices_by_customer_loader(self.erp))

    @cached_property
    def erp_invoices_by_job(self) -> DataLoader[str, list[Invoice]]:
        return self._loader(self._invoices_by_job)

    @cached_property
    def erp_job_by_canonical_id(self) -> DataLoader[str, tuple[Project, str | None] | None]:
        return self._loader(self._jobs_by_canonical_id)

    @cached_property
    def erp_invoice_totals(self) -> DataLoader[str, list[InvoiceTotals]]:
        return self._loader(self._invoice_totals)

    @cached_property
    def tryton_invoice_totals(self) -> DataLoader[str, list[InvoiceTotals]]:
        from subgraphs.erp_tryton.loaders import invoice_totals_loader

        return self._loader(invoice_totals_loader(self.tryton, self.as_of, self.window_start))

    # Tryton: the lists of the legal entity its company books (the key), read whole once per request
    @cached_property
    def tryton_payment_lines(self) -> DataLoader[str, list[TrytonRecord]]:
        """A Tryton invoice's payment lines by its invoice id."""
        return self._loader(payment_lines_loader(self.tryton))

    @cached_property
    def tryton_work_children(self) -> DataLoader[str, list[TrytonRecord]]:
        """A Tryton project's child works (tasks, milestones) by its work id."""
        return self._loader(work_children_loader(self.tryton))

    @cached_property
    def tryton_project_list(self) -> DataLoader[str, list[ProjectRow]]:
        return self._loader(project_list_loader(self.tryton))

    @cached_property
    def tryton_invoice_list(self) -> DataLoader[str, list[InvoiceRow]]:
        return self._loader(invoice_list_loader(self.tryton, self.tryton_project_list.load))

    @cached_property
    def tryton_invoices_by_party(self) -> DataLoader[tuple[str, str], list[InvoiceRow]]:
        """Key: (legal entity, party id)."""
        return self._loader(party_invoices_loader(self.tryton, self.tryton_project_list.load))

    @cached_property
    def erp_invoice_by_canonical_id(self) -> DataLoader[str, tuple[Invoice, str | None] | None]:
        return self._loader(self._invoices_by_canonical_id)

    @cached_property
    def erp_list_page(self) -> DataLoader[ListKey, RowPage]:
        """One page of a filtered list (the graph's projects and invoices)."""
        return self._loader(self._list_pages)

    @cached_property
    def erp_list_count(self) -> DataLoader[tuple[str, ListFilter], int]:
        """A filtered list's count, when asked."""
        return self._loader(self._list_counts)

    @cached_property
    def erp_job_list(self) -> DataLoader[str, list[tuple[Project, str | None]]]:
        return self._loader(self._job_lists)

    @cached_property
    def erp_invoice_list(self) -> DataLoader[str, list[tuple[Invoice, str | None]]]:
        return self._loader(self._invoice_lists)

    # PSA
    @cached_property
    def psa_time_by_client(self) -> DataLoader[int, list[TimeEntry]]:
        return self._loader(self._time_by_client)

    @cached_property
    def psa_client_time(self) -> DataLoader[int, list[TimeTotals]]:
        return self._loader(self._client_time)

    @cached_property
    def psa_all_time(self) -> DataLoader[str, list[TimeEntry]]:
        return self._loader(self._all_time)

    @cached_property
    def psa_time_by_project(self) -> DataLoader[int, list[TimeEntry]]:
        return self._loader(partial(load_time_entries_by_project, self.psa, self.psa_ids))

    @cached_property
    def psa_project_list(self) -> DataLoader[str, dict[str, WireProject]]:
        return self._loader(self._psa_projects)

    @cached_property
    def delivery(self) -> DeliveryLoaders:
        return DeliveryLoaders(
            self.psa, self.erp, self.sessionmaker, self.psa_ids, as_of=self.as_of, batching=self.batching
        )

    # -- store -----------------------------------------------------------------------------------------
    async def _cached_xrefs(
        self,
        direction: str,
        system: str,
        keys: list[str],
        read: Callable[[list[str]], Awaitable[list[str | None]]],
    ) -> list[str | None]:
        if self.cache is None:
            return await read(keys)

        async def fetch(missing: list[tuple[str, str, str]]) -> list[str | None]:
            return await read([k for _d, _s, k in missing])

        return await self.cache.xrefs.get_many([(direction, system, k) for k in keys], fetch)

    async def _system_ids(self, system: str, keys: list[str]) -> list[str | None]:
        return await self._cached_xrefs("system", system, keys, partial(self._read_system_ids, system))

    async def _canonical_ids(self, system: str, keys: list[str]) -> list[str | None]:
        return await self._cached_xrefs("canonical", system, keys, partial(self._read_canonical_ids, system))

    async def _read_system_ids(self, system: str, keys: list[str]) -> list[str | None]:
        async with self.sessionmaker() as session:
            found = await CrossReferenceRepo(session).system_ids_for(system, keys)
        return [found.get(k) for k in keys]

    async def _read_canonical_ids(self, system: str, keys: list[str]) -> list[str | None]:
        """An "erp" id ``tryton:<id>`` (a Tryton party or record, as the graph names it beside NetSuite's
        ids) is looked up among the links provisioning made with the system "tryton"."""
        if system == "erp" and any(k.startswith(TRYTON) for k in keys):
            netsuite = [k for k in keys if not k.startswith(TRYTON)]
            tryton = [k.removeprefix(TRYTON) for k in keys if k.startswith(TRYTON)]
            ids: dict[str, str | None] = {}
            if netsuite:
                ids.update(zip(netsuite, await self._read_canonical_ids("erp", netsuite), strict=True))
            linked = await self._read_canonical_ids("tryton", tryton)
            ids.update((TRYTON + k, c) for k, c in zip(tryton, linked, strict=True))
            return [ids[k] for k in keys]
        async with self.sessionmaker() as session:
            repo = CrossReferenceRepo(session)
            # resolve_many filters on the entity type; the graph asks by system id alone, so go through
            # every type this system links (a handful) in one session.
            found: dict[str, str] = {}
            for entity_type in ("Account", "Customer", "Client", "Project", "Invoice"):
                found.update(await repo.resolve_many(system, entity_type, keys))
        return [found.get(k) for k in keys]

    async def _account_figures(self, keys: list[AccountRef]) -> list[AccountFigures]:
        return await load_figures(self, keys, self.thresholds)

    # -- CRM -------------------------------------------------------------------------------------------
    async def _crm_accounts(self, keys: list[str]) -> list[Account | MappingInvalid | None]:
        if self.cache is None:
            return await load_accounts(self.crm, keys)
        return await self.cache.crm_accounts.get_many(keys, partial(load_accounts, self.crm))

    async def _account_lists(self, keys: list[str]) -> list[list[Account]]:
        """Key: a legal entity code, or "*" for all. One SOQL (paged) per distinct key; the mapped rows in
        the graph's order (name, id). Through the cache, a list read also refreshes the rows by id."""

        async def read(wanted: list[str]) -> list[list[Account]]:
            results = await asyncio.gather(
                *(self.crm.accounts(legal_entity=None if k == "*" else k) for k in wanted)
            )
            return [sorted(_mapped(records), key=_by_name) for records in results]

        cache = self.cache
        if cache is None:
            return await read(keys)

        async def fetch(missing: list[str]) -> list[list[Account]]:
            rows = cache.crm_accounts
            epoch, asked_at = rows.epoch, rows.clock()
            lists = await read(missing)
            found = ((a.crm_id, a) for accounts in lists for a in accounts if a.crm_id)
            rows.put_many(found, asked_at=asked_at, epoch=epoch)
            return lists

        return await cache.crm_account_lists.get_many(keys, fetch)

    async def _opportunities_by_account(self, keys: list[str]) -> list[list[Opportunity]]:
        records: list[OpportunityRecord] = await self.crm.records_where_in(  # type: ignore[assignment]
            "Opportunity", OPPORTUNITY_FIELDS, "AccountId", keys
        )
        grouped: dict[str, list[Opportunity]] = defaultdict(list)
        for record in records:
            try:
                grouped[str(record["AccountId"])].append(opportunity_from_wire(record, []))
            except MappingInvalid:
                continue
        return [grouped.get(k, []) for k in keys]

    async def _won_value(self, keys: list[str]) -> list[dict[str, Decimal]]:
        """Closed-won amounts per account and currency (the contracted value of health's backlog)."""

        async def fetch(account_ids: list[str]) -> list[dict[str, Decimal]]:
            found = await self.crm_opportunities_by_account.load_many(account_ids)
            won: list[dict[str, Decimal]] = []
            for opportunities in found:
                by_currency: dict[str, Decimal] = defaultdict(Decimal)
                for o in opportunities:
                    if o.stage is OpportunityStage.CLOSED_WON:
                        by_currency[o.currency] += o.amount.amount
                won.append(dict(by_currency))
            return won

        if self.cache is None:
            return await fetch(keys)
        return await self.cache.won_value.get_many(keys, fetch)

    # -- ERP -------------------------------------------------------------------------------------------
    async def _invoice_totals(self, keys: list[str]) -> list[list[InvoiceTotals]]:
        read = invoice_totals_loader(self.erp, self.as_of, self.window_start)
        if self.cache is None:
            return await read(keys)

        async def fetch(missing: list[tuple[date, date, str]]) -> list[list[InvoiceTotals]]:
            return await read([k for _a, _w, k in missing])

        return await self.cache.invoice_totals.get_many(
            [(self.as_of, self.window_start, k) for k in keys], fetch
        )

    async def _invoices_by_canonical_id(self, keys: list[str]) -> list[tuple[Invoice, str | None] | None]:
        """By the store's link or our external id: one store query and one SuiteQL (``IN``) per batch.
        A day-one invoice's id is a hash of its internal id that the store does not link, so ids that
        neither finds fall back to the whole (per-request cached) invoice list."""
        linked = await self.xref_to_system["erp"].load_many(keys)
        rows, reference = await asyncio.gather(
            self.erp.invoices_by_ids_or_external_ids([i for i in linked if i], keys),
            self.erp.reference_data(),
        )
        found: dict[str, tuple[Invoice, str | None]] = {}
        for r in rows:
            invoice = invoice_from_record(r, reference)
            found[str(r["id"])] = found[invoice.id] = (invoice, ref_id(r, "entity"))
        result = [
            found.get(k) or (found.get(link) if link else None) for k, link in zip(keys, linked, strict=True)
        ]
        if any(r is None for r in result):
            every = {i.id: (i, c) for i, c in await self.erp_invoice_list.load("*")}
            result = [r or every.get(k) for r, k in zip(result, keys, strict=True)]
        return result

    async def _list_pages(self, keys: list[ListKey]) -> list[RowPage]:
        return list(
            await asyncio.gather(
                *(self.erp.list_page(k.kind, k.filter, after=k.after, first=k.first) for k in keys)
            )
        )

    async def _list_counts(self, keys: list[tuple[str, ListFilter]]) -> list[int]:
        return list(await asyncio.gather(*(self.erp.list_count(kind, f) for kind, f in keys)))

    async def _invoices_by_job(self, keys: list[str]) -> list[list[Invoice]]:
        rows, reference = await asyncio.gather(self.erp.invoices_by_job_ids(keys), self.erp.reference_data())
        return [[invoice_from_record(r, reference) for r in rows.get(k, [])] for k in keys]

    async def _jobs_by_canonical_id(self, keys: list[str]) -> list[tuple[Project, str | None] | None]:
        """Linked in the store (day-one jobs) or carrying the id as external id (provisioned): one store
        query and one SuiteQL for the whole batch."""
        linked = await self.xref_to_system["erp"].load_many(keys)
        rows, reference = await asyncio.gather(
            self.erp.jobs_by_ids_or_external_ids([i for i in linked if i], keys), self.erp.reference_data()
        )
        found: dict[str, tuple[Project, str | None]] = {}
        for r in rows:
            project = project_from_job(r, reference)
            found[str(r["id"])] = found[project.id] = (project, ref_id(r, "parent"))
        return [
            found.get(k) or (found.get(link) if link else None) for k, link in zip(keys, linked, strict=True)
        ]

    async def _job_lists(self, keys: list[str]) -> list[list[tuple[Project, str | None]]]:
        """Every ERP job with its customer's internal id (the parent), one SuiteQL."""
        rows, reference = await asyncio.gather(
            self.erp.suiteql(f"SELECT {JOB_COLUMNS} FROM job ORDER BY id"), self.erp.reference_data()
        )
        projects = [(project_from_job(r, reference), ref_id(r, "parent")) for r in rows]
        return [projects for _ in keys]

    async def _invoice_lists(self, keys: list[str]) -> list[list[tuple[Invoice, str | None]]]:
        rows, reference = await asyncio.gather(
            self.erp.suiteql(
                f"SELECT {INVOICE_COLUMNS} FROM transaction WHERE type = 'CustInvc' ORDER BY id"
            ),
            self.erp.reference_data(),
        )
        invoices = [(invoice_from_record(r, reference), ref_id(r, "entity")) for r in rows]
        return [invoices for _ in keys]

    # -- PSA -------------------------------------------------------------------------------------------
    async def _client_time(self, keys: list[int]) -> list[list[TimeTotals]]:
        """Time totals per PSA client up to ``as_of``, aggregated from the wire (no canonical entries)."""
        wanted = list(dict.fromkeys(keys))
        if self.cache is None and len(wanted) <= PER_CLIENT_THRESHOLD:
            found: dict[int, list[Contribution]] = {k: [] for k in wanted}

            async def one(client_id: int) -> None:
                async for page in self.psa.time_entries(client_id=client_id, to=self.as_of):
                    found[client_id].extend(contribution(e) for e in page)

            await asyncio.gather(*(one(k) for k in wanted))
            totals = {k: group(found[k], lambda c: c.client_id).get(k, []) for k in wanted}
        else:
            totals = await self.psa_time.by_client(self.psa, self.as_of)
        return [totals.get(k, []) for k in keys]

    async def _time_by_client(self, keys: list[int]) -> list[list[TimeEntry]]:
        wanted = list(dict.fromkeys(keys))
        found: dict[int, list[WireTimeEntry]] = {k: [] for k in wanted}
        if len(wanted) <= PER_CLIENT_THRESHOLD:

            async def one(client_id: int) -> None:
                async for page in self.psa.time_entries(client_id=client_id, to=self.as_of):
                    found[client_id].extend(page)

            await asyncio.gather(*(one(k) for k in wanted))
        else:
            grouped: dict[int, list[TimeEntry]] = defaultdict(list)
            for entry in await self.psa_all_time.load("*"):
                grouped[self._client_of[entry.id]].append(entry)
            return [grouped.get(k, []) for k in keys]
        return [[time_entry_to_canonical(e, self.psa_ids) for e in found[k]] for k in keys]

    async def _all_time(self, keys: list[str]) -> list[list[TimeEntry]]:
        """The firm's time up to ``as_of``: ⌈entries / 2000⌉ requests, however many accounts ask."""
        entries: list[TimeEntry] = []
        async for page in self.psa.time_entries(to=self.as_of):
            for wire in page:
                entry = time_entry_to_canonical(wire, self.psa_ids)
                self._client_of[entry.id] = wire["client"]["id"]
                self._psa_project_of[entry.id] = wire["project"]["id"]
                entries.append(entry)
        return [entries for _ in keys]

    def psa_project_of(self, entry: TimeEntry) -> int | None:
        return self._psa_project_of.get(entry.id)

    async def _psa_projects(self, keys: list[str]) -> list[dict[str, WireProject]]:
        by_code: dict[str, WireProject] = {}
        async for page in self.psa.projects():
            by_code.update((str(p["code"]), p) for p in page if p.get("code"))
        return [by_code for _ in keys]
