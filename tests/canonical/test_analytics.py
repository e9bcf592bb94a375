from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from canonical.analytics import (
    Aging,
    HealthThresholds,
    account_health,
    aging,
    backlog,
    billed_between,
    billed_to_date,
    contracted_value,
    dso,
    dso_for,
    health,
    margin,
    open_receivables,
    overbilled,
    overdue_total,
    paid_to_date,
    time_cost,
    time_revenue,
)
from canonical.entities import Contract, ContractAmendment, CreditMemo, Invoice, TimeEntry
from canonical.enums import BillingMethod, HealthStatus, InvoiceStatus
from canonical.errors import ValidationFailed
from canonical.money import CurrencyMismatch, Money

AS_OF = date(2025, 6, 30)


def usd(amount: str | int) -> Money:
    return Money.of(amount, "USD")


def invoice(
    total: int, *, remaining: int | None = None, days_late: int = 0, tran: date | None = None,
    status: InvoiceStatus = InvoiceStatus.OPEN, currency: str = "USD",
) -> Invoice:
    """An invoice ``days_late`` days past its due date as of ``AS_OF``."""
    remaining = total if remaining is None else remaining
    due = AS_OF - timedelta(days=days_late)
    return Invoice(
        f"i{total}-{days_late}", "INV", "a1", tran or due - timedelta(days=30), due,
        Money.of(total, currency), Money.of(total - remaining, currency), Money.of(remaining, currency),
        status,
    )


@pytest.mark.parametrize(
    ("days_late", "bucket"),
    [
        (-5, "current"), (0, "current"), (1, "days_1_30"), (30, "days_1_30"), (31, "days_31_60"),
        (60, "days_31_60"), (61, "days_61_90"), (90, "days_61_90"), (91, "over_90"), (400, "over_90"),
    ],
)
def test_aging_bucket_boundaries(days_late: int, bucket: str) -> None:
    result = aging([invoice(100, days_late=days_late)], AS_OF, "USD")
    buckets = {name: getattr(result, name) for name in
               ("current", "days_1_30", "days_31_60", "days_61_90", "over_90")}
    assert buckets.pop(bucket) == usd(100)
    assert all(m.is_zero() for m in buckets.values())


def test_aging_uses_remaining_amounts_and_ignores_drafts_voids_and_future_invoices() -> None:
    invoices = [
        invoice(1000, remaining=400, days_late=45),
        invoice(500, days_late=10),
        invoice(300, days_late=-3),
        invoice(200, days_late=75),
        invoice(999, days_late=100, status=InvoiceStatus.VOIDED),
        invoice(888, days_late=100, status=InvoiceStatus.DRAFT),
        invoice(777, days_late=-60, tran=AS_OF + timedelta(days=1)),  # issued after as_of
        invoice(50, remaining=0, days_late=100, status=InvoiceStatus.PAID),
    ]
    result = aging(invoices, AS_OF, "USD")
    assert result == Aging(usd(300), usd(500), usd(400), usd(200), usd(0))
    assert result.total == usd(1400) == open_receivables(invoices, "USD", as_of=AS_OF)
    assert result.overdue == usd(1100) == overdue_total(invoices, AS_OF, "USD")
    assert result.over_60 == usd(200)
    assert result.within_30 == usd(800)


def test_billed_paid_and_open_receivables() -> None:
    invoices = [
        invoice(1000, remaining=400, tran=date(2025, 5, 1)),
        invoice(500, remaining=0, tran=date(2025, 6, 1), status=InvoiceStatus.PAID),
        invoice(700, tran=date(2025, 6, 1), status=InvoiceStatus.VOIDED),
        invoice(300, tran=date(2025, 7, 15)),
    ]
    memo = CreditMemo("m1", "CM-1", "a1", date(2025, 6, 10), usd(100))
    assert billed_to_date(invoices, "USD") == usd(1800)
    assert billed_to_date(invoices, "USD", as_of=AS_OF) == usd(1500)
    assert billed_to_date(invoices, "USD", as_of=AS_OF, credit_memos=[memo]) == usd(1400)
    assert billed_to_date(invoices, "USD", as_of=date(2025, 6, 9), credit_memos=[memo]) == usd(1500)
    assert paid_to_date(invoices, "USD") == usd(1100)
    assert open_receivables(invoices, "USD") == usd(700)
    assert open_receivables(invoices, "USD", as_of=AS_OF) == usd(400)
    assert billed_between(invoices, date(2025, 6, 1), date(2025, 6, 30), "USD") == usd(500)


