"""Projects. Id: the ERP job's (``canonical_id("erp", "job", <internal id>)`` or our external id) — the
provisioning flow creates the job first and the PSA project after it, and invoices name the job, so
invoices and projects join without the store. The PSA project is found by the shared project code.

Commercial frame (legal entity, billing method, budget) comes from the ERP job, delivery (time, budget
hours) from the PSA project.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import strawberry

from canonical import analytics, entities
from canonical.enums import ProjectStatus
from canonical.money import Money
from resolvers.context import Context, Info
from resolvers.permissions import financial
from resolvers.types.money import MoneyType
from resolvers.types.time import TimeEntry
from subgraphs.psa.wire import WireProject

if TYPE_CHECKING:
    from resolvers.types.account import Account

strawberry.enum(ProjectStatus)


async def project_rows(ctx: Context) -> list[tuple[entities.Project, str | None]]:
    """Every ERP job the caller may see, with its customer's ERP id (one SuiteQL per request)."""
    rows = await ctx.loaders.erp_job_list.load("*")
    return ctx.principal.visible(rows, lambda row: row[0].legal_entity)


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


@strawberry.type
class ProjectFinancials:
    project: strawberry.Private[entities.Project]

    async def _currency(self, ctx: Context) -> str:
        wire = await psa_project(ctx, self.project.code)
        if self.project.budget is not None:
            return self.project.budget.currency
        return (wire["client"].get("currency") if wire else None) or "USD"

    async def _budget(self, ctx: Context) -> Money:
        if self.project.budget is not None:
            return self.project.budget
        wire = await psa_project(ctx, self.project.code)
        amount = wire.get("cost_budget") if wire else None
        return Money(Decimal(repr(amount)) if amount is not None else Decimal(0), await self._currency(ctx))

    async def _billed(self, ctx: Context) -> Money:
        currency = await self._currency(ctx)
        invoices = [
            i for i, _c in await ctx.loaders.erp_invoice_list.load("*") if i.project_id == self.project.id
        ]
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
        from resolvers.types.account import account_for_erp_customer

        return await account_for_erp_customer(info.context, self.erp_customer_id)

    @strawberry.field
    def financials(self) -> ProjectFinancials:
        return ProjectFinancials(project=self.entity)

    @strawberry.field
    async def time_entries(self, info: Info) -> list[TimeEntry]:
        entries = await project_time(info.context, self.code)
        return [
            TimeEntry.of(e, project_id=self.id) for e in sorted(entries, key=lambda e: (e.spent_date, e.id))
        ]


async def load_project(ctx: Context, canonical_id: str) -> Project | None:
    for project, parent in await project_rows(ctx):
        if project.id == canonical_id:
            return Project.of(project, parent)
    return None
