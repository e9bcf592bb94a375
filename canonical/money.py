"""Money: a Decimal amount in one ISO 4217 currency.

Arithmetic between two currencies is refused (``CurrencyMismatch``): converting is an explicit act with a
rate and a date (``convert``). Amounts are quantized to the currency's minor units only when asked
(``rounded``) or when allocating, so intermediate results keep their precision.

>>> Money.of("100.00", "USD").allocate([1, 1, 1])
[Money('33.34', 'USD'), Money('33.33', 'USD'), Money('33.33', 'USD')]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from canonical.errors import ValidationFailed

# Minor units per ISO 4217 where they differ from 2.
_MINOR_UNITS: dict[str, int] = {
    "JPY": 0, "KRW": 0, "CLP": 0, "ISK": 0, "VND": 0, "HUF": 2,
    "BHD": 3, "KWD": 3, "OMR": 3, "JOD": 3, "TND": 3, "IQD": 3, "LYD": 3,
}


def minor_units(currency: str) -> int:
    return _MINOR_UNITS.get(currency, 2)


class CurrencyMismatch(ValidationFailed):
    code = "CURRENCY_MISMATCH"

    def __init__(self, left: str, right: str) -> None:
        super().__init__(f"cannot combine {left} with {right} without a conversion", subject="money")


def _to_decimal(value: Decimal | int | str | float) -> Decimal:
    if isinstance(value, float):
        # Floats carry binary noise; go through repr so 0.1 stays 0.1.
        value = repr(value)
    try:
        result = Decimal(value)
    except (InvalidOperation, ValueError) as exc:
        raise ValidationFailed(f"{value!r} is not a number", subject="amount") from exc
    if not result.is_finite():
        raise ValidationFailed(f"{value!r} is not a finite number", subject="amount")
    return result


@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        if not (isinstance(self.currency, str) and len(self.currency) == 3 and self.currency.isalpha()
                and self.currency.isupper()):
            raise ValidationFailed(f"{self.currency!r} is not an ISO 4217 code", subject="currency")
        if not isinstance(self.amount, Decimal):
            object.__setattr__(self, "amount", _to_decimal(self.amount))
        elif not self.amount.is_finite():
            raise ValidationFailed(f"{self.amount!r} is not a finite number", subject="amount")

    @classmethod
    def of(cls, amount: Decimal | int | str | float, currency: str) -> Money:
        return cls(_to_decimal(amount), currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(Decimal(0), currency)

    @classmethod
    def sum(cls, items: Iterable[Money], currency: str) -> Money:
        """Sum that is well defined for an empty iterable (it needs the currency)."""
        total = cls.zero(currency)
        for item in items:
            total = total + item
        return total

    def _check(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatch(self.currency, other.currency)

    def __add__(self, other: Money) -> Money:
        self._check(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._check(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __abs__(self) -> Money:
        return Money(abs(self.amount), self.currency)

    def __mul__(self, factor: Decimal | int) -> Money:
        if isinstance(factor, Money | float):
            raise TypeError("Money multiplies by a Decimal or int only")
        return Money(self.amount * Decimal(factor), self.currency)

    __rmul__ = __mul__

    def __lt__(self, other: Money) -> bool:
        self._check(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._check(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._check(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._check(other)
        return self.amount >= other.amount

    def __bool__(self) -> bool:
        return bool(self.amount)

    def __repr__(self) -> str:
        return f"Money({str(self.amount)!r}, {self.currency!r})"

    def __str__(self) -> str:
        return f"{self.rounded().amount} {self.currency}"

    @property
    def exponent(self) -> Decimal:
        return Decimal(1).scaleb(-minor_units(self.currency))

    def rounded(self, rounding: str = ROUND_HALF_UP) -> Money:
        """Quantized to the currency's minor units (commercial rounding by default)."""
        return Money(self.amount.quantize(self.exponent, rounding=rounding), self.currency)

    def is_zero(self) -> bool:
        return self.amount == 0

    def allocate(self, ratios: Sequence[Decimal | int]) -> list[Money]:
        """Split into parts proportional to ``ratios`` whose sum is exactly the rounded total.

        Remainder minor units go to the parts with the largest fractional loss, earliest first, so the
        result is deterministic. Negative totals allocate symmetrically.
        """
        if not ratios:
            raise ValidationFailed("allocation needs at least one ratio", subject="ratios")
        weights = [Decimal(r) for r in ratios]
        if any(w < 0 for w in weights) or sum(weights) == 0:
            raise ValidationFailed("ratios must be non-negative and not all zero", subject="ratios")
        # Same rounding as ``rounded()`` so the parts always sum to exactly what callers display.
        total = self.rounded()
        unit = self.exponent
        sign = -1 if total.amount < 0 else 1
        units_total = int((abs(total.amount) / unit).to_integral_value())
        weight_sum = sum(weights)
        exact = [Decimal(units_total) * w / weight_sum for w in weights]
        floors = [int(e) for e in exact]
        remainder = units_total - sum(floors)
        order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - floors[i]), i))
        for i in order[:remainder]:
            floors[i] += 1
        return [Money(sign * Decimal(n) * unit, self.currency) for n in floors]

    def convert(self, currency: str, rate: Decimal | str) -> Money:
        """Converted at ``rate`` (units of ``currency`` per one unit of ours), rounded."""
        converted = Money(self.amount * _to_decimal(rate), currency)
        return converted.rounded()

    def as_dict(self) -> dict[str, str]:
        return {"amount": str(self.rounded().amount), "currency": self.currency}
