"""Cross-request read caches of one gateway process: upstream aggregates keyed by system ids.

    cache = ReadCache(ttl_s=5, psa_ttl_s=settings.psa.aggregate_ttl_s)   # once per process (the runtime)
    context = build_context(principal=p, crm=crm, psa=psa, erp=erp, sessionmaker=sm, cache=cache)
    cache.invalidate_account(erp_customer_id="1042")   # the ERP change intake, when an invoice changes

What it holds, and how stale each may be:

- ``xrefs`` — the store's cross-references, system id ↔ canonical id. A link never changes once made, so
  a found link is kept for the life of the process; "no link" is asked again after ``miss_ttl_s``
  (backfill or provisioning may link it any time).
- ``invoice_totals`` — the ERP's receivables aggregate per customer, as of a date (``invoice_totals``).
  ``won_value`` — the CRM's closed-won opportunity amounts per account and currency. Both kept ``ttl_s``
  seconds (default 5): a health figure may be that much behind the vendor unless the change intake calls
  ``invalidate_account``.
- ``crm_accounts`` — CRM accounts mapped to canonical ``Account`` rows, by Salesforce Id, and
  ``crm_account_lists`` — the whole (mapped, name-ordered) account list per legal-entity key (``"*"`` for
  all); reading a list also fills ``crm_accounts``. Both kept ``ttl_s`` seconds: a renamed account, a new
  one or a changed legal entity shows up to that much later (``invalidate_account(crm_account_id=...)``
  drops them at once). The rows are the CRM's, unfiltered: the caller's legal entities are applied to
  them per request, after the cache.
- ``psa_time`` — the firm's time aggregates, ``subgraphs.psa.aggregates.TimeAggregates``: refreshed
  incrementally (``updated_since``) at most every ``psa_ttl_s`` (``P2C_PSA__AGGREGATE_TTL_S``).

Concurrent misses of one key share one upstream read (single flight), which runs detached from the
request that started it, so that request's timeout does not fail the others waiting on it.

Refresh ahead (``invoice_totals``, ``won_value``, ``crm_accounts``): a read of missing keys also re-reads
up to ``REFRESH_AHEAD`` held keys that were served in the last two TTLs and are in the last half of
their life (or past it), in the same IN-list request. Keys read together then expire together, so a
steady stream of single-account requests over N accounts costs about one upstream read per TTL, not N.
It never serves a value past its TTL (staleness stays ``ttl_s``); it only reads some keys earlier.

Request code may also ``peek`` (no await, no read): the warm path of account health and of ``account(id)``
takes its values straight from here and goes through the loaders only for what is not held.

Nothing here is per caller: it never holds a per-request DataLoader or anything filtered by a principal —
visibility and legal-entity filtering stay per request, on top of these values.
"""

from __future__ import annotations

import asyncio
import enum
import math
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from datetime import date
from decimal import Decimal
from typing import Any, Generic, TypeVar

from canonical.entities import Account
from canonical.errors import MappingInvalid
from subgraphs.erp.queries import InvoiceTotals
from subgraphs.psa.aggregates import Clock, TimeAggregates

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DEFAULT_TTL_S = 5.0
DEFAULT_MISS_TTL_S = 5.0
#: Keys read along with a miss (``TtlCache(refresh_ahead=)``): within one IN-list request of every vendor
#: (SOQL 300 ids per GET, SuiteQL 500), so the extra keys cost no extra request.
REFRESH_AHEAD = 250


def _retrieve(task: asyncio.Future[Any]) -> None:
    # Every waiter may have gone (cancelled): the error must not be logged as "never retrieved".
    if not task.cancelled():
        task.exception()


class Missing(enum.Enum):
    """What ``TtlCache.peek`` answers for a key it does not hold (``None`` is a value it may hold)."""

    MISSING = enum.auto()


MISSING = Missing.MISSING


