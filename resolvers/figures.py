"""Account figures from aggregated upstream reads, through ``canonical.analytics``, once per account.

Nothing here reads invoices one by one: the ERP answers SUM/GROUP BY per customer (``invoice_totals``,
which also carries the DSO window's billing and the credit memos), the PSA's time comes summed per client
from the time read model (``subgraphs.psa.aggregates``), the CRM's won opportunities give the contracted
value. With the process's ``ReadCache`` these aggregates may be a few seconds old (see
``resolvers.cache``).

``load_figures`` is the batch function of the per-request ``account_figures`` loader: for every account of
a request level it asks each system's aggregate loader once (``load_many``), then computes each account's
figures once, as plain values — the health fields only read them, so a status does not recompute aging,
margin and DSO, and a field costs no coroutine. Each system's part is kept apart (a value or the error of
its read), so when one system is down the figures of the others still resolve and only the fields that
need it fail, with that system's error::

    figures = await ctx.loaders.account_figures.load(AccountRef.of(account))
    figures.receivables().billed       # raises the ERP's error if its read failed

Definitions (see ``canonical.analytics``): billed = invoices dated ≤ as_of − credit memos; revenue and
cost for margin are the PSA's time at bill rate and at cost rate; contracted = won opportunities' amounts;
backlog = contracted − billed, floored at zero; DSO over the last 90 days.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Generic, TypeVar

from canonical import analytics
from canonical.entities import Account
from canonical.money import Money
from resolvers.cache import MISSING, Missing
from subgraphs.erp.queries import InvoiceTotals
from subgraphs.psa.aggregates import TimeTotals

if TYPE_CHECKING:
    from resolvers.loaders import Loaders

DSO_WINDOW_DAYS = 90
T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class AccountRef:
    """The loader key of one account: what the CRM row says; the store adds the ERP and PSA links."""

    canonical_id: str
    currency: str
    crm_id: str | None
    erp_id: str | None  # the CRM's copy of the ERP customer id, used when the store has no link

    @classmethod
    def of(cls, account: Account) -> AccountRef:
        return cls(account.id, account.currency, account.crm_id, account.erp_id)


@dataclass(frozen=True, slots=True)
class AccountKeys:
    """Where one account lives in each system, and the currency its figures are reported in."""

    canonical_id: str
    currency: str
    crm_id: str | None
    erp_id: str | None
    psa_id: str | None


class Part(Generic[T]):
    """A figure, or the error that kept it from being computed (raised again on every ``get``)."""

    __slots__ = ("_error", "_value")

    def __init__(self, compute: Callable[[], T]) -> None:
        self._error: BaseException | None = None
        try:
            self._value: T | None = compute()
        except Exception as exc:
            self._value, self._error = None, exc

    @classmethod
    def of(cls, value: T) -> Part[T]:
        part = cls.__new__(cls)
        part._value, part._error = value, None
        return part

    def get(self) -> T:
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Receivables:
    """The ERP's figures of one account, in the account's currency."""

    billed: Money  # invoices dated ≤ as_of, less credit memos
    paid: Money
    aging: analytics.Aging
    dso: Decimal | None
    open_total: Money  # aging.total and aging.overdue, summed once (the Aging properties sum each time)
    overdue: Money


class AccountFigures:
    """Every health figure of one account, computed once (see the module docstring)."""

    __slots__ = ("backlog", "health", "keys", "margin", "receivables")

    def __init__(
        self,
        keys: AccountKeys,
        totals: Part[list[InvoiceTotals]],
        won: Part[dict[str, Decimal]],
        time: Part[list[TimeTotals]],
        thresholds: analytics.HealthThresholds,
    ) -> None:
        self.keys = keys
        c = keys.currency
        self.receivables = Part(lambda: receivables(totals.get(), c))
        self.margin = Part(lambda: analytics.margin(*revenue_and_cost(time.get(), c)))
        self.backlog = Part(
            lambda: analytics.backlog(Money(won.get().get(c, Decimal(0)), c), self.receivables.get().billed)
        )

        def health() -> analytics.Health:
            r = self.receivables.get()
            return analytics.health(r.aging, margin=self.margin.get(), dso=r.dso, thresholds=thresholds)

        self.health = Part(health)


def receivables(rows: list[InvoiceTotals], currency: str) -> Receivables:
    """From the customer's ``invoice_totals`` rows (one per currency). Billing in the DSO window and
    credit memos are taken across currencies, the other figures in the account's currency."""
    mine = [t for t in rows if t.currency == currency]
    credited = sum((t.credited.amount for t in rows if t.credited), Decimal(0))
    in_window = sum((t.billed_in_window.amount for t in rows if t.billed_in_window), Decimal(0))
    zero = Decimal(0)
    buckets = {"1-30": zero, "31-60": zero, "61-90": zero, "91+": zero}
    billed = paid = remaining = overdue = zero
    for t in mine:
        billed += t.billed.amount
        paid += t.paid.amount
        remaining += t.remaining.amount
        overdue += t.overdue.amount
        for label, money in t.overdue_buckets.items():
            if label in buckets:
                buckets[label] += money.amount
    aging = analytics.Aging(
        Money(remaining - overdue, currency),
        Money(buckets["1-30"], currency),
        Money(buckets["31-60"], currency),
        Money(buckets["61-90"], currency),
        Money(buckets["91+"], currency),
    )
    # what aging.overdue and aging.total add up, grouped as they do
    past_due = buckets["1-30"] + buckets["31-60"] + (buckets["61-90"] + buckets["91+"])
    total = Money((remaining - overdue) + past_due, currency)
    dso = analytics.dso(total, Money(in_window, currency), DSO_WINDOW_DAYS) if rows else None
    return Receivables(
        Money(billed - credited, currency),
        Money(paid, currency),
        aging,
        dso,
        total,
        Money(past_due, currency),
    )