def test_empty_inputs_are_zero_in_the_requested_currency() -> None:
    assert billed_to_date([], "EUR") == Money.zero("EUR")
    assert aging([], AS_OF, "JPY").total == Money.zero("JPY")
    assert contracted_value([], "KWD") == Money.zero("KWD")


def test_mixed_currencies_are_refused() -> None:
    invoices = [invoice(100), invoice(100, currency="EUR")]
    with pytest.raises(CurrencyMismatch):
        billed_to_date(invoices, "USD")
    with pytest.raises(CurrencyMismatch):
        aging(invoices, AS_OF, "USD")


def test_backlog_never_negative_and_overbilling_reported_separately() -> None:
    assert backlog(usd(10_000), usd(4_000)) == usd(6_000)
    assert backlog(usd(10_000), usd(12_000)) == usd(0)
    assert overbilled(usd(10_000), usd(12_000)) == usd(2_000)
    assert overbilled(usd(10_000), usd(4_000)) == usd(0)
    with pytest.raises(CurrencyMismatch):
        backlog(usd(1), Money.of(1, "EUR"))


def test_contracted_value_includes_amendments() -> None:
    contracts = [
        Contract("c1", "a1", "o1", "US01", BillingMethod.FIXED_FEE, usd(10_000),
                 amendments=(ContractAmendment(1, date(2025, 2, 1), usd(-1_000)),)),
        Contract("c2", "a1", "o2", "US01", BillingMethod.RETAINER, usd(5_000)),
    ]
    assert contracted_value(contracts, "USD") == usd(14_000)


@pytest.mark.parametrize(
    ("revenue", "cost", "expected"),
    [(100, 75, Decimal("0.25")), (200, 200, Decimal(0)), (100, 150, Decimal("-0.5")), (0, 50, None),
     (0, 0, None)],
)
def test_margin(revenue: int, cost: int, expected: Decimal | None) -> None:
    assert margin(usd(revenue), usd(cost)) == expected


def test_margin_checks_currency_even_without_revenue() -> None:
    with pytest.raises(CurrencyMismatch):
        margin(usd(0), Money.of(1, "EUR"))


def test_time_revenue_and_cost() -> None:
    entries = [
        TimeEntry("t1", "p", "k", "u", AS_OF, Decimal(8), bill_rate=usd(200), cost_rate=usd(80)),
        TimeEntry("t2", "p", "k", "u", AS_OF, Decimal(2), billable=False, bill_rate=usd(200),
                  cost_rate=usd(80)),
        TimeEntry("t3", "p", "k", "u", AS_OF, Decimal(5)),  # no rates known
    ]
    assert time_revenue(entries, "USD") == usd(1600)
    assert time_cost(entries, "USD") == usd(800)
    assert margin(time_revenue(entries, "USD"), time_cost(entries, "USD")) == Decimal("0.5")


def test_dso_formula() -> None:
    assert dso(usd(30_000), usd(90_000), 90) == Decimal("30.0")
    assert dso(usd(10_000), usd(30_000), 30) == Decimal("10.0")
    assert dso(usd(100), usd(300), 7) == Decimal("2.3")  # 2.333… rounded to a tenth
    assert dso(usd(100), usd(0)) is None
    with pytest.raises(CurrencyMismatch):
        dso(usd(1), Money.of(0, "EUR"))
    with pytest.raises(ValidationFailed):
        dso(usd(1), usd(1), 0)


def test_dso_for_counts_billing_inside_the_window_only() -> None:
    invoices = [
        invoice(9_000, remaining=3_000, tran=AS_OF - timedelta(days=89)),  # first day of a 90-day window
        invoice(1_000, remaining=0, tran=AS_OF - timedelta(days=90)),  # one day before it
    ]
    # receivables 3,000 / billed 9,000 × 90
    assert dso_for(invoices, AS_OF, "USD") == Decimal("30.0")
    assert dso_for([], AS_OF, "USD") is None