class TtlCache(Generic[K, V]):
    """A read-through map with expiry and single-flight misses.

    ``ttl_s`` applies to values, ``none_ttl_s`` (default ``ttl_s``) to ``None`` ("not found")::

        links = TtlCache[str, str | None](ttl_s=math.inf, none_ttl_s=5)
        found = await links.get_many(keys, fetch)   # fetch(missing keys) -> values in their order
    """

    def __init__(
        self,
        *,
        ttl_s: float,
        none_ttl_s: float | None = None,
        maxsize: int = 200_000,
        refresh_ahead: int = 0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.ttl_s, self.none_ttl_s = ttl_s, ttl_s if none_ttl_s is None else none_ttl_s
        self.maxsize, self.clock = maxsize, clock
        if refresh_ahead and (self.none_ttl_s != ttl_s or math.isinf(ttl_s)):
            raise ValueError("refresh_ahead needs one finite TTL for every value")
        self.refresh_ahead = refresh_ahead
        self._served: dict[K, float] = {}  # key → when last served: keys still asked for are worth refreshing
        self._values: dict[K, tuple[float, V]] = {}  # key → (expires at, value)
        self._inflight: dict[K, asyncio.Future[dict[K, V]]] = {}
        self._epoch = 0  # bumped by every invalidation: a read that started before it is not stored
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._values)

    async def get_many(
        self, keys: Sequence[K], fetch: Callable[[list[K]], Awaitable[Sequence[V]]]
    ) -> list[V]:
        now = self.clock()
        found: dict[K, V] = {}
        waits: list[asyncio.Future[dict[K, V]]] = []
        missing: list[K] = []
        for key in dict.fromkeys(keys):
            cached = self._values.get(key)
            if cached is not None and now < cached[0]:
                found[key] = cached[1]
                self.hits += 1
                self._served[key] = now
            elif (shared := self._inflight.get(key)) is not None:
                waits.append(shared)
                self.hits += 1
            else:
                missing.append(key)
        if missing:
            self.misses += len(missing)
            if self.refresh_ahead:
                missing.extend(self._due(now, missing))
            task = asyncio.ensure_future(self._fill(missing, fetch))
            task.add_done_callback(_retrieve)
            self._inflight.update(dict.fromkeys(missing, task))
            waits.append(task)
        for shared in dict.fromkeys(waits):
            values = await asyncio.shield(shared)
            found.update((k, values[k]) for k in keys if k in values)
        return [found[k] for k in keys]

    async def _fill(self, keys: list[K], fetch: Callable[[list[K]], Awaitable[Sequence[V]]]) -> dict[K, V]:
        asked_at, epoch = self.clock(), self._epoch
        try:
            values = dict(zip(keys, await fetch(keys), strict=True))
        finally:
            for key in keys:
                self._inflight.pop(key, None)
        if epoch == self._epoch:
            if len(self._values) + len(values) > self.maxsize:
                self._evict(asked_at)
            for key, value in values.items():
                # staleness counts from before the read: the value may be that old already; re-inserted
                # at the end, so the map stays in expiry order (what ``_due`` relies on)
                self._values.pop(key, None)
                self._values[key] = (asked_at + (self.none_ttl_s if value is None else self.ttl_s), value)
        return values

    def _due(self, now: float, missing: list[K]) -> list[K]:
        """Held keys served in the last two TTLs that are in the last half of their life or past it,
        oldest first, at most ``refresh_ahead``: read along with ``missing``, they expire with it. Requests
        for many keys then cost one upstream read per TTL instead of one per key as each expires."""
        horizon, recent = now + self.ttl_s / 2, now - 2 * self.ttl_s
        taken = set(missing)
        due: list[K] = []
        dead: list[K] = []
        for key, (expires, _value) in self._values.items():
            if expires >= horizon or len(due) >= self.refresh_ahead:
                break  # in expiry order: the rest live longer
            if self._served.get(key, -math.inf) <= recent:
                if expires <= now:
                    dead.append(key)  # expired and no longer asked for: let it go
            elif key not in taken and key not in self._inflight:
                # still asked for: about to expire, or expired with the rest of its cohort (keys read
                # together expire together, and the first to be asked again brings the others)
                due.append(key)
        for key in dead:
            del self._values[key]
            self._served.pop(key, None)
        return due

    def peek(self, key: K) -> V | Missing:
        """The value if held and fresh, else ``MISSING``; never reads upstream, never waits."""
        cached = self._values.get(key)
        now = self.clock()
        if cached is not None and now < cached[0]:
            self.hits += 1
            self._served[key] = now
            return cached[1]
        return MISSING

    def put_many(self, items: Iterable[tuple[K, V]], *, asked_at: float, epoch: int) -> None:
        """Store values another read brought along (read at ``asked_at``, under ``epoch``): nothing when an
        invalidation came since."""
        if epoch != self._epoch:
            return
        values = dict(items)
        if len(self._values) + len(values) > self.maxsize:
            self._evict(asked_at)
        for key, value in values.items():
            self._values.pop(key, None)
            self._values[key] = (asked_at + (self.none_ttl_s if value is None else self.ttl_s), value)

    @property
    def epoch(self) -> int:
        return self._epoch

    def _evict(self, now: float) -> None:
        self._values = {k: v for k, v in self._values.items() if now < v[0]}
        if len(self._values) > self.maxsize // 2:
            self._values.clear()
        self._served = {k: t for k, t in self._served.items() if k in self._values}

    def invalidate(self, predicate: Callable[[K], bool] | None = None) -> None:
        """Forget every key (``predicate`` None) or those it matches; reads in flight are not stored."""
        self._epoch += 1
        if predicate is None:
            self._values.clear()
            self._served.clear()
        else:
            for key in [k for k in self._values if predicate(k)]:
                del self._values[key]
                self._served.pop(key, None)

    def forget_misses(self) -> None:
        """Forget the ``None`` values (and do not store reads in flight); values found stay."""
        self._epoch += 1
        self._values = {k: v for k, v in self._values.items() if v[1] is not None}


