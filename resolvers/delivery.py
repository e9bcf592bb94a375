"""DataLoaders of the contract and delivery side of a project and the receipts of an invoice.

Each loader batches one level of the query into one upstream read per chunk of ids:

    contracts      sales orders on the jobs (SuiteQL ``transaction`` type SalesOrd, ``job IN``)
    schedules      billing schedules of the jobs (SuiteQL ``billingschedule``, ``job IN``)
    milestones     their events (``billingschedulemilestone``, ``billingschedule IN``)
    rates          their rate cards (``billingschedulerate``, ``billingschedule IN``)
    tasks          ERP project tasks and milestone tasks of the jobs (SuiteQL ``projecttask``,
                   ``company IN``)
    expenses       the firm's PSA expenses up to ``as_of`` (⌈expenses / 2000⌉ pages, however many
                   projects ask), grouped by PSA project
    time_bills     ERP time bills by external id (the entry's canonical id) — posting state, one SuiteQL
    exceptions     open exceptions whose subject is one of the entries (one store query)
    receipts       payments and credit memos applied to the invoices, with their applications
                   (``NextTransactionLineLink`` joined to ``transaction``, ``previousdoc IN``)

Sublists are read through the tables NetSuite exposes them in, never record by record (REST has no batch
GET), so no field here costs a request per row.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from datetime import date
from typing import TypeVar

import sqlalchemy as sa
from aiodataloader import DataLoader
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical.entities import Expense
from store.models import IntegrationException
from subgraphs.erp.client import ErpClient
from subgraphs.erp.wire import Record
from subgraphs.psa.client import PsaClient
from subgraphs.psa.mapping import PsaIds, expense_to_canonical

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def _same(key: K) -> K:
    return key


class RequestLoader(DataLoader[K, V]):
    """aiodataloader's ``DataLoader``, built without its constructor's checks.

    A request builds some fifty loaders; ``DataLoader.__init__`` asks ``inspect.iscoroutinefunction`` of
    each batch function, which cost more CPU than the rest of a cached single-account query. Here the
    batch function is always our own coroutine function (``make_loader``), so the check has nothing to
    find. Loading, batching and the per-request cache are aiodataloader's, unchanged."""

    def __init__(  # DataLoader.__init__ is the check skipped; every field it sets is set here
        self, batch_load_fn: Callable[[list[K]], Awaitable[list[V]]], *, batch: bool = True
    ) -> None:
        self.loop = asyncio.get_event_loop()
        self.batch_load_fn = batch_load_fn  # type: ignore[assignment]
        self.batch = batch
        self.get_cache_key = _same
        self._cache = {}
        self._queue = []


def make_loader(batch: Callable[[list[K]], Awaitable[list[V]]], batching: bool) -> DataLoader[K, V]:
    """A DataLoader over ``batch``; with ``batching`` false, one upstream call per key (the naive mode)."""

    async def load(keys: Sequence[K]) -> list[V]:
        return await batch(list(keys))

    return RequestLoader(load, batch=batching)


class DeliveryLoaders:
    def __init__(
        self,
        psa: PsaClient,
        erp: ErpClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        psa_ids: PsaIds,
        *,
        as_of: date,
        batching: bool,
    ) -> None:
        self.psa, self.erp, self.sessionmaker, self.psa_ids, self.as_of = (
            psa,
            erp,
            sessionmaker,
            psa_ids,
            as_of,
        )

        def grouped(
            read: Callable[[list[str]], Awaitable[dict[str, list[Record]]]],
        ) -> DataLoader[str, list[Record]]:
            async def batch(keys: list[str]) -> list[list[Record]]:
                found = await read(keys)
                return [found.get(k, []) for k in keys]

            return make_loader(batch, batching)

        self.sales_orders = grouped(erp.sales_orders_by_job_ids)

        async def by_external_id(keys: list[str]) -> list[Record | None]:
            found = await erp.sales_orders_by_external_ids(keys)
            return [found.get(k) for k in keys]

        self.sales_order_by_external_id = make_loader(by_external_id, batching)
        self.schedules = grouped(erp.billing_schedules_by_job_ids)
        self.project_tasks = grouped(erp.project_tasks_by_job_ids)
        self.milestones = grouped(erp.milestones_by_schedule_ids)
        self.rates = grouped(erp.rates_by_schedule_ids)
        self.receipts = grouped(erp.receipts_by_invoice_ids)  # keyed by invoice internal id

        async def time_bills(keys: list[str]) -> list[Record | None]:
            found = await erp.time_bills_by_external_ids(keys)
            return [found.get(k) for k in keys]

        self.time_bills = make_loader(time_bills, batching)
        self.open_exceptions: DataLoader[str, bool] = make_loader(self._open_exceptions, batching)
        self.service_items: DataLoader[str, list[Record]] = make_loader(self._service_items, batching)
        self.expenses: DataLoader[str, dict[int, list[Expense]]] = make_loader(self._expenses, batching)

    async def _open_exceptions(self, keys: list[str]) -> list[bool]:
        # ExceptionRepo.list filters one subject at a time; the graph needs many in one round trip.
        query = sa.select(IntegrationException.subject).where(
            IntegrationException.status.in_(("OPEN", "REPLAYING")),
            IntegrationException.subject.in_(list(dict.fromkeys(keys))),
        )
        async with self.sessionmaker() as session:
            open_subjects = set((await session.execute(query)).scalars())
        return [k in open_subjects for k in keys]

    async def _service_items(self, keys: list[str]) -> list[list[Record]]:
        items = await self.erp.service_items()
        return [items for _ in keys]

    async def _expenses(self, keys: list[str]) -> list[dict[int, list[Expense]]]:
        by_project: dict[int, list[Expense]] = defaultdict(list)
        async for page in self.psa.expenses(to=self.as_of):
            for wire in page:
                by_project[wire["project"]["id"]].append(expense_to_canonical(wire, self.psa_ids))
        return [by_project for _ in keys]