def revenue_and_cost(totals: list[TimeTotals], currency: str) -> tuple[Money, Money]:
    """Time at bill rate and at cost rate; time in another currency raises ``CurrencyMismatch``."""
    revenue = Money.sum((Money(t.revenue, t.currency) for t in totals if t.revenue is not None), currency)
    cost = Money.sum((Money(t.cost, t.currency) for t in totals if t.cost is not None), currency)
    return revenue, cost


async def _read(load: Callable[[list[K]], Awaitable[list[V]]], keys: list[K]) -> Part[dict[K, V]]:
    """One system's aggregates for ``keys`` as a part: the values by key, or the read's error."""
    try:
        values = await load(keys) if keys else []
    except Exception as exc:
        error = exc

        def failed() -> dict[K, V]:
            raise error

        return Part(failed)
    found = dict(zip(keys, values, strict=True))
    return Part(lambda: found)


def _pick(part: Part[dict[K, V]], key: K | None, empty: V) -> Part[V]:
    def value() -> V:
        found = part.get()
        return empty if key is None else found[key]

    return Part(value)


def _netsuite(erp_id: str | None) -> str | None:
    """The CRM's copy of the ERP id, unless it names a Tryton party (``tryton:<id>``)."""
    return None if erp_id is None or erp_id.startswith("tryton:") else erp_id


def _tryton_totals(loaders: Loaders) -> Callable[[list[str]], Awaitable[list[list[InvoiceTotals]]]]:
    async def load(keys: list[str]) -> list[list[InvoiceTotals]]:
        if not keys:
            return []
        return list(await loaders.tryton_invoice_totals.load_many([k.removeprefix("tryton:") for k in keys]))

    return load


def _merged(
    netsuite: Part[dict[str, list[InvoiceTotals]]], tryton: Part[dict[str, list[InvoiceTotals]]]
) -> Part[dict[str, list[InvoiceTotals]]]:
    return Part(lambda: {**netsuite.get(), **tryton.get()})


