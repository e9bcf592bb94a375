"""Reference data read once and cached: subsidiaries, currencies and rates, service items, accounting
periods, employees. Flows ask it per record; it asks NetSuite once per TTL (or after ``invalidate()``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from canonical.entities import AccountingPeriod, CurrencyRate
from subgraphs.erp.wire import Record, boolean, day, decimal, text

SuiteQL = Callable[[str], Awaitable[list[Record]]]

QUERIES = {
    "subsidiaries": "SELECT id, externalid, name, currency, country FROM subsidiary ORDER BY id",
    "currencies": "SELECT id, symbol FROM currency ORDER BY id",
    "rates": "SELECT id, basecurrency, transactioncurrency, exchangerate, effectivedate FROM currencyrate "
    "ORDER BY effectivedate, id",
    "items": "SELECT id, itemid, displayname, rate FROM item ORDER BY id",
    "periods": "SELECT id, periodname, startdate, enddate, closed FROM accountingperiod "
    "ORDER BY startdate, id",
    "employees": "SELECT id, entityid, email, subsidiary, title, laborcost FROM employee ORDER BY id",
}


@dataclass(frozen=True)
class Reference:
    subsidiaries: dict[str, Record]
    currencies: dict[str, str]  # internal id → ISO code
    rates: tuple[CurrencyRate, ...]
    items: dict[str, Record]
    periods: tuple[AccountingPeriod, ...]
    employees: dict[str, Record]
    legal_entities: dict[str, str] = field(default_factory=dict)  # subsidiary id → legal entity code

    @classmethod
    async def load(cls, suiteql: SuiteQL) -> Reference:
        names = list(QUERIES)
        results = dict(zip(names, await asyncio.gather(*(suiteql(QUERIES[n]) for n in names)), strict=True))
        periods = tuple(
            AccountingPeriod(
                str(r["periodname"]),
                day(r, "startdate") or date.min,
                day(r, "enddate") or date.min,
                boolean(r, "closed"),
                erp_id=str(r["id"]),
            )
            for r in results["periods"]
        )
        rates = tuple(
            CurrencyRate(
                str(r["basecurrency"]),
                str(r["transactioncurrency"]),
                decimal(r, "exchangerate") or Decimal(0),
                day(r, "effectivedate") or date.min,
            )
            for r in results["rates"]
        )
        subsidiaries = {str(r["id"]): r for r in results["subsidiaries"]}
        return cls(
            subsidiaries=subsidiaries,
            currencies={str(r["id"]): str(r["symbol"]) for r in results["currencies"]},
            rates=rates,
            items={str(r["id"]): r for r in results["items"]},
            periods=periods,
            employees={str(r["id"]): r for r in results["employees"]},
            legal_entities={i: text(r, "externalid") or i for i, r in subsidiaries.items()},
        )

    def period_for(self, on: date) -> AccountingPeriod | None:
        return next((p for p in self.periods if p.contains(on)), None)

    def currency_code(self, currency_id: str | None) -> str | None:
        return None if currency_id is None else self.currencies.get(str(currency_id))

    def currency_id(self, code: str) -> str | None:
        return next((i for i, c in self.currencies.items() if c == code), None)

    def subsidiary_id(self, legal_entity: str) -> str | None:
        return next((i for i, c in self.legal_entities.items() if c == legal_entity), None)

    def rate(self, base: str, quote: str, on: date) -> Decimal | None:
        """Units of ``quote`` per one ``base`` effective on ``on``; the inverse of a stored rate if needed."""
        if base == quote:
            return Decimal(1)
        for a, b, invert in ((base, quote, False), (quote, base, True)):
            known = [r for r in self.rates if r.base == a and r.quote == b and r.effective_date <= on]
            if known:
                value = max(known, key=lambda r: r.effective_date).rate
                return (Decimal(1) / value) if invert else value
        return None


class ReferenceCache:
    def __init__(
        self,
        load: Callable[[], Awaitable[Reference]],
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._ttl_s = ttl_s
        self._clock = clock
        self._value: Reference | None = None
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()
        self.loads = 0

    async def get(self) -> Reference:
        async with self._lock:
            if self._value is None or self._clock() - self._loaded_at > self._ttl_s:
                self._value = await self._load()
                self._loaded_at = self._clock()
                self.loads += 1
            return self._value

    def invalidate(self) -> None:
        self._value = None
