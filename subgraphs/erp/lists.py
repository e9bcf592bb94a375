"""Filtered, keyset-paged lists of jobs and invoices over SuiteQL: the graph's ``projects`` and
``invoices`` fields ask for one page, never the whole list.

    f = ListFilter(subsidiaries=("1", "3"), status=StatusIs(("inProgress",)))
    page = await client.list_page("job", f, after=None, first=20)    # one SuiteQL: 21 rows at most
    page.rows, page.more, page.total                                  # total: rows after the cursor

Filters become WHERE terms; ids are validated integers and strings quoted (``wire.sql_ids``/``sql_string``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import date

from subgraphs.erp.wire import Page, Record, sql_ids, sql_string

JOB_COLUMNS = (
    "id, externalid, entityid, companyname, parent, jobbillingtype, status, startdate, "
    "projectedenddate, currency, subsidiary, custentity_business_line, lastmodifieddate"
)
INVOICE_COLUMNS = (
    "id, externalid, tranid, entity, job, trandate, duedate, currency, foreigntotal, amountpaid, "
    "amountremaining, status, subsidiary, lastmodifieddate"
)
COLUMNS = {"job": JOB_COLUMNS, "invoice": INVOICE_COLUMNS}
#: list kind → (SELECT ... WHERE of every row, the column date filters apply to)
_LISTS = {
    "job": (f"SELECT {JOB_COLUMNS} FROM job WHERE 1 = 1", "startdate"),
    "invoice": (f"SELECT {INVOICE_COLUMNS} FROM transaction WHERE type = 'CustInvc'", "trandate"),
}


@dataclass(frozen=True)
class StatusIs:
    """``status IN values``; with ``known``, also rows whose status is none of those (where the mapping
    reads an unknown status as this one)."""

    values: tuple[str, ...]
    known: tuple[str, ...] = ()

    def sql(self) -> str:
        clause = f"status IN ({', '.join(sql_string(v) for v in self.values)})" if self.values else "1 = 0"
        if self.known:
            others = ", ".join(sql_string(k) for k in self.known)
            clause = f"({clause} OR status IS NULL OR status NOT IN ({others}))"
        return clause


@dataclass(frozen=True)
class ListFilter:
    """A filtered list of jobs or invoices. ``subsidiaries`` None: all of them; empty: none."""

    subsidiaries: tuple[str, ...] | None = None
    status: StatusIs | None = None
    dates: tuple[date | None, date | None] = (None, None)  # jobs: start date, invoices: tran date
    business_line: str | None = None  # jobs only
    jobs: tuple[str, ...] | None = None  # invoices only

    def where(self, date_column: str) -> str:
        terms = []
        if self.subsidiaries is not None:
            terms.append(f"subsidiary IN ({sql_ids(list(self.subsidiaries))})")
        if self.status is not None:
            terms.append(self.status.sql())
        low, high = self.dates
        if low is not None:
            terms.append(f"{date_column} >= '{low.isoformat()}'")
        if high is not None:
            terms.append(f"{date_column} <= '{high.isoformat()}'")
        if self.business_line is not None:
            terms.append(f"custentity_business_line = {sql_string(self.business_line)}")
        if self.jobs is not None:
            terms.append(f"job IN ({sql_ids(list(self.jobs))})")
        return " AND ".join(terms) or "1 = 1"

    @property
    def empty(self) -> bool:
        return self.subsidiaries == () or self.jobs == ()


@dataclass(frozen=True)
class RowPage:
    rows: list[Record]
    total: int  # rows after the cursor, the page's included
    more: bool = False  # a row follows the page


class Lists:
    suiteql: Callable[..., Awaitable[list[Record]]]
    suiteql_pages: Callable[..., AsyncIterator[Page]]

    async def list_page(self, kind: str, f: ListFilter, *, after: int | None, first: int) -> RowPage:
        """One keyset page of the jobs (``kind`` "job") or invoices ("invoice") matching ``f``:
        ``id > after`` ORDER BY id, ``first + 1`` rows asked so ``more`` needs no second read, and
        ``total`` from the answer's ``totalResults`` (every matching row after the cursor)."""
        if f.empty:
            return RowPage([], 0)
        where = f.where(_LISTS[kind][1]) + (f" AND id > {int(after)}" if after is not None else "")
        q = f"{_LISTS[kind][0]} AND {where} ORDER BY id"
        pages = self.suiteql_pages(q, page_size=first + 1)
        try:
            page = await anext(pages)  # the first page only: the list may be much longer
        finally:
            if isinstance(pages, AsyncGenerator):
                await pages.aclose()
        return RowPage(page.items[:first], page.total, len(page.items) > first)

    async def list_count(self, kind: str, f: ListFilter) -> int:
        if f.empty:
            return 0
        select = _LISTS[kind][0].replace(f"SELECT {COLUMNS[kind]}", "SELECT COUNT(*) AS n", 1)
        rows = await self.suiteql(f"{select} AND {f.where(_LISTS[kind][1])}")
        return int(rows[0]["n"]) if rows else 0
