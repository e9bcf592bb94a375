"""Account figures from aggregated upstream reads, through ``canonical.analytics``.

Nothing here reads invoices one by one: the ERP answers SUM/GROUP BY per customer (``invoice_totals`` and
the billing window), the PSA's time comes summed per client from the time read model
(``subgraphs.psa.aggregates``), the CRM's won opportunities give the contracted value. With the process's
``ReadCache`` these aggregates may be a few seconds old (see ``resolvers.cache``). Each figure awaits
only the loaders it needs, so when one system is down the figures of the others still resolve.

Definitions (see ``canonical.analytics``): billed = invoices dated ≤ as_of − credit memos; revenue and
cost for margin are the PSA's time at bill rate and at cost rate; contracted = won opportunities' amounts;
backlog = contracted − billed, floored at zero; DSO over the last 90 days.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal

from canonical import analytics
from canonical.money import Money
from resolvers.context import Context
from resolvers.loaders import DSO_WINDOW_DAYS
from subgraphs.erp.queries import InvoiceTotals


@dataclass(frozen=True)
class AccountKeys:
    """Where one account lives in each system, and the currency its figures are reported in."""

    canonical_id: str
    currency: str
    crm_id: str | None
    erp_id: str | None
    psa_id: str | None


async def _totals(ctx: Context, keys: AccountKeys) -> list[InvoiceTotals]:
    if keys.erp_id is None:
        return []
    rows = await ctx.loaders.erp_invoice_totals.load(keys.erp_id)
    return [row for row in rows if row.currency == keys.currency]


async def billed_to_date(ctx: Context, keys: AccountKeys) -> Money:
    if keys.erp_id is None:
        return Money.zero(keys.currency)
    totals, window = await asyncio.gather(
        _totals(ctx, keys), ctx.loaders.erp_billing_window.load(keys.erp_id)
    )
    billed = Money.sum((t.billed for t in totals), keys.currency)
    return billed - Money(window.credited, keys.currency)


async def paid_to_date(ctx: Context, keys: AccountKeys) -> Money:
    return Money.sum((t.paid for t in await _totals(ctx, keys)), keys.currency)


async def aging(ctx: Context, keys: AccountKeys) -> analytics.Aging:
    totals = await _totals(ctx, keys)
    c = keys.currency

    def bucket(label: str) -> Money:
        return Money.sum((t.overdue_buckets.get(label, Money.zero(c)) for t in totals), c)

    remaining = Money.sum((t.remaining for t in totals), c)
    overdue = Money.sum((t.overdue for t in totals), c)
    return analytics.Aging(
        remaining - overdue, bucket("1-30"), bucket("31-60"), bucket("61-90"), bucket("91+")
    )


async def contracted(ctx: Context, keys: AccountKeys) -> Money:
    if keys.crm_id is None:
        return Money.zero(keys.currency)
    won = await ctx.loaders.crm_won_value.load(keys.crm_id)  # closed-won amounts by currency
    return Money(won.get(keys.currency, Decimal(0)), keys.currency)


async def backlog(ctx: Context, keys: AccountKeys) -> Money:
    value, billed = await asyncio.gather(contracted(ctx, keys), billed_to_date(ctx, keys))
    return analytics.backlog(value, billed)


async def revenue_and_cost(ctx: Context, keys: AccountKeys) -> tuple[Money, Money]:
    if keys.psa_id is None:
        return Money.zero(keys.currency), Money.zero(keys.currency)
    # time_revenue / time_cost, summed by the PSA read model; a client in another currency still raises
    totals = await ctx.loaders.psa_client_time.load(int(keys.psa_id))
    revenue = Money.sum(
        (Money(t.revenue, t.currency) for t in totals if t.revenue is not None), keys.currency
    )
    cost = Money.sum((Money(t.cost, t.currency) for t in totals if t.cost is not None), keys.currency)
    return revenue, cost


async def margin(ctx: Context, keys: AccountKeys) -> Decimal | None:
    revenue, cost = await revenue_and_cost(ctx, keys)
    return analytics.margin(revenue, cost)


async def dso(ctx: Context, keys: AccountKeys) -> Decimal | None:
    if keys.erp_id is None:
        return None
    receivables, window = await asyncio.gather(
        aging(ctx, keys), ctx.loaders.erp_billing_window.load(keys.erp_id)
    )
    return analytics.dso(receivables.total, Money(window.billed_in_window, keys.currency), DSO_WINDOW_DAYS)


async def health(ctx: Context, keys: AccountKeys) -> analytics.Health:
    receivables, fraction, days = await asyncio.gather(aging(ctx, keys), margin(ctx, keys), dso(ctx, keys))
    return analytics.health(receivables, margin=fraction, dso=days, thresholds=ctx.thresholds)


def percent(fraction: Decimal | None) -> Decimal | None:
    return None if fraction is None else (fraction * 100).quantize(Decimal("0.01"))
