from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from canonical.errors import ValidationFailed
from canonical.money import CurrencyMismatch, Money, minor_units

CURRENCIES = ["USD", "EUR", "JPY", "KWD"]

amounts = st.decimals(min_value=Decimal("-1e9"), max_value=Decimal("1e9"), places=4,
                      allow_nan=False, allow_infinity=False)
currencies = st.sampled_from(CURRENCIES)
ratios = st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=12).filter(any)


def test_of_keeps_decimal_text_and_float_without_binary_noise() -> None:
    assert Money.of("10.10", "USD").amount == Decimal("10.10")
    assert Money.of(0.1, "USD").amount == Decimal("0.1")


@pytest.mark.parametrize("currency", ["usd", "US", "USDX", "12A"])
def test_rejects_non_iso_currency(currency: str) -> None:
    with pytest.raises(ValidationFailed):
        Money.of(1, currency)


@pytest.mark.parametrize("amount", ["NaN", "Infinity", "abc"])
def test_rejects_non_finite_or_non_numeric_amount(amount: str) -> None:
    with pytest.raises(ValidationFailed):
        Money.of(amount, "USD")


def test_arithmetic() -> None:
    a, b = Money.of("10.25", "EUR"), Money.of("0.75", "EUR")
    assert a + b == Money.of("11.00", "EUR")
    assert a - b == Money.of("9.50", "EUR")
    assert -a == Money.of("-10.25", "EUR")
    assert abs(Money.of("-3", "EUR")) == Money.of("3", "EUR")
    assert a * 2 == Money.of("20.50", "EUR") == 2 * a
    assert a * Decimal("1.5") == Money.of("15.375", "EUR")  # precision kept until rounded
    assert b < a and a > b and a >= a and b <= b


def test_multiplying_by_float_or_money_is_refused() -> None:
    with pytest.raises(TypeError):
        Money.of(1, "USD") * 1.5  # type: ignore[operator]
    with pytest.raises(TypeError):
        Money.of(1, "USD") * Money.of(1, "USD")  # type: ignore[operator]


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("0.005", "USD", "0.01"),  # half-up, not banker's
        ("0.015", "USD", "0.02"),
        ("-0.005", "USD", "-0.01"),
        ("2.5", "JPY", "3"),
        ("1.0005", "KWD", "1.001"),
        ("1.2344", "KWD", "1.234"),
    ],
)
def test_rounded_to_minor_units(amount: str, currency: str, expected: str) -> None:
    rounded = Money.of(amount, currency).rounded()
    assert rounded.amount == Decimal(expected)
    assert rounded.amount.as_tuple().exponent == -minor_units(currency)


def test_str_and_as_dict_are_rounded() -> None:
    assert str(Money.of("1.005", "USD")) == "1.01 USD"
    assert Money.of("12", "KWD").as_dict() == {"amount": "12.000", "currency": "KWD"}


def test_sum_of_nothing_is_zero_in_the_given_currency() -> None:
    assert Money.sum([], "JPY") == Money.zero("JPY")
    assert Money.sum([Money.of(1, "JPY"), Money.of(2, "JPY")], "JPY") == Money.of(3, "JPY")
    with pytest.raises(CurrencyMismatch):
        Money.sum([Money.of(1, "USD")], "EUR")


def test_allocate_spreads_remainder_to_earliest_largest_loss() -> None:
    parts = Money.of("100.00", "USD").allocate([1, 1, 1])
    assert [p.amount for p in parts] == [Decimal("33.34"), Decimal("33.33"), Decimal("33.33")]
    assert [p.amount for p in Money.of("-100", "USD").allocate([1, 1, 1])] == [
        Decimal("-33.34"), Decimal("-33.33"), Decimal("-33.33")]
    assert [p.amount for p in Money.of(10, "JPY").allocate([1, 2])] == [Decimal(3), Decimal(7)]


def test_allocate_sums_to_the_same_rounding_as_rounded() -> None:
    # Regression: allocate used half-even, so 0.005 USD allocated to 0.00 while rounded() says 0.01.
    assert Money.of("0.005", "USD").allocate([1]) == [Money.of("0.01", "USD")]


@pytest.mark.parametrize("bad", [[], [-1, 2], [0, 0]])
def test_allocate_rejects_bad_ratios(bad: list[int]) -> None:
    with pytest.raises(ValidationFailed):
        Money.of(10, "USD").allocate(bad)


@given(amount=amounts, currency=currencies, weights=ratios)
def test_allocation_sums_to_rounded_total(amount: Decimal, currency: str, weights: list[int]) -> None:
    total = Money(amount, currency)
    parts = total.allocate(weights)
    assert len(parts) == len(weights)
    assert Money.sum(parts, currency) == total.rounded()
    unit = total.exponent
    for part, weight in zip(parts, weights, strict=True):
        assert part.currency == currency
        assert part.amount % unit == 0  # whole minor units only
        exact = total.rounded().amount * weight / sum(weights)
        assert abs(part.amount - exact) < unit  # off by less than one minor unit
        if weight == 0:
            assert part.is_zero()


@given(a=amounts, b=amounts, pair=st.permutations(CURRENCIES).map(lambda p: (p[0], p[1])))
def test_cross_currency_operations_raise(a: Decimal, b: Decimal, pair: tuple[str, str]) -> None:
    left, right = Money(a, pair[0]), Money(b, pair[1])
    for operation in (
        lambda: left + right, lambda: left - right, lambda: left < right, lambda: left <= right,
        lambda: left > right, lambda: left >= right,
    ):
        with pytest.raises(CurrencyMismatch) as info:
            operation()
        assert info.value.code == "CURRENCY_MISMATCH"
    assert left != right  # equality is defined, and different currencies are never equal


@given(a=amounts, b=amounts, currency=currencies)
def test_addition_laws(a: Decimal, b: Decimal, currency: str) -> None:
    x, y = Money(a, currency), Money(b, currency)
    assert x + y == y + x
    assert x + y - y == x
    negated = -x
    assert -negated == x
    assert abs(x) == abs(-x) and abs(x).amount >= 0
    assert x + Money.zero(currency) == x


def test_convert_uses_rate_and_rounds_to_target() -> None:
    assert Money.of("100", "EUR").convert("JPY", "161.234") == Money.of(16123, "JPY")
    assert Money.of("10", "USD").convert("KWD", "0.30712") == Money.of("3.071", "KWD")
