"""The root ``Query``: one account by id, cursor connections over accounts, projects, invoices and time
entries, and the portfolio roll-up. Every list is filtered to the caller's legal entities before paging.

``projects`` and ``invoices`` are filtered, paged and counted by the ERP: the caller's legal entities
become a ``subsidiary IN (...)`` term next to the filter's, the page is ``id > cursor ORDER BY id`` with
``first + 1`` rows, and the total is the answer's ``totalResults`` on the first page (a ``COUNT(*)``,
only when asked, on later ones) — one SuiteQL per list whatever its length.

When a legal entity the caller may see books in Tryton, its rows follow NetSuite's (``_merged``): the list
is every NetSuite row in internal-id order, then every Tryton row in Tryton-id order. The Tryton part is
read whole once per request (one search, filtered here by the same filter) and the NetSuite part keeps its
keyset pages, so:

- a cursor names the last row shown in its own ERP: ``p2c:k:<NetSuite id>`` as before, ``p2c:t:<Tryton
  id>`` once the list has reached Tryton's rows. A NetSuite page shorter than ``first`` with nothing after
  it is topped up with the first Tryton rows; a Tryton cursor reads no NetSuite rows at all. Both are
  keysets over ids that only grow, so a cursor stays valid while rows are added: a new row shows up on a
  later page or not at all, never twice, and no row is skipped for it;
- ``totalCount`` is NetSuite's count of the filter (``totalResults`` or ``COUNT(*)``, as above) plus the
  number of Tryton rows the filter keeps.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from datetime import date
from typing import TypeVar

import strawberry

from canonical import entities
from canonical.enums import InvoiceStatus, PostingStatus, ProjectStatus
from canonical.errors import Problem, ValidationFailed
from resolvers.context import Context, Info
from resolvers.loaders import ListKey
from resolvers.pagination import (
    DEFAULT_PAGE_SIZE,
    Connection,
    Count,
    Edge,
    PageInfo,
    check_page_size,
    counted,
    decode_key_cursor,
    encode_key_cursor,
    paginate,
)
from resolvers.portfolio import PortfolioFilter, PortfolioRow, portfolio_rows
from resolvers.types.account import Account, load_account
from resolvers.types.project import (
    Project,
    invoice_node,
    load_project,
    load_project_row,
    project_rows,
    tryton_invoice_rows,
    tryton_project_rows,
)
from resolvers.types.receivables import Invoice
from resolvers.types.time import TimeEntry, posting_status
from subgraphs.erp.lists import ListFilter, RowPage, StatusIs
from subgraphs.erp.mapping import INVOICE_STATUS, JOB_STATUS, invoice_from_record, project_from_job
from subgraphs.erp.wire import ref_id
from subgraphs.erp_tryton.mapping import PREFIX as TRYTON

T = TypeVar("T")
TRYTON_CURSOR = "p2c:t:"


@strawberry.input
class AccountFilter:
    legal_entity: str | None = None
    owner: str | None = None
    business_line: str | None = None
    name_contains: str | None = None


@strawberry.input
class ProjectFilter:
    legal_entity: str | None = None
    status: ProjectStatus | None = None
    business_line: str | None = None
    started_from: date | None = None
    started_to: date | None = None


@strawberry.input
class InvoiceFilter:
    legal_entity: str | None = None
    status: InvoiceStatus | None = None
    from_date: date | None = None
    to_date: date | None = None
    project_id: strawberry.ID | None = None


@strawberry.input
class TimeEntryFilter:
    project_id: strawberry.ID | None = None
    posting_status: PostingStatus | None = None
    from_date: date | None = None
    to_date: date | None = None


async def _subsidiaries(ctx: Context, legal_entity: str | None) -> tuple[str, ...] | None:
    """The ERP subsidiaries of the legal entities asked for and visible (None: every one, unfiltered)."""
    codes = (await ctx.erp.reference_data()).legal_entities  # subsidiary id → legal entity code
    if legal_entity is None and ctx.principal.all_entities:
        return None
    return tuple(
        i
        for i, code in codes.items()
        if (legal_entity is None or code == legal_entity) and ctx.principal.can_see_entity(code)
    )


async def _erp_page(
    ctx: Context, kind: str, spec: ListFilter, first: int, after: str | None
) -> tuple[RowPage, Count]:
    key = ListKey(kind, spec, decode_key_cursor(after), first)
    page = await ctx.loaders.erp_list_page.load(key)
    if key.after is None:
        return page, counted(page.total)  # totalResults of the first page counts every row

    async def count() -> int:
        return await ctx.loaders.erp_list_count.load((kind, spec))

    return page, count


def encode_tryton_cursor(tryton_id: int) -> str:
    return base64.urlsafe_b64encode(f"{TRYTON_CURSOR}{tryton_id}".encode()).decode()


def decode_tryton_cursor(cursor: str | None) -> int | None:
    """The Tryton id of a ``p2c:t:<id>`` cursor; None for no cursor or a NetSuite one (``p2c:k:<id>``)."""
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
    except ValueError as exc:
        raise ValidationFailed([Problem("after", "is not a cursor of this list", "INVALID_CURSOR")]) from exc
    if not text.startswith(TRYTON_CURSOR):
        return None
    number = text.removeprefix(TRYTON_CURSOR)
    if not number.isdigit():
        raise ValidationFailed([Problem("after", "is not a cursor of this list", "INVALID_CURSOR")])
    return int(number)


def _tryton_id(erp_id: str | None) -> int:
    return int((erp_id or "0").removeprefix(TRYTON))


async def _merged(
    ctx: Context,
    kind: str,
    spec: ListFilter,
    first: int,
    after: str | None,
    netsuite: Callable[[RowPage], Sequence[tuple[int, T]]],
    tryton: Sequence[tuple[int, T]],
) -> Connection[T]:
    """NetSuite's keyset page, then Tryton's rows (``tryton``: every one the filter keeps, with its Tryton
    id, in id order); see the module docstring for the cursors and the count."""
    after_tryton = decode_tryton_cursor(after)
    edges: list[Edge[T]] = []
    if after_tryton is None:
        page, count = await _erp_page(ctx, kind, spec, first, after)
        edges = [Edge(cursor=encode_key_cursor(i), node=n) for i, n in netsuite(page)]
        rest = [] if page.more else list(tryton)
        more = page.more
    else:
        rest = [row for row in tryton if row[0] > after_tryton]
        more = False

        async def count() -> int:
            return await ctx.loaders.erp_list_count.load((kind, spec))

    room = first - len(edges)
    edges.extend(Edge(cursor=encode_tryton_cursor(i), node=n) for i, n in rest[:room])
    more = more or len(rest) > room
    extra = len(tryton)

    async def total() -> int:
        return await count() + extra

    return Connection(
        edges=edges,
        page_info=PageInfo(has_next_page=more, end_cursor=edges[-1].cursor if edges else None),
        count=total,
    )


def _between(day: date | None, start: date | None, end: date | None) -> bool:
    if day is None:
        return start is None and end is None
    return (start is None or day >= start) and (end is None or day <= end)


@strawberry.type
class Query:
    @strawberry.field(description="One account by canonical id; null when unknown or not visible to you")
    async def account(self, info: Info, id: strawberry.ID) -> Account | None:
        return await load_account(info.context, str(id))

    @strawberry.field
    async def accounts(
        self,
        info: Info,
        filter: AccountFilter | None = None,
        first: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
    ) -> Connection[Account]:
        check_page_size(first)
        f = filter or AccountFilter()
        ctx = info.context
        found = await ctx.loaders.crm_account_list.load(f.legal_entity or "*")
        rows = [
            a
            for a in ctx.principal.visible(found, lambda a: a.legal_entity)
            if (f.owner is None or a.owner == f.owner)
            and (f.business_line is None or a.business_line == f.business_line)
            and (f.name_contains is None or f.name_contains.lower() in a.name.lower())
        ]
        # the list comes in the graph's order (name, id); only the page becomes graph objects
        return paginate(rows, first, after, Account.of)

    @strawberry.field
    async def project(self, info: Info, id: strawberry.ID) -> Project | None:
        return await load_project(info.context, str(id))

    @strawberry.field
    async def projects(
        self,
        info: Info,
        filter: ProjectFilter | None = None,
        first: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
    ) -> Connection[Project]:
        check_page_size(first)
        f, ctx = filter or ProjectFilter(), info.context
        status = None
        if f.status is not None:
            # project_from_job reads a status it does not know as ACTIVE
            others = tuple(JOB_STATUS.values()) if f.status is ProjectStatus.ACTIVE else ()
            status = StatusIs((JOB_STATUS[f.status],), others)
        spec = ListFilter(
            subsidiaries=await _subsidiaries(ctx, f.legal_entity),
            status=status,
            dates=(f.started_from, f.started_to),
            business_line=f.business_line,
        )
        reference = await ctx.erp.reference_data()

        def jobs(page: RowPage) -> list[tuple[int, Project]]:
            return [
                (int(r["id"]), Project.of(project_from_job(r, reference), ref_id(r, "parent")))
                for r in page.rows
            ]

        def kept(p: entities.Project) -> bool:  # the filter, as the SuiteQL WHERE applies it to jobs
            return (
                (f.legal_entity is None or p.legal_entity == f.legal_entity)
                and (f.status is None or p.status is f.status)
                and (f.business_line is None or p.business_line == f.business_line)
                and _between(p.start_date, f.started_from, f.started_to)
            )

        tryton = [
            (_tryton_id(p.erp_id), Project.of(p, party))
            for p, party in await tryton_project_rows(ctx, f.legal_entity)
            if kept(p)
        ]
        return await _merged(ctx, "job", spec, first, after, jobs, tryton)

    @strawberry.field
    async def invoices(
        self,
        info: Info,
        filter: InvoiceFilter | None = None,
        first: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
    ) -> Connection[Invoice]:
        check_page_size(first)
        f, ctx = filter or InvoiceFilter(), info.context
        status = None
        if f.status is not None:
            # invoice_from_record reads a status it does not know as OPEN
            others = tuple(INVOICE_STATUS) if f.status is InvoiceStatus.OPEN else ()
            status = StatusIs(tuple(k for k, v in INVOICE_STATUS.items() if v is f.status), others)
        jobs = None
        on_tryton = True  # whether Tryton may hold rows of this filter
        if f.project_id is not None:
            row = await load_project_row(ctx, str(f.project_id))
            jobs = (row[0].erp_id,) if row is not None and row[0].erp_id else ()
            on_tryton = row is None  # a NetSuite job's invoices are all in NetSuite
        spec = ListFilter(
            subsidiaries=await _subsidiaries(ctx, f.legal_entity),
            status=status,
            dates=(f.from_date, f.to_date),
            jobs=jobs,
        )
        reference = await ctx.erp.reference_data()

        def invoices(page: RowPage) -> list[tuple[int, Invoice]]:
            return [
                (int(r["id"]), Invoice.of(invoice_from_record(r, reference), ref_id(r, "entity")))
                for r in page.rows
            ]

        def kept(i: entities.Invoice) -> bool:
            return (
                (f.legal_entity is None or i.legal_entity == f.legal_entity)
                and (f.status is None or i.status is f.status)
                and _between(i.tran_date, f.from_date, f.to_date)
                and (f.project_id is None or i.project_id == str(f.project_id))
            )

        tryton = [
            (_tryton_id(i.erp_id), invoice_node(i, party))
            for i, party in (await tryton_invoice_rows(ctx, f.legal_entity) if on_tryton else [])
            if kept(i)
        ]
        return await _merged(ctx, "invoice", spec, first, after, invoices, tryton)

    @strawberry.field
    async def time_entries(
        self,
        info: Info,
        filter: TimeEntryFilter | None = None,
        first: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
    ) -> Connection[TimeEntry]:
        check_page_size(first)
        f = filter or TimeEntryFilter()
        ctx = info.context
        projects = {p.code: p for p, _parent in await project_rows(ctx)}  # visible ones only
        psa_codes = {w["id"]: code for code, w in (await ctx.loaders.psa_project_list.load("*")).items()}
        status = f.posting_status
        rows: list[TimeEntry] = []
        for entry in await ctx.loaders.psa_all_time.load("*"):
            project = projects.get(psa_codes.get(ctx.loaders.psa_project_of(entry) or -1))
            if project is None:  # unknown project, or one in a legal entity the caller may not see
                continue
            if f.project_id is not None and project.id != f.project_id:
                continue
            if status is not None and posting_status(entry) is not status:
                continue
            if _between(entry.spent_date, f.from_date, f.to_date):
                rows.append(TimeEntry.of(entry, project_id=project.id))
        rows.sort(key=lambda t: (t.spent_date, t.id))
        return paginate(rows, first, after)

    @strawberry.field(description="Margin and backlog by legal entity, business line and month")
    async def portfolio(self, info: Info, filter: PortfolioFilter | None = None) -> list[PortfolioRow]:
        return await portfolio_rows(info.context, filter or PortfolioFilter())
