"""Contracts with their billing schedule and rate card, and the tasks and milestones of a project
(all ERP-owned; a milestone's completion is the PSA's and reaches the ERP schedule as ``completed``).

A contract is the commercial frame of one ERP job. A deal the gateway provisioned has a sales order on
the job (its external id is the contract's canonical id, ``canonical_id("crm", "Contract", <opp id>)``);
a day-one job has no record of its own for it — its contract is the job's frame and billing schedule,
addressed by the project's id. Value: the sales order's total, else the job's budget.

Reads per query level: sales orders, billing schedules and project tasks by job ids (one SuiteQL each),
service items once (the T&M rate card), and the schedule records themselves for events (one GET each).
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
from subgraphs.erp.mapping import (
    SCHEDULE_TYPE,
    billing_schedule_from_record,
    record_id,
    task_from_project_task,
)
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


async def schedule_record(ctx: Context, job_id: str | None) -> Record | None:
    if job_id is None:
        return None
    rows = await ctx.loaders.delivery.schedules.load(job_id)
    if not rows:
        return None
    return await ctx.loaders.delivery.schedule_records.load(str(rows[0]["id"]))


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
    record = await schedule_record(ctx, job_id)
    for event in (field(record, "milestones") or []) if record else []:
        done, billed = bool(event.get("completed")), bool(event.get("billed"))
        found.append(
            Milestone(
                id=strawberry.ID(_milestone_id(str(event["id"]))),
                name=str(event["name"]),
                due_date=date.fromisoformat(str(event["dueDate"])),
                amount=MoneyType.of(
                    Money(Decimal(str(event["amount"])), str(event.get("currency") or currency))
                ),
                status="BILLED" if billed else ("COMPLETED" if done else "PLANNED"),
                completed_on=None,
                psa_id=None,
                erp_id=str(event["id"]),
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
        record = await schedule_record(ctx, self.project.erp_id)
        if record is None:
            if self.project.billing_method is BillingMethod.TIME_AND_MATERIALS:
                return BillingSchedule(
                    method=str(BillingMethod.TIME_AND_MATERIALS), in_arrears=True, events=[]
                )
            return None
        schedule = billing_schedule_from_record(record, await self._currency(ctx))
        return BillingSchedule(
            method=str(schedule.method),
            in_arrears=schedule.in_arrears,
            events=[
                BillingEvent(
                    name=e.name,
                    date=e.date,
                    amount=MoneyType.required(e.amount),
                    milestone_id=strawberry.ID(_milestone_id(e.id)) if e.id else None,
                )
                for e in schedule.events
            ],
        )

    @strawberry.field(description="Hourly rates by labour category; T&M without its own: the standard rates")
    async def rate_card(self, info: Info) -> list[RateCardLine]:
        ctx = info.context
        record = await schedule_record(ctx, self.project.erp_id)
        own = (field(record, "rateCard") or []) if record else []
        currency = await self._currency(ctx)
        if own:
            return [
                RateCardLine(
                    labour_category=str(r["labourCategory"]),
                    product_code=r.get("productCode"),
                    rate=MoneyType.of(Money(Decimal(str(r["rate"])), str(r.get("currency") or currency))),
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
