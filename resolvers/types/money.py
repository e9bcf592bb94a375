"""Money and receivables aging as the graph shows them: amounts are decimal strings, never floats."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import strawberry

from canonical import analytics
from canonical.money import Money as CanonicalMoney
from canonical.money import minor_units

_EXPONENTS: dict[str, Decimal] = {}


def _exponent(currency: str) -> Decimal:
    found = _EXPONENTS.get(currency)
    if found is None:
        found = _EXPONENTS[currency] = Decimal(1).scaleb(-minor_units(currency))
    return found


@strawberry.type(name="Money")
class MoneyType:
    amount: str = strawberry.field(description='Decimal amount as a string, e.g. "1250.00"')
    currency: str = strawberry.field(description="ISO 4217 code")

    @classmethod
    def of(cls, money: CanonicalMoney | None) -> MoneyType | None:
        if money is None:
            return None
        return cls.required(money)

    @classmethod
    def required(cls, money: CanonicalMoney) -> MoneyType:
        # what Money.rounded() gives, without building (and validating) an intermediate Money
        amount = money.amount.quantize(_exponent(money.currency), ROUND_HALF_UP)
        return cls(amount=f"{amount:f}", currency=money.currency)


@strawberry.type
class Aging:
    """Open receivables by days past due; the buckets sum to ``total``."""

    current: MoneyType
    days_1_to_30: MoneyType
    days_31_to_60: MoneyType
    days_61_to_90: MoneyType
    over_90: MoneyType
    overdue: MoneyType
    total: MoneyType

    @classmethod
    def of(
        cls,
        aging: analytics.Aging,
        *,
        overdue: CanonicalMoney | None = None,
        total: CanonicalMoney | None = None,
    ) -> Aging:
        """``overdue``/``total``: the aging's own sums when the caller has them already."""
        m = MoneyType.required
        return cls(
            current=m(aging.current),
            days_1_to_30=m(aging.days_1_30),
            days_31_to_60=m(aging.days_31_60),
            days_61_to_90=m(aging.days_61_90),
            over_90=m(aging.over_90),
            overdue=m(aging.overdue if overdue is None else overdue),
            total=m(aging.total if total is None else total),
        )
