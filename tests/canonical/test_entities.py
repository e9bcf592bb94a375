from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal

import pytest

from canonical.entities import (
    AccountingPeriod,
    Address,
    Contract,
    ContractAmendment,
    CurrencyRate,
    Invoice,
    Opportunity,
    OpportunityLine,
    PeriodClosed,
    RateCardLine,
    Recurrence,
    TimeEntry,
    posting_period,
)
from canonical.enums import BillingMethod, InvoiceStatus, OpportunityStage, PeriodPolicy
from canonical.errors import ValidationFailed
from canonical.money import CurrencyMismatch, Money


def usd(amount: str | int) -> Money:
    return Money.of(amount, "USD")


def line(total: Money, product: str = "CONSULT-SR") -> OpportunityLine:
    return OpportunityLine(product, Decimal(1), total, total)


def test_entities_are_frozen() -> None:
    period = AccountingPeriod("Jan 2025", date(2025, 1, 1), date(2025, 1, 31))
    with pytest.raises(dataclasses.FrozenInstanceError):
        period.closed = True  # type: ignore[misc]


def test_opportunity_lines_must_share_its_currency() -> None:
    opp = Opportunity("o1", "a1", "Deal", OpportunityStage.CLOSED_WON, usd(300), date(2025, 3, 1),
                      lines=(line(usd(100)), line(usd(200))))
    assert opp.currency == "USD"
    assert opp.lines_total == usd(300)
    with pytest.raises(CurrencyMismatch):
        Opportunity("o2", "a1", "Deal", OpportunityStage.PROSPECTING, usd(100), date(2025, 3, 1),
                    lines=(line(Money.of(100, "EUR")),))
    with pytest.raises(CurrencyMismatch):
        OpportunityLine("PM", Decimal(1), usd(10), Money.of(10, "EUR"))


def test_invoice_amounts_share_one_currency_and_know_their_lateness() -> None:
    invoice = Invoice("i1", "INV-1", "a1", date(2025, 1, 1), date(2025, 1, 31), usd(100), usd(40), usd(60))
    assert invoice.days_past_due(date(2025, 2, 10)) == 10
    assert invoice.days_past_due(date(2025, 1, 31)) == 0
    assert invoice.counts
    assert not dataclasses.replace(invoice, status=InvoiceStatus.VOIDED).counts
    assert not dataclasses.replace(invoice, status=InvoiceStatus.DRAFT).counts
    with pytest.raises(CurrencyMismatch):
        Invoice("i2", "INV-2", "a1", date(2025, 1, 1), date(2025, 1, 31), usd(100), usd(0),
                Money.of(100, "EUR"))


def test_contract_current_value_applies_signed_amendments() -> None:
    contract = Contract(
        "c1", "a1", "o1", "US01", BillingMethod.FIXED_FEE, usd(10_000),
        rate_card=(RateCardLine("Architect", usd(250)),),
        amendments=(ContractAmendment(1, date(2025, 2, 1), usd(2_000)),
                    ContractAmendment(2, date(2025, 3, 1), usd(-500), "scope cut")),
    )
    assert contract.current_value == usd(11_500)
    assert contract.rate_for("Architect") == usd(250)
    assert contract.rate_for("Consultant") is None


def test_time_entry_amounts() -> None:
    entry = TimeEntry("t1", "p1", "k1", "ann", date(2025, 1, 6), Decimal("7.5"),
                      bill_rate=usd(200), cost_rate=usd(90))
    assert entry.billable_amount == usd(1500)
    assert entry.cost_amount == usd("675.0")
    non_billable = dataclasses.replace(entry, billable=False)
    assert non_billable.billable_amount == usd(0)
    assert non_billable.cost_amount == usd("675.0")  # unbilled work still costs
    assert dataclasses.replace(entry, bill_rate=None, cost_rate=None).billable_amount is None


def test_address_completeness_does_not_need_a_state() -> None:
    assert Address("Unter den Linden 1", "Berlin", None, "10117", "DE").is_complete
    assert not Address("1 Main St", "Springfield", "IL", None, "US").is_complete


def test_recurrence_dates_keep_month_end() -> None:
    monthly = Recurrence(usd(5000), date(2025, 1, 31), date(2025, 5, 31))
    assert monthly.dates() == [date(2025, 1, 31), date(2025, 2, 28), date(2025, 3, 31),
                               date(2025, 4, 30), date(2025, 5, 31)]
    quarterly = Recurrence(usd(5000), date(2024, 11, 15), every_months=3)
    assert quarterly.dates(until=date(2025, 8, 14)) == [date(2024, 11, 15), date(2025, 2, 15),
                                                        date(2025, 5, 15)]
    assert Recurrence(usd(1), date(2024, 2, 29), date(2025, 3, 1), every_months=12).dates() == [
        date(2024, 2, 29), date(2025, 2, 28)]


def test_recurrence_refuses_nonsense() -> None:
    with pytest.raises(ValidationFailed):
        Recurrence(usd(1), date(2025, 1, 1)).dates()  # open-ended without an 'until'
    with pytest.raises(ValidationFailed):
        Recurrence(usd(1), date(2025, 2, 1), date(2025, 1, 1))
    with pytest.raises(ValidationFailed):
        Recurrence(usd(1), date(2025, 1, 1), every_months=0)


JAN = AccountingPeriod("Jan 2025", date(2025, 1, 1), date(2025, 1, 31), closed=True)
FEB = AccountingPeriod("Feb 2025", date(2025, 2, 1), date(2025, 2, 28), closed=True)
MAR = AccountingPeriod("Mar 2025", date(2025, 3, 1), date(2025, 3, 31))


def test_period_contains_both_ends() -> None:
    assert JAN.contains(date(2025, 1, 1)) and JAN.contains(date(2025, 1, 31))
    assert not JAN.contains(date(2025, 2, 1))
    with pytest.raises(ValidationFailed):
        AccountingPeriod("bad", date(2025, 2, 1), date(2025, 1, 1))


def test_posting_period_policies() -> None:
    periods = [MAR, FEB, JAN]  # order must not matter
    assert posting_period(periods, date(2025, 3, 5), PeriodPolicy.EXCEPTION) is MAR
    assert posting_period(periods, date(2025, 1, 20), PeriodPolicy.NEXT_OPEN) is MAR  # skips closed Feb
    with pytest.raises(PeriodClosed) as info:
        posting_period(periods, date(2025, 1, 20), PeriodPolicy.EXCEPTION)
    assert info.value.code == "PERIOD_CLOSED"
    assert info.value.extensions["period"] == "Jan 2025"
    with pytest.raises(PeriodClosed):
        posting_period([JAN, FEB], date(2025, 1, 20), PeriodPolicy.NEXT_OPEN)  # nothing open later
    with pytest.raises(PeriodClosed):
        posting_period(periods, date(2025, 7, 1), PeriodPolicy.NEXT_OPEN)  # no period covers it


def test_currency_rate_converts_only_its_base() -> None:
    rate = CurrencyRate("EUR", "USD", Decimal("1.0825"), date(2025, 3, 1))
    assert rate.convert(Money.of("1000", "EUR")) == usd("1082.50")
    with pytest.raises(CurrencyMismatch):
        rate.convert(usd(1))