#: (direction "system" | "canonical", system, key) → the other side's id, None when not linked
XrefKey = tuple[str, str, str]
#: (as_of, DSO window start, ERP customer internal id)
TotalsKey = tuple[date, date, str]


class ReadCache:
    """The process's cross-request caches (see the module docstring). Create once per process."""

    def __init__(
        self,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        miss_ttl_s: float = DEFAULT_MISS_TTL_S,
        psa_ttl_s: float = DEFAULT_TTL_S,
        clock: Clock = time.monotonic,
    ) -> None:
        self.xrefs: TtlCache[XrefKey, str | None] = TtlCache(
            ttl_s=math.inf, none_ttl_s=miss_ttl_s, clock=clock
        )
        self.invoice_totals: TtlCache[TotalsKey, list[InvoiceTotals]] = TtlCache(
            ttl_s=ttl_s, refresh_ahead=REFRESH_AHEAD, clock=clock
        )
        self.won_value: TtlCache[str, dict[str, Decimal]] = TtlCache(
            ttl_s=ttl_s, refresh_ahead=REFRESH_AHEAD, clock=clock
        )
        # a row that cannot be mapped is kept as its MappingInvalid, as the per-request loader gives it
        self.crm_accounts: TtlCache[str, Account | MappingInvalid | None] = TtlCache(
            ttl_s=ttl_s, refresh_ahead=REFRESH_AHEAD, clock=clock
        )
        self.crm_account_lists: TtlCache[str, list[Account]] = TtlCache(ttl_s=ttl_s, clock=clock)
        self.psa_time = TimeAggregates(ttl_s=psa_ttl_s, clock=clock)

    def invalidate_account(
        self,
        *,
        crm_account_id: str | None = None,
        erp_customer_id: str | None = None,
        psa_client_id: int | None = None,
    ) -> None:
        """Drop what is cached for one account in the systems named, so the next read asks the vendor."""
        if erp_customer_id is not None:
            self.invoice_totals.invalidate(lambda key: key[2] == erp_customer_id)
        if crm_account_id is not None:
            self.won_value.invalidate(lambda key: key == crm_account_id)
            self.crm_accounts.invalidate(lambda key: key == crm_account_id)
            self.crm_account_lists.invalidate()
        if psa_client_id is not None:
            self.psa_time.invalidate()  # incremental: the next read picks up what changed, firm-wide

    def invalidate_all(self) -> None:
        """Everything but found cross-references (they never change)."""
        self.invoice_totals.invalidate()
        self.won_value.invalidate()
        self.crm_accounts.invalidate()
        self.crm_account_lists.invalidate()
        self.xrefs.forget_misses()
        self.psa_time.invalidate()
