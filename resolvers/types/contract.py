"""Contracts with their billing schedule and rate card, and the tasks and milestones of a project
(all ERP-owned; a milestone's completion is the PSA's and reaches the ERP schedule as ``completed``).

A contract is the commercial frame of one ERP job. A deal the gateway provisioned has a sales order on
the job (its external id is the contract's canonical id, ``canonical_id("crm", "Contract", <opp id>)``);
a day-one job has no record of its own for it — its contract is the job's frame and billing schedule,
addressed by the project's id. Value: the sales order's total, else the job's budget.

Reads per query level: sales orders, billing schedules and project tasks by job ids, then the schedules'
events and rate cards by schedule ids (one SuiteQL each), and service items once (the T&M rate card).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import strawberry

from canonical import entities
from canonical.enums import BillingMethod
from canonical.ids import canonical_id
from canonical.money import Money
from resolvers.context import Context, Info
from resolvers.permissions import financial
from resolvers.types.money import MoneyType
from subgraphs.erp.mapping import SCHEDULE_TYPE, record_id, task_from_project_task
from subgraphs.erp.wire import Record, boolean, day, decimal, field, ref_id, text


@strawberry.type
class BillingEvent:
    name: str
    date: date
    amount: MoneyType
    milestone_id: strawberry.ID | None


@strawberry.type
class BillingSchedule:
    method: str
    in_arrears: bool
    events: list[BillingEvent]


@strawberry.type
class RateCardLine:
    labour_category: str
    product_code: str | None
    rate: MoneyType | None = financial()


@strawberry.type
class Milestone:
    id: strawberry.ID
    name: str
    due_date: date | None
    amount: MoneyType | None
    status: str
    completed_on: date | None
    psa_id: str | None
    erp_id: str | None

    @classmethod
    def of(cls, milestone: entities.Milestone) -> Milestone:
        return cls(
            id=strawberry.ID(milestone.id),
            name=milestone.name,
            due_date=milestone.due_date,
            amount=MoneyType.of(milestone.amount),
            status=str(milestone.status),
            completed_on=milestone.completed_on,
            psa_id=milestone.psa_id,
            erp_id=milestone.erp_id,
        )


@strawberry.type
class Task:
    id: strawberry.ID
    name: str
    status: str
    billable: bool
    labour_category: str | None
    psa_id: str | None
    erp_id: str | None

    @classmethod
    def of(cls, task: entities.Task) -> Task:
        return cls(
            id=strawberry.ID(task.id),
            name=task.name,
            status=str(task.status),
            billable=task.billable,
            labour_category=task.labour_category,
            psa_id=task.psa_id,
            erp_id=task.erp_id,
        )


def _milestone_id(erp_id: str) -> str:
    return canonical_id("erp", "milestone", erp_id)


async def schedule_row(ctx: Context, job_id: str | None) -> Record | None:
    """The job's (first) billing schedule, a SuiteQL row."""
    if job_id is None:
        return None
    rows = await ctx.loaders.delivery.schedules.load(job_id)
    return rows[0] if rows else None


async def schedule_events(ctx: Context, schedule: Record | None) -> list[Record]:
    return await ctx.loaders.delivery.milestones.load(str(schedule["id"])) if schedule else []


def _line_money(line: Record, currency: str, column: str = "amount") -> Money:
    """A schedule line's amount, in its own currency if it names one, else the contract's."""
    return Money(decimal(line, column) or Decimal(0), text(line, "currency") or currency)


def _event_id(event: Record) -> strawberry.ID | None:
    return strawberry.ID(_milestone_id(str(event["milestone"]))) if event["milestone"] else None


async def project_tasks(ctx: Context, job_id: str | None, project_id: str) -> list[Task]:
    rows = await ctx.loaders.delivery.project_tasks.load(job_id) if job_id else []
    return [
        Task.of(task_from_project_task(r, project_id=project_id))
        for r in rows
        if not boolean(r, "isMilestone")
    ]


async def project_milestones(ctx: Context, job_id: str | None, currency: str) -> list[Milestone]:
    """Milestone tasks the gateway provisioned, then the events of the job's billing schedule."""
    if job_id is None:
        return []
    rows = await ctx.loaders.delivery.project_tasks.load(job_id)
    found = [
        Milestone(
            id=strawberry.ID(record_id(r, "projectTask")),
            name=str(field(r, "title")),
            due_date=None,
            amount=None,
            status="COMPLETED" if text(r, "status") == "completed" else "PLANNED",
            completed_on=None,
            psa_id=None,
            erp_id=str(r["id"]),
        )
        for r in rows
        if boolean(r, "isMilestone")
    ]
    for event in await schedule_events(ctx, await schedule_row(ctx, job_id)):
        done, billed = boolean(event, "completed"), boolean(event, "billed")
        found.append(
            Milestone(
                id=strawberry.ID(_milestone_id(str(event["milestone"]))),
                name=str(event["name"]),
                due_date=day(event, "duedate"),
                amount=MoneyType.of(_line_money(event, currency)),
                status="BILLED" if billed else ("COMPLETED" if done else "PLANNED"),
                completed_on=None,
                psa_id=None,
                erp_id=str(event["milestone"]),
            )
        )
    return found


