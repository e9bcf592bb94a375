"""The root ``Query``: one account by id, cursor connections over accounts, projects, invoices and time
entries, and the portfolio roll-up. Every list is filtered to the caller's legal entities before paging.

``projects`` and ``invoices`` are filtered, paged and counted by the ERP: the caller's legal entities
become a ``subsidiary IN (...)`` term next to the filter's, the page is ``id > cursor ORDER BY id`` with
``first + 1`` rows, and the total is the answer's ``totalResults`` on the first page (a ``COUNT(*)``,
only when asked, on later ones) — one SuiteQL per list whatever its length.
"""

from __future__ import annotations

from datetime import date

import strawberry

from canonical.enums import InvoiceStatus, PostingStatus, ProjectStatus
from resolvers.context import Context, Info
from resolvers.loaders import ListKey
from resolvers.pagination import (
    DEFAULT_PAGE_SIZE,
    Connection,
    Count,
    check_page_size,
    counted,
    decode_key_cursor,
    keyed,
    paginate,
)
from resolvers.portfolio import PortfolioFilter, PortfolioRow, portfolio_rows
from resolvers.types.account import Account, load_account
from resolvers.types.project import Project, load_project, load_project_row, project_rows
from resolvers.types.receivables import Invoice
from resolvers.types.time import TimeEntry, posting_status
from subgraphs.erp.lists import ListFilter, RowPage, StatusIs
from subgraphs.erp.mapping import INVOICE_STATUS, JOB_STATUS, invoice_from_record, project_from_job
from subgraphs.erp.wire import ref_id


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
        page, count = await _erp_page(ctx, "job", spec, first, after)
        reference = await ctx.erp.reference_data()
        nodes = [
            (int(r["id"]), Project.of(project_from_job(r, reference), ref_id(r, "parent"))) for r in page.rows
        ]
        return keyed(nodes, more=page.more, count=count)

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
        if f.project_id is not None:
            row = await load_project_row(ctx, str(f.project_id))
            jobs = (row[0].erp_id,) if row is not None and row[0].erp_id else ()
        spec = ListFilter(
            subsidiaries=await _subsidiaries(ctx, f.legal_entity),
            status=status,
            dates=(f.from_date, f.to_date),
            jobs=jobs,
        )
        page, count = await _erp_page(ctx, "invoice", spec, first, after)
        reference = await ctx.erp.reference_data()
        nodes = [
            (int(r["id"]), Invoice.of(invoice_from_record(r, reference), ref_id(r, "entity")))
            for r in page.rows
        ]
        return keyed(nodes, more=page.more, count=count)

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
