"""Project-to-cash figures: pure functions over canonical objects and ``Money``.

Every function takes the ``currency`` it reports in, so an empty input still has a well-defined zero,
and mixing currencies raises ``CurrencyMismatch`` instead of adding euros to dollars; convert first.

Definitions (``as_of`` is inclusive, days are calendar days):

- *billed to date*: totals of issued invoices (not draft, not voided) dated on or before ``as_of``,
  less credit memos dated on or before ``as_of``.
- *paid to date*: ``amount_paid`` of issued invoices — the ERP's applied amounts in invoice currency, so a
  payment received in another currency counts at what it settled.
- *open receivables*: ``amount_remaining`` of issued invoices.
- *aging*: open receivables by days past the due date: current (not yet past due), 1–30, 31–60, 61–90,
  over 90. The brief's "0–30" bucket is ``current + days_1_30`` (``Aging.within_30``); keeping "not yet
  due" apart is what makes "overdue > 0" visible.
- *backlog*: contracted − billed, floored at zero: it is work still to bill, and overbilling is a different
  signal (``overbilled``), not negative backlog.
- *margin*: (revenue − cost) / revenue as a fraction; ``None`` when revenue is zero (undefined, not 0 %).
- *DSO*: open receivables ÷ billed in the last ``window_days`` days × ``window_days`` (the simple
  "average billing" method), rounded to 0.1 day; ``None`` when nothing was billed in the window.
- *health*: RED if over-60-day receivables exceed ``red_over_60_share`` of receivables (25 %) or margin
  is below ``red_margin_below`` (10 %); else AMBER if anything is overdue, DSO exceeds
  ``amber_dso_above`` (60 days) or margin is below ``amber_margin_below`` (25 %); else GREEN. Every rule
  that fires adds a reason, so a RED account also lists its AMBER causes. Unknown margin or DSO fires
  nothing: no revenue is not bad health.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from canonical.entities import Contract, CreditMemo, Invoice, TimeEntry
from canonical.enums import HealthStatus
from canonical.errors import ValidationFailed
from canonical.money import CurrencyMismatch, Money


def _issued(invoices: Iterable[Invoice], as_of: date | None) -> list[Invoice]:
    return [inv for inv in invoices if inv.counts and (as_of is None or inv.tran_date <= as_of)]


def billed_to_date(
    invoices: Iterable[Invoice],
    currency: str,
    *,
    credit_memos: Iterable[CreditMemo] = (),
    as_of: date | None = None,
) -> Money:
    billed = Money.sum((inv.total for inv in _issued(invoices, as_of)), currency)
    credited = Money.sum(
        (memo.amount for memo in credit_memos if as_of is None or memo.date <= as_of), currency
    )
    return billed - credited


def billed_between(invoices: Iterable[Invoice], start: date, end: date, currency: str) -> Money:
    """Totals of issued invoices dated ``start``..``end``, both inclusive."""
    return Money.sum((inv.total for inv in _issued(invoices, end) if inv.tran_date >= start), currency)


def paid_to_date(invoices: Iterable[Invoice], currency: str, *, as_of: date | None = None) -> Money:
    return Money.sum((inv.amount_paid for inv in _issued(invoices, as_of)), currency)


def open_receivables(invoices: Iterable[Invoice], currency: str, *, as_of: date | None = None) -> Money:
    return Money.sum((inv.amount_remaining for inv in _issued(invoices, as_of)), currency)


@dataclass(frozen=True, slots=True)
class Aging:
    """Open receivables by days past due. Buckets are disjoint and sum to ``total``."""

    current: Money
    days_1_30: Money
    days_31_60: Money
    days_61_90: Money
    over_90: Money

    @property
    def total(self) -> Money:
        return self.current + self.overdue

    @property
    def overdue(self) -> Money:
        return self.days_1_30 + self.days_31_60 + self.over_60

    @property
    def over_60(self) -> Money:
        return self.days_61_90 + self.over_90

    @property
    def within_30(self) -> Money:
        return self.current + self.days_1_30


def aging(invoices: Iterable[Invoice], as_of: date, currency: str) -> Aging:
    buckets = [Money.zero(currency) for _ in range(5)]
    for inv in _issued(invoices, as_of):
        days = inv.days_past_due(as_of)
        index = 0 if days <= 0 else 1 if days <= 30 else 2 if days <= 60 else 3 if days <= 90 else 4
        buckets[index] = buckets[index] + inv.amount_remaining
    return Aging(*buckets)


def overdue_total(invoices: Iterable[Invoice], as_of: date, currency: str) -> Money:
    return aging(invoices, as_of, currency).overdue


def contracted_value(contracts: Iterable[Contract], currency: str) -> Money:
    """Current (amended) value of the contracts."""
    return Money.sum((c.current_value for c in contracts), currency)


def backlog(contracted: Money, billed: Money) -> Money:
    """Contracted but not yet billed; never negative (see ``overbilled``)."""
    remaining = contracted - billed
    return remaining if remaining.amount > 0 else Money.zero(contracted.currency)


def overbilled(contracted: Money, billed: Money) -> Money:
    """Billed beyond the contracted value; zero when within it."""
    excess = billed - contracted
    return excess if excess.amount > 0 else Money.zero(contracted.currency)


def time_revenue(entries: Iterable[TimeEntry], currency: str) -> Money:
    """Billable value of time entries (hours × bill rate); entries without a rate add nothing."""
    return Money.sum((a for e in entries if (a := e.billable_amount) is not None), currency)


def time_cost(entries: Iterable[TimeEntry], currency: str) -> Money:
    """Cost of time entries (hours × cost rate, billable or not); entries without a rate add nothing."""
    return Money.sum((c for e in entries if (c := e.cost_amount) is not None), currency)


def margin(revenue: Money, cost: Money) -> Decimal | None:
    """(revenue − cost) / revenue as a fraction (0.25 is 25 %); ``None`` when revenue is zero."""
    profit = revenue - cost  # checks the currencies even when revenue is zero
    if revenue.is_zero():
        return None
    return profit.amount / revenue.amount


_TENTH = Decimal("0.1")


def dso(receivables: Money, billed_in_window: Money, window_days: int = 90) -> Decimal | None:
    """Days sales outstanding; ``None`` when nothing was billed in the window."""
    if window_days < 1:
        raise ValidationFailed("must be at least 1", subject="window_days")
    if receivables.currency != billed_in_window.currency:  # checked before the zero shortcut hides it
        raise CurrencyMismatch(receivables.currency, billed_in_window.currency)
    if billed_in_window.is_zero():
        return None
    days = receivables.amount / billed_in_window.amount * window_days
    return days.quantize(_TENTH, rounding=ROUND_HALF_UP)


def dso_for(
    invoices: Iterable[Invoice], as_of: date, currency: str, *, window_days: int = 90
) -> Decimal | None:
    """DSO from invoices: receivables as of ``as_of`` over billing in the ``window_days`` ending then."""
    issued = _issued(invoices, as_of)
    start = as_of - timedelta(days=window_days - 1)
    billed = billed_between(issued, start, as_of, currency)
    return dso(open_receivables(issued, currency), billed, window_days)


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    """Limits of the health rules (fractions, not percents; DSO in days). See the module docstring."""

    red_over_60_share: Decimal = Decimal("0.25")
    red_margin_below: Decimal = Decimal("0.10")
    amber_margin_below: Decimal = Decimal("0.25")
    amber_dso_above: Decimal = Decimal(60)
    amber_when_overdue: bool = True

    def __post_init__(self) -> None:
        if self.red_margin_below > self.amber_margin_below:
            # Otherwise a margin could be RED without ever having been AMBER, which reads as a typo.
            raise ValidationFailed("red_margin_below exceeds amber_margin_below", subject="thresholds")
        if not Decimal(0) <= self.red_over_60_share <= Decimal(1):
            raise ValidationFailed("red_over_60_share must be between 0 and 1", subject="thresholds")


@dataclass(frozen=True, slots=True)
class Health:
    status: HealthStatus
    reasons: tuple[str, ...] = ()


def _pct(value: Decimal) -> str:
    # Two decimals: coarser rounding would print "margin 25% is below 25%" for 24.99 %.
    return f"{(value * 100).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP).normalize():f}%"


def health(
    receivables: Aging,
    *,
    margin: Decimal | None,
    dso: Decimal | None,
    thresholds: HealthThresholds | None = None,
) -> Health:
    t = thresholds or HealthThresholds()
    red: list[str] = []
    amber: list[str] = []
    total = receivables.total
    if total.amount > 0:
        share = receivables.over_60.amount / total.amount
        if share > t.red_over_60_share:
            red.append(f"{_pct(share)} of receivables are more than 60 days past due "
                       f"(limit {_pct(t.red_over_60_share)})")
    if margin is not None and margin < t.red_margin_below:
        red.append(f"margin {_pct(margin)} is below {_pct(t.red_margin_below)}")
    elif margin is not None and margin < t.amber_margin_below:
        amber.append(f"margin {_pct(margin)} is below {_pct(t.amber_margin_below)}")
    if t.amber_when_overdue and receivables.overdue.amount > 0:
        amber.append(f"{receivables.overdue} is past due")
    if dso is not None and dso > t.amber_dso_above:
        amber.append(f"DSO {dso} days is above {t.amber_dso_above} days")
    status = HealthStatus.RED if red else HealthStatus.AMBER if amber else HealthStatus.GREEN
    return Health(status, tuple(red + amber))


def account_health(
    invoices: Iterable[Invoice],
    *,
    as_of: date,
    currency: str,
    revenue: Money,
    cost: Money,
    thresholds: HealthThresholds | None = None,
    dso_window_days: int = 90,
) -> Health:
    """``health`` computed from an account's invoices and its revenue and cost."""
    issued = _issued(invoices, as_of)
    return health(
        aging(issued, as_of, currency),
        margin=margin(revenue, cost),
        dso=dso_for(issued, as_of, currency, window_days=dso_window_days),
        thresholds=thresholds,
    )
