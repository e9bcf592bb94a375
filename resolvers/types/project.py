"""Projects. Id: the ERP job's (``canonical_id("erp", "job", <internal id>)`` or our external id) — the
provisioning flow creates the job first and the PSA project after it, and invoices name the job, so
invoices and projects join without the store. The PSA project is found by the shared project code.

Commercial frame (legal entity, billing method, budget) comes from the ERP job, delivery (time, budget
hours) from the PSA project.

A legal entity booked in Tryton (``ctx.erp_by_entity``) adds its projects — ``project.work`` records of type
project, mapped by ``subgraphs.erp_tryton`` to the same canonical ``Project`` — to every list here, after the
NetSuite ones and under the same visibility rule. Their ERP ids read ``tryton:<id>`` (customer
``tryton:<party id>``), so they never meet NetSuite's internal ids; their invoices come from Tryton, and the
NetSuite-only parts of a project (sales-order contract, ERP project tasks, billing-schedule milestones) are
empty for them: in Tryton the project itself carries its invoicing method.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import strawberry

from canonical import analytics, entities
from canonical.enums import ProjectStatus
from canonical.money import Money
from resolvers.context import Context, Info
from resolvers.permissions import financial
from resolvers.types.contract import (
    Contract,
    Milestone,
    Task,
    contract_of,
    project_milestones,
    project_tasks,
)
from resolvers.types.money import MoneyType
from resolvers.types.time import Expense, TimeEntry, posting_statuses
from subgraphs.erp_tryton.mapping import PREFIX as TRYTON
from subgraphs.erp_tryton.mapping import graph_id, tasks_and_milestones
from subgraphs.psa.wire import WireProject

if TYPE_CHECKING:
    from resolvers.types.account import Account
    from resolvers.types.receivables import Invoice

strawberry.enum(ProjectStatus)


ProjectRow = tuple[entities.Project, str | None]
InvoiceRow = tuple[entities.Invoice, str | None]


def tryton_entity(ctx: Context) -> str | None:
    """The legal entity the Tryton company books, when there is a Tryton connector and the caller may see
    that entity; else None, and nothing is read from Tryton. One connector is one company: the first
    entity configured for Tryton, the one the Tryton billing poller labels its invoices with."""
    if ctx.loaders.tryton is None:
        return None
    codes = sorted(code for code, erp in ctx.erp_by_entity.items() if erp == "tryton")
    return codes[0] if codes and ctx.principal.can_see_entity(codes[0]) else None


def on_tryton(project: entities.Project) -> bool:
    return (project.erp_id or "").startswith(TRYTON)


def _wanted(ctx: Context, legal_entity: str | None) -> str | None:
    """The Tryton entity, when rows of ``legal_entity`` (None: any) may come from it for this caller."""
    entity = tryton_entity(ctx)
    return entity if legal_entity is None or legal_entity == entity else None


async def tryton_project_rows(ctx: Context, legal_entity: str | None = None) -> list[ProjectRow]:
    """The Tryton projects the caller may see, with their party as ``tryton:<id>`` (one read per request);
    none, and no read, when ``legal_entity`` is asked for and Tryton does not book it."""
    entity = _wanted(ctx, legal_entity)
    if entity is None:
        return []
    rows = await ctx.loaders.tryton_project_list.load(entity)
    return ctx.principal.visible(rows, lambda row: row[0].legal_entity)


async def tryton_invoice_rows(ctx: Context, legal_entity: str | None = None) -> list[InvoiceRow]:
    """The issued Tryton invoices the caller may see, each with its project (one read per request); as
    ``tryton_project_rows`` for ``legal_entity``."""
    entity = _wanted(ctx, legal_entity)
    if entity is None:
        return []
    rows = await ctx.loaders.tryton_invoice_list.load(entity)
    return ctx.principal.visible(rows, lambda row: row[0].legal_entity)


async def project_rows(ctx: Context, legal_entity: str | None = None) -> list[ProjectRow]:
    """Every ERP job the caller may see, with its customer's ERP id (one SuiteQL per request), then the
    Tryton projects (one Tryton read, skipped when ``legal_entity`` is asked for and Tryton does not book
    it; the NetSuite rows are not filtered by it)."""
    rows, tryton = await asyncio.gather(
        ctx.loaders.erp_job_list.load("*"), tryton_project_rows(ctx, legal_entity)
    )
    return [*ctx.principal.visible(rows, lambda row: row[0].legal_entity), *tryton]


async def tryton_children(
    ctx: Context, project: entities.Project
) -> tuple[list[entities.Task], list[entities.Milestone]]:
    """A Tryton project's tasks and milestones from its child works (one read per request's batch)."""
    rows = await ctx.loaders.tryton_work_children.load((project.erp_id or "").removeprefix(TRYTON))
    return tasks_and_milestones(project, rows, currency=await project_currency(ctx, project))


def invoice_node(invoice: entities.Invoice, customer: str | None) -> Invoice:
    """The graph's invoice. A Tryton one (id ``tryton:<id>``) shows ``erpId`` "tryton:<id>" and keeps no ERP
    id on its entity, so the NetSuite-only receipts (payments, credit memos) are empty for it rather than
    read with a Tryton id."""
    from resolvers.types.receivables import Invoice

    if not invoice.id.startswith(TRYTON):
        return Invoice.of(invoice, customer)
    node = Invoice.of(dataclasses.replace(invoice, erp_id=None), customer)
    node.erp_id = graph_id(invoice.erp_id) if invoice.erp_id else None
    return node


async def psa_project(ctx: Context, code: str | None) -> WireProject | None:
    if code is None:
        return None
    return (await ctx.loaders.psa_project_list.load("*")).get(code)


async def project_time(ctx: Context, code: str | None) -> list[entities.TimeEntry]:
    wire = await psa_project(ctx, code)
    if wire is None:
        return []
    entries = await ctx.loaders.psa_time_by_client.load(wire["client"]["id"])
    psa_project_id = ctx.loaders.psa_ids.canonical("Project", wire["id"])
    return [e for e in entries if e.project_id == psa_project_id]


async def project_currency(ctx: Context, project: entities.Project) -> str:
    if project.budget is not None:
        return project.budget.currency
    wire = await psa_project(ctx, project.code)
    return (wire["client"].get("currency") if wire else None) or "USD"


async def project_budget(ctx: Context, project: entities.Project) -> Money:
    if project.budget is not None:
        return project.budget
    wire = await psa_project(ctx, project.code)
    amount = wire.get("cost_budget") if wire else None
    return Money(
        Decimal(repr(amount)) if amount is not None else Decimal(0), await project_currency(ctx, project)
    )


async def project_invoices(ctx: Context, project: entities.Project) -> list[entities.Invoice]:
    """The job's invoices, one SuiteQL (``job IN``) per query level; a Tryton project's from the request's
    Tryton invoice list."""
    if on_tryton(project):
        return [i for i, _party in await tryton_invoice_rows(ctx) if i.project_id == project.id]
    return await ctx.loaders.erp_invoices_by_job.load(project.erp_id) if project.erp_id else []


@strawberry.type
class ProjectFinancials:
    project: strawberry.Private[entities.Project]

    async def _currency(self, ctx: Context) -> str:
        return await project_currency(ctx, self.project)

    async def _budget(self, ctx: Context) -> Money:
        return await project_budget(ctx, self.project)

    async def _billed(self, ctx: Context) -> Money:
        currency = await self._currency(ctx)
        invoices = await project_invoices(ctx, self.project)
        return analytics.billed_to_date(invoices, currency, as_of=ctx.as_of)

    @strawberry.field
    async def budget_hours(self, info: Info) -> Decimal | None:
        wire = await psa_project(info.context, self.project.code)
        hours = wire.get("budget") if wire else None
        return None if hours is None else Decimal(repr(hours))

    @strawberry.field
    async def budget_amount(self, info: Info) -> MoneyType | None:
        return MoneyType.of(await self._budget(info.context))

    @strawberry.field
    async def actual_hours(self, info: Info) -> Decimal:
        return sum((e.hours for e in await project_time(info.context, self.project.code)), Decimal(0))

    @financial
    async def cost(self, info: Info) -> MoneyType | None:
        entries = await project_time(info.context, self.project.code)
        return MoneyType.of(analytics.time_cost(entries, await self._currency(info.context)))

    @strawberry.field
    async def billed(self, info: Info) -> MoneyType | None:
        return MoneyType.of(await self._billed(info.context))

    @strawberry.field(description="Billable value of approved or submitted time not billed yet")
    async def unbilled_wip(self, info: Info) -> MoneyType | None:
        entries = await project_time(info.context, self.project.code)
        unbilled = [e for e in entries if not e.is_billed]
        return MoneyType.of(analytics.time_revenue(unbilled, await self._currency(info.context)))

    @strawberry.field
    async def backlog(self, info: Info) -> MoneyType | None:
        budget, billed = await self._budget(info.context), await self._billed(info.context)
        return MoneyType.of(analytics.backlog(budget, billed))

    @financial
    async def margin_percent(self, info: Info) -> Decimal | None:
        from resolvers.figures import percent

        currency = await self._currency(info.context)
        entries = await project_time(info.context, self.project.code)
        revenue, cost = analytics.time_revenue(entries, currency), analytics.time_cost(entries, currency)
        return percent(analytics.margin(revenue, cost))


@strawberry.federation.type(keys=["id"])
class Project:
    id: strawberry.ID
    name: str
    code: str | None
    status: ProjectStatus
    billing_method: str | None
    legal_entity: str | None
    business_line: str | None
    start_date: date | None
    end_date: date | None
    erp_id: str | None
    entity: strawberry.Private[entities.Project]
    erp_customer_id: strawberry.Private[str | None]

    @classmethod
    def of(cls, project: entities.Project, erp_customer_id: str | None) -> Project:
        return cls(
            id=strawberry.ID(project.id),
            name=project.name,
            code=project.code,
            status=project.status,
            billing_method=str(project.billing_method) if project.billing_method else None,
            legal_entity=project.legal_entity,
            business_line=project.business_line,
            start_date=project.start_date,
            end_date=project.end_date,
            erp_id=project.erp_id,
            entity=project,
            erp_customer_id=erp_customer_id,
        )

    @classmethod
    async def resolve_reference(cls, info: Info, id: strawberry.ID) -> Project | None:
        return await load_project(info.context, str(id))

    @strawberry.field
    async def psa_id(self, info: Info) -> str | None:
        wire = await psa_project(info.context, self.code)
        return str(wire["id"]) if wire else None

    @strawberry.field
    async def account(
        self, info: Info
    ) -> Annotated[Account, strawberry.lazy("resolvers.types.account")] | None:
        from resolvers.types.account import account_for_erp_customer, load_account

        account_id = self.entity.account_id
        if on_tryton(self.entity):  # the party's code is the canonical account id
            return await load_account(info.context, account_id) if account_id else None
        return await account_for_erp_customer(info.context, self.erp_customer_id)

    @strawberry.field
    def financials(self) -> ProjectFinancials:
        return ProjectFinancials(project=self.entity)

    @strawberry.field
    async def time_entries(self, info: Info) -> list[TimeEntry]:
        entries = await project_time(info.context, self.code)
        ordered = sorted(entries, key=lambda e: (e.spent_date, e.id))
        statuses = await posting_statuses(info.context, ordered)
        return [TimeEntry.of(e, project_id=self.id, status=s) for e, s in zip(ordered, statuses, strict=True)]

    @strawberry.field
    async def contract(self, info: Info) -> Contract | None:
        if on_tryton(self.entity):
            return None
        return await contract_of(info.context, self.entity, self.erp_customer_id)

    @strawberry.field
    async def tasks(self, info: Info) -> list[Task]:
        if on_tryton(self.entity):
            tasks, _ = await tryton_children(info.context, self.entity)
            return [Task.of(t) for t in tasks]
        return await project_tasks(info.context, self.erp_id, self.entity.id)

    @strawberry.field
    async def milestones(self, info: Info) -> list[Milestone]:
        ctx = info.context
        if on_tryton(self.entity):
            _, milestones = await tryton_children(ctx, self.entity)
            return [Milestone.of(m) for m in milestones]
        return await project_milestones(ctx, self.erp_id, await project_currency(ctx, self.entity))

    @strawberry.field(description="Expenses recorded in the PSA, oldest first")
    async def expenses(self, info: Info) -> list[Expense]:
        ctx = info.context
        wire = await psa_project(ctx, self.code)
        if wire is None:
            return []
        found = (await ctx.loaders.delivery.expenses.load("*")).get(wire["id"], [])
        return [Expense.of(x, project_id=self.id) for x in sorted(found, key=lambda x: (x.spent_date, x.id))]

    @strawberry.field
    async def invoices(
        self, info: Info
    ) -> list[Annotated[Invoice, strawberry.lazy("resolvers.types.receivables")]]:
        found = await project_invoices(info.context, self.entity)
        return [invoice_node(i, self.erp_customer_id) for i in found]


async def load_project_row(ctx: Context, canonical_id: str) -> tuple[entities.Project, str | None] | None:
    """One visible project by canonical id, batched: the store's link or the job's external id."""
    row = await ctx.loaders.erp_job_by_canonical_id.load(canonical_id)
    if row is None or not ctx.principal.visible([row], lambda r: r[0].legal_entity):
        return None
    return row


async def load_project(ctx: Context, canonical_id: str) -> Project | None:
    """From NetSuite (``load_project_row``), else among the caller's Tryton projects."""
    row = await load_project_row(ctx, canonical_id)
    if row is None:
        row = next((r for r in await tryton_project_rows(ctx) if r[0].id == canonical_id), None)
    return Project.of(*row) if row is not None else None