@strawberry.federation.type(keys=["id"])
class Contract:
    id: strawberry.ID
    legal_entity: str
    start_date: date | None
    end_date: date | None
    payment_terms: str | None
    erp_id: str | None
    project: strawberry.Private[entities.Project]
    customer_id: strawberry.Private[str | None]
    order: strawberry.Private[Record | None]

    @classmethod
    def of(cls, project: entities.Project, customer_id: str | None, order: Record | None) -> Contract:
        return cls(
            id=strawberry.ID(record_id(order, "salesOrder") if order else project.id),
            legal_entity=project.legal_entity or "",
            start_date=(day(order, "startDate") if order else None) or project.start_date,
            end_date=(day(order, "endDate") if order else None) or project.end_date,
            payment_terms=None,
            erp_id=str(order["id"]) if order else None,
            project=project,
            customer_id=customer_id,
            order=order,
        )

    @classmethod
    async def resolve_reference(cls, info: Info, id: strawberry.ID) -> Contract | None:
        return await load_contract(info.context, str(id))

    async def _currency(self, ctx: Context) -> str:
        from resolvers.types.project import project_currency

        return await project_currency(ctx, self.project)

    @strawberry.field(description="The job's billing type; for charge-based jobs, its schedule's type")
    async def billing_method(self, info: Info) -> str:
        if self.project.billing_method is not None or self.project.erp_id is None:
            return str(self.project.billing_method or "")
        rows = await info.context.loaders.delivery.schedules.load(self.project.erp_id)
        by_type = {v: k for k, v in SCHEDULE_TYPE.items()}
        method = by_type.get(str(rows[0]["scheduletype"])) if rows else None
        return str(method or "")

    @strawberry.field
    async def account_id(self, info: Info) -> strawberry.ID:
        linked = None
        if self.customer_id is not None:
            linked = await info.context.loaders.xref_to_canonical["erp"].load(self.customer_id)
        return strawberry.ID(linked or canonical_id("erp", "customer", str(self.customer_id)))

    async def _value(self, ctx: Context) -> Money:
        from resolvers.types.project import project_budget

        total = decimal(self.order, "foreigntotal") if self.order else None
        if total is not None:
            reference = await ctx.erp.reference_data()
            currency = reference.currency_code(ref_id(self.order or {}, "currency"))
            return Money(total, currency or await self._currency(ctx))
        return await project_budget(ctx, self.project)

    @strawberry.field(description="The sales order's total, else the job's budget")
    async def value(self, info: Info) -> MoneyType:
        return MoneyType.required(await self._value(info.context))

    @strawberry.field(description="The value after amendments (the sales order carries them)")
    async def current_value(self, info: Info) -> MoneyType:
        return MoneyType.required(await self._value(info.context))

    @strawberry.field
    async def billing_schedule(self, info: Info) -> BillingSchedule | None:
        ctx = info.context
        row = await schedule_row(ctx, self.project.erp_id)
        if row is None:
            if self.project.billing_method is BillingMethod.TIME_AND_MATERIALS:
                return BillingSchedule(
                    method=str(BillingMethod.TIME_AND_MATERIALS), in_arrears=True, events=[]
                )
            return None
        currency = await self._currency(ctx)
        method = {v: k for k, v in SCHEDULE_TYPE.items()}[str(row["scheduletype"])]
        return BillingSchedule(
            method=str(method),
            in_arrears=boolean(row, "inarrears"),
            events=[
                BillingEvent(
                    name=str(e["name"]),
                    date=day(e, "duedate") or date.min,
                    amount=MoneyType.required(_line_money(e, currency)),
                    milestone_id=strawberry.ID(_milestone_id(str(e["milestone"])))
                    if e["milestone"]
                    else None,
                )
                for e in await schedule_events(ctx, row)
            ],
        )

    @strawberry.field(description="Hourly rates by labour category; T&M without its own: the standard rates")
    async def rate_card(self, info: Info) -> list[RateCardLine]:
        ctx = info.context
        row = await schedule_row(ctx, self.project.erp_id)
        own = await ctx.loaders.delivery.rates.load(str(row["id"])) if row else []
        currency = await self._currency(ctx)
        if own:
            return [
                RateCardLine(
                    labour_category=str(r["labourcategory"]),
                    product_code=text(r, "productcode"),
                    rate=MoneyType.of(
                        Money(decimal(r, "rate") or Decimal(0), text(r, "currency") or currency)
                    ),
                )
                for r in own
            ]
        if self.project.billing_method is not BillingMethod.TIME_AND_MATERIALS:
            return []
        return [
            RateCardLine(
                labour_category=str(item["displayname"]),
                product_code=text(item, "itemid"),
                rate=MoneyType.of(Money(decimal(item, "rate") or Decimal(0), currency)),
            )
            for item in await ctx.loaders.delivery.service_items.load("*")
        ]


async def contract_of(ctx: Context, project: entities.Project, customer_id: str | None) -> Contract | None:
    if project.erp_id is None:
        return None
    orders = await ctx.loaders.delivery.sales_orders.load(project.erp_id)
    return Contract.of(project, customer_id, orders[-1] if orders else None)


async def load_contract(ctx: Context, canonical_id_: str) -> Contract | None:
    """A provisioned contract by its sales order's external id, a day-one one by its project's id."""
    from resolvers.types.project import load_project_row

    row = await load_project_row(ctx, canonical_id_)
    if row is not None:
        contract = await contract_of(ctx, *row)
        return contract if contract is not None and contract.erp_id is None else None
    order = await ctx.loaders.delivery.sales_order_by_external_id.load(canonical_id_)
    job = ref_id(order, "job") if order else None
    if order is None or job is None:
        return None
    found = await ctx.loaders.erp_jobs.load(job)
    if found is None or not ctx.principal.visible([found], lambda p: p.legal_entity):
        return None
    return Contract.of(found, ref_id(order, "entity"), order)