def aged(current: int = 0, d1_30: int = 0, d31_60: int = 0, d61_90: int = 0, over_90: int = 0) -> Aging:
    return Aging(usd(current), usd(d1_30), usd(d31_60), usd(d61_90), usd(over_90))


def test_health_green() -> None:
    result = health(aged(current=1000), margin=Decimal("0.30"), dso=Decimal(45))
    assert result.status is HealthStatus.GREEN
    assert result.reasons == ()


def test_health_unknown_margin_and_dso_fire_nothing() -> None:
    assert health(aged(), margin=None, dso=None).status is HealthStatus.GREEN


@pytest.mark.parametrize(
    ("receivables", "margin_", "dso_", "status", "reason"),
    [
        (aged(current=900, d1_30=100), Decimal("0.30"), Decimal(30), HealthStatus.AMBER, "past due"),
        (aged(current=1000), Decimal("0.30"), Decimal("60.1"), HealthStatus.AMBER, "DSO 60.1 days"),
        (aged(current=1000), Decimal("0.30"), Decimal(60), HealthStatus.GREEN, None),
        (aged(current=1000), Decimal("0.2499"), Decimal(30), HealthStatus.AMBER,
         "margin 24.99% is below 25%"),
        (aged(current=1000), Decimal("0.25"), Decimal(30), HealthStatus.GREEN, None),
        (aged(current=1000), Decimal("0.0999"), Decimal(30), HealthStatus.RED, "below 10%"),
        (aged(current=1000), Decimal("0.10"), Decimal(30), HealthStatus.AMBER, "margin 10% is below 25%"),
        (aged(current=740, d61_90=260), Decimal("0.30"), Decimal(30), HealthStatus.RED,
         "26% of receivables are more than 60 days past due"),
        (aged(current=750, over_90=250), Decimal("0.30"), Decimal(30), HealthStatus.AMBER, "past due"),
    ],
)
def test_health_thresholds(
    receivables: Aging, margin_: Decimal, dso_: Decimal, status: HealthStatus, reason: str | None
) -> None:
    result = health(receivables, margin=margin_, dso=dso_)
    assert result.status is status
    if reason is None:
        assert result.reasons == ()
    else:
        assert any(reason in r for r in result.reasons), result.reasons


def test_red_health_lists_every_reason_red_first() -> None:
    result = health(aged(current=100, over_90=900), margin=Decimal("0.05"), dso=Decimal(120))
    assert result.status is HealthStatus.RED
    assert len(result.reasons) == 4
    assert "more than 60 days" in result.reasons[0]
    assert "margin 5% is below 10%" in result.reasons[1]
    assert "900.00 USD is past due" in result.reasons[2]
    assert "DSO 120 days" in result.reasons[3]


def test_custom_thresholds() -> None:
    lenient = HealthThresholds(amber_when_overdue=False, amber_dso_above=Decimal(90))
    result = health(aged(current=500, d1_30=500), margin=Decimal("0.30"), dso=Decimal(80), thresholds=lenient)
    assert result.status is HealthStatus.GREEN
    with pytest.raises(ValidationFailed):
        HealthThresholds(red_margin_below=Decimal("0.3"), amber_margin_below=Decimal("0.2"))
    with pytest.raises(ValidationFailed):
        HealthThresholds(red_over_60_share=Decimal("1.5"))


def test_account_health_from_invoices() -> None:
    invoices = [
        invoice(6_000, days_late=-10, tran=AS_OF - timedelta(days=20)),
        invoice(4_000, days_late=70, tran=AS_OF - timedelta(days=100)),
    ]
    # 40% over 60 days → RED; DSO = 10,000 / 6,000 × 90 = 150 → also AMBER reason.
    result = account_health(invoices, as_of=AS_OF, currency="USD", revenue=usd(100), cost=usd(50))
    assert result.status is HealthStatus.RED
    assert any("40%" in r for r in result.reasons)
    assert any("DSO 150.0 days" in r for r in result.reasons)