async def load_figures(
    loaders: Loaders, refs: Sequence[AccountRef], thresholds: analytics.HealthThresholds
) -> list[AccountFigures]:
    """The batch function of ``Loaders.account_figures``: one ``load_many`` per system for every ref."""
    ids = [r.canonical_id for r in refs]
    # one after the other: each batch is a store session, and links found are cached for good anyway
    erp_links = await loaders.xref_to_system["erp"].load_many(ids)
    psa_links = await loaders.xref_to_system["psa"].load_many(ids)
    keys = [
        AccountKeys(r.canonical_id, r.currency, r.crm_id, erp or _netsuite(r.erp_id), psa)
        for r, erp, psa in zip(refs, erp_links, psa_links, strict=True)
    ]
    # An account booked in Tryton: its receivables from Tryton, keyed "tryton:<party id>" (issue 9).
    tryton_links = await loaders.xref_to_system["tryton"].load_many(ids) if loaders.tryton is not None else []
    on_tryton = {k.canonical_id: f"tryton:{t}" for k, t in zip(keys, tryton_links, strict=False) if t}
    keys = [dataclasses.replace(k, erp_id=on_tryton.get(k.canonical_id, k.erp_id)) for k in keys]
    tryton_ids = set(on_tryton.values())
    erp_ids = list(dict.fromkeys(k.erp_id for k in keys if k.erp_id and k.erp_id not in tryton_ids))
    tryton_keys = sorted(tryton_ids)
    crm_ids = list(dict.fromkeys(k.crm_id for k in keys if k.crm_id is not None))
    psa_ids = list(dict.fromkeys(int(k.psa_id) for k in keys if k.psa_id is not None))
    totals, won, time, tryton = await asyncio.gather(
        _read(loaders.erp_invoice_totals.load_many, erp_ids),
        _read(loaders.crm_won_value.load_many, crm_ids),
        _read(loaders.psa_client_time.load_many, psa_ids),
        _read(_tryton_totals(loaders), tryton_keys),
    )
    if tryton_ids:
        totals = _merged(totals, tryton)
    return [
        AccountFigures(
            k,
            _pick(totals, k.erp_id, []),
            _pick(won, k.crm_id, {}),
            _pick(time, None if k.psa_id is None else int(k.psa_id), []),
            thresholds,
        )
        for k in keys
    ]


def warm_figures(loaders: Loaders, ref: AccountRef) -> AccountFigures | None:
    """The figures from the process's ``ReadCache`` alone — links, invoice totals, won value and a fresh
    time model — computed at once, without a loader or an await; None when any piece is not held (then
    ``load_figures`` reads what is missing). Same values as ``load_figures`` would give from that cache."""
    cache = loaders.cache
    if cache is None:
        return None
    if loaders.tryton is not None:
        # an account booked in Tryton takes its receivables from there (load_figures): not from here
        booked = cache.xrefs.peek(("system", "tryton", ref.canonical_id))
        if booked is MISSING or booked is not None:
            return None
    erp = cache.xrefs.peek(("system", "erp", ref.canonical_id))
    psa = cache.xrefs.peek(("system", "psa", ref.canonical_id))
    if erp is MISSING or psa is MISSING:
        return None
    keys = AccountKeys(ref.canonical_id, ref.currency, ref.crm_id, erp or _netsuite(ref.erp_id), psa)
    totals: list[InvoiceTotals] | Missing = []
    if keys.erp_id is not None:
        totals = cache.invoice_totals.peek((loaders.as_of, loaders.window_start, keys.erp_id))
    won: dict[str, Decimal] | Missing = {}
    if keys.crm_id is not None:
        won = cache.won_value.peek(keys.crm_id)
    time: list[TimeTotals] = []
    if keys.psa_id is not None:
        by_client = cache.psa_time.peek_by_client(loaders.as_of)
        if by_client is None:
            return None
        time = by_client.get(int(keys.psa_id), [])
    if totals is MISSING or won is MISSING:
        return None
    return AccountFigures(keys, Part.of(totals), Part.of(won), Part.of(time), loaders.thresholds)


def percent(fraction: Decimal | None) -> Decimal | None:
    return None if fraction is None else (fraction * 100).quantize(Decimal("0.01"))
