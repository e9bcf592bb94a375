"""The firm's time as aggregates: a per-process read model over the PSA's time entries.

    model = TimeAggregates(ttl_s=config.aggregate_ttl_s)
    totals = await model.by_client(psa, as_of=date(2026, 11, 27))   # {client id: [TimeTotals, ...]}
    model.invalidate()                                              # the next read refreshes

Loaded once — page 1, then the other pages in parallel once ``total_pages`` is known — and kept current
with ``updated_since`` reads, at most one per ``ttl_s`` seconds; concurrent readers share one refresh
(single flight) and a failed refresh fails its readers, never leaves a half-applied state. Each entry's
contribution is kept by id, so an edited, re-rated or unapproved entry replaces what it added before.
Harvest's ``updated_since`` does not report deletions: a full reload every ``reload_s`` seconds drops
deleted entries (and anything a page-numbered first load missed while entries were being created).

Aggregated straight from the wire dicts (hours, rates, billable, spent date, client, project): no
canonical ``TimeEntry`` and no canonical ids. Figures match ``canonical.analytics.time_revenue`` and
``time_cost``: revenue is hours × bill rate of billable entries with a rate (non-billable entries with a
rate add zero), cost is hours × cost rate of entries with one; an entry without the rate adds nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar, cast

from subgraphs.psa.client import PsaClient
from subgraphs.psa.wire import WireTimeEntry, epoch_us

K = TypeVar("K", bound=Hashable)
Clock = Callable[[], float]

PATH = "/v2/time_entries"


@dataclass(frozen=True, slots=True)
class Contribution:
    """What one time entry adds to its client's and its project's totals."""

    client_id: int
    project_id: int
    currency: str
    spent_date: str  # ISO 8601: compares like the date
    hours: Decimal
    revenue: Decimal | None  # None: no bill rate
    cost: Decimal | None  # None: no cost rate
    version: int  # updated_at in microseconds (strings do not compare: "…00Z" sorts after "…00.5Z")


@dataclass(slots=True)
class TimeTotals:
    """Time of one client or project in one currency; ``revenue``/``cost`` None when no entry had a rate."""

    currency: str
    hours: Decimal = Decimal(0)
    revenue: Decimal | None = None
    cost: Decimal | None = None
    entries: int = 0

    def add(self, c: Contribution) -> None:
        self.hours += c.hours
        self.entries += 1
        if c.revenue is not None:
            self.revenue = c.revenue if self.revenue is None else self.revenue + c.revenue
        if c.cost is not None:
            self.cost = c.cost if self.cost is None else self.cost + c.cost


def _decimal(value: float | int | str) -> Decimal:
    # as subgraphs.psa.mapping reads it: repr keeps 7.1 as 7.1, not its binary expansion
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def contribution(wire: WireTimeEntry) -> Contribution:
    hours = _decimal(wire["hours"])
    rate, cost_rate = wire["billable_rate"], wire["cost_rate"]
    revenue = None
    if rate is not None:
        revenue = _decimal(rate) * hours if wire["billable"] else Decimal(0)
    return Contribution(
        client_id=wire["client"]["id"],
        project_id=wire["project"]["id"],
        currency=wire["client"].get("currency") or "USD",
        spent_date=wire["spent_date"],
        hours=hours,
        revenue=revenue,
        cost=None if cost_rate is None else _decimal(cost_rate) * hours,
        version=epoch_us(wire["updated_at"]),
    )


def group(
    contributions: Iterable[Contribution], key: Callable[[Contribution], K], as_of: date | None = None
) -> dict[K, list[TimeTotals]]:
    """Totals per ``key`` and currency of the contributions spent on or before ``as_of``."""
    limit = as_of.isoformat() if as_of is not None else None
    found: dict[K, dict[str, TimeTotals]] = {}
    for c in contributions:
        if limit is not None and c.spent_date > limit:
            continue
        by_currency = found.setdefault(key(c), {})
        totals = by_currency.get(c.currency)
        if totals is None:
            totals = by_currency[c.currency] = TimeTotals(c.currency)
        totals.add(c)
    return {k: list(v.values()) for k, v in found.items()}


def _by_client(c: Contribution) -> int:
    return c.client_id


def _by_project_month(c: Contribution) -> tuple[int, str]:
    return c.project_id, c.spent_date[:7]


class TimeAggregates:
    """The read model. One per process (``resolvers.cache.ReadCache`` holds it); see the module doc."""

    def __init__(self, *, ttl_s: float = 5.0, reload_s: float = 600.0, clock: Clock = time.monotonic) -> None:
        self.ttl_s, self.reload_s, self.clock = ttl_s, reload_s, clock
        self._entries: dict[int, Contribution] = {}
        self._cursor: tuple[int, str] | None = None  # greatest (version, updated_at) seen: updated_since
        self._checked_at: float | None = None  # last successful refresh
        self._loaded_at: float | None = None  # last successful full load
        self._generation = 0  # bumped whenever an entry changes; keys the memoised groupings
        self._memo: dict[tuple[str, date | None], tuple[int, dict[Any, list[TimeTotals]]]] = {}
        self._refresh: asyncio.Future[None] | None = None
        self.stats = {"full_loads": 0, "incremental_reads": 0, "requests": 0, "changed": 0}

    # -- reads ---------------------------------------------------------------------------------------------
    async def by_client(self, psa: PsaClient, as_of: date | None = None) -> dict[int, list[TimeTotals]]:
        """Totals per PSA client id (one per currency; in practice one) of time spent up to ``as_of``."""
        await self.fresh(psa)
        return self._grouped("client", _by_client, as_of)

    def peek_by_client(self, as_of: date | None = None) -> dict[int, list[TimeTotals]] | None:
        """``by_client`` when the model is fresh (no refresh due), else None; never reads, never waits."""
        if self._checked_at is None or self.clock() - self._checked_at >= self.ttl_s:
            return None
        return self._grouped("client", _by_client, as_of)

    async def by_project_month(
        self, psa: PsaClient, as_of: date | None = None
    ) -> dict[tuple[int, str], list[TimeTotals]]:
        """Totals per (PSA project id, ``YYYY-MM`` of the spent date) of time spent up to ``as_of``."""
        await self.fresh(psa)
        return self._grouped("project_month", _by_project_month, as_of)

    def _grouped(
        self, name: str, key: Callable[[Contribution], K], as_of: date | None
    ) -> dict[K, list[TimeTotals]]:
        memo = self._memo.get((name, as_of))
        if memo is not None and memo[0] == self._generation:
            return cast("dict[K, list[TimeTotals]]", memo[1])
        grouped = group(self._entries.values(), key, as_of)
        if len(self._memo) > 16:  # a handful of dates are asked for at a time (mostly today)
            self._memo.clear()
        self._memo[(name, as_of)] = (self._generation, grouped)
        return grouped

    def invalidate(self) -> None:
        """Make the next read refresh (an incremental read; the change intake calls this on a webhook)."""
        self._checked_at = None

    # -- refresh -------------------------------------------------------------------------------------------
    async def fresh(self, psa: PsaClient) -> None:
        """Refresh if older than ``ttl_s``; concurrent callers share one refresh."""
        now = self.clock()
        if self._checked_at is not None and now - self._checked_at < self.ttl_s:
            return
        if self._refresh is None:
            self._refresh = asyncio.ensure_future(self._run_refresh(psa))
        # shield: one caller's cancellation (its request timed out) must not cancel everyone's refresh
        await asyncio.shield(self._refresh)

    async def _run_refresh(self, psa: PsaClient) -> None:
        try:
            started = self.clock()
            full = self._loaded_at is None or started - self._loaded_at >= self.reload_s
            if full:
                await self._full_load(psa)
                self._loaded_at = started
            else:
                await self._incremental(psa)
            self._checked_at = started
        finally:
            self._refresh = None

    async def _page(self, psa: PsaClient, params: dict[str, str]) -> dict[str, Any]:
        self.stats["requests"] += 1
        response = await psa.request("GET", PATH, params=params)
        return cast("dict[str, Any]", response.json())

    async def _full_load(self, psa: PsaClient) -> None:
        per_page = str(psa.config.per_page)
        first = await self._page(psa, {"page": "1", "per_page": per_page})
        pages = int(first.get("total_pages") or 1)
        rest = await asyncio.gather(
            *(self._page(psa, {"page": str(n), "per_page": per_page}) for n in range(2, pages + 1))
        )
        entries: dict[int, Contribution] = {}
        cursor: tuple[int, str] | None = None
        for body in (first, *rest):
            for wire in cast("list[WireTimeEntry]", body.get("time_entries", [])):
                c = entries[wire["id"]] = contribution(wire)
                if cursor is None or c.version > cursor[0]:
                    cursor = (c.version, wire["updated_at"])
        # swapped in whole: a reader never sees half a load
        self._entries, self._cursor = entries, cursor
        self._generation += 1
        self.stats["full_loads"] += 1

    async def _incremental(self, psa: PsaClient) -> None:
        changed: list[WireTimeEntry] = []
        # cursor paging: keyset by id, so entries edited during the read are not skipped
        since = self._cursor[1] if self._cursor is not None else None
        async for page in psa.time_entries(updated_since=since):
            self.stats["requests"] += 1
            changed.extend(page)
        self.stats["incremental_reads"] += 1
        applied = 0
        cursor = self._cursor
        for wire in changed:
            new = contribution(wire)
            old = self._entries.get(wire["id"])
            if old is not None and old.version >= new.version:
                continue  # updated_since is inclusive: the newest entry comes back every time
            self._entries[wire["id"]] = new
            applied += 1
            if cursor is None or new.version > cursor[0]:
                cursor = (new.version, wire["updated_at"])
        self._cursor = cursor
        if applied:
            self._generation += 1
            self.stats["changed"] += applied
