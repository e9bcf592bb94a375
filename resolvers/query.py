"""The root ``Query``: one account by id, cursor connections over accounts, projects, invoices and time
entries, and the portfolio roll-up. Every list is filtered to the caller's legal entities before paging."""

from __future__ import annotations

from datetime import date

import strawberry

from canonical.enums import InvoiceStatus, PostingStatus, ProjectStatus
from resolvers.context import Info
from resolvers.pagination import DEFAULT_PAGE_SIZE, Connection, check_page_size, paginate
from resolvers.portfolio import PortfolioFilter, PortfolioRow, portfolio_rows
from resolvers.types.account import Account, load_account
from resolvers.types.project import Project, load_project, project_rows
from resolvers.types.receivables import Invoice, visible_invoices
from resolvers.types.time import TimeEntry, posting_status


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
        rows.sort(key=lambda a: (a.name, a.id))
        return paginate([Account.of(a) for a in rows], first, after)

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
        f = filter or ProjectFilter()
        status = f.status
        rows = [
            Project.of(p, parent)
            for p, parent in await project_rows(info.context)
            if (f.legal_entity is None or p.legal_entity == f.legal_entity)
            and (status is None or p.status is status)
            and (f.business_line is None or p.business_line == f.business_line)
            and (
                (f.started_from is None and f.started_to is None)
                or _between(p.start_date, f.started_from, f.started_to)
            )
        ]
        return paginate(rows, first, after)

    @strawberry.field
    async def invoices(
        self,
        info: Info,
        filter: InvoiceFilter | None = None,
        first: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
    ) -> Connection[Invoice]:
        check_page_size(first)
        f = filter or InvoiceFilter()
        status = f.status
        rows = [
            i
            for i in await visible_invoices(info.context)
            if (f.legal_entity is None or i.legal_entity == f.legal_entity)
            and (status is None or i.entity.status is status)
            and _between(i.tran_date, f.from_date, f.to_date)
            and (f.project_id is None or i.project_id == f.project_id)
        ]
        return paginate(rows, first, after)

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
