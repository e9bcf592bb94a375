"""Time entries and expenses (PSA-introduced: ``canonical_id("psa", "TimeEntry", <Harvest id>)``)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import strawberry

from canonical import entities
from canonical.enums import ApprovalStatus, PostingStatus
from resolvers.context import Context
from resolvers.permissions import financial
from resolvers.types.money import MoneyType
from subgraphs.erp.wire import boolean

strawberry.enum(ApprovalStatus)
strawberry.enum(PostingStatus)


def posting_status(entry: entities.TimeEntry | entities.Expense) -> PostingStatus:
    """From the PSA's flags alone: billed → BILLED, approved → QUEUED, else NOT_READY."""
    if entry.is_billed:
        return PostingStatus.BILLED
    if entry.approval_status is ApprovalStatus.APPROVED:
        return PostingStatus.QUEUED
    return PostingStatus.NOT_READY


async def posting_statuses(ctx: Context, entries: list[entities.TimeEntry]) -> list[PostingStatus]:
    """What the ERP (owner of posting state) and the exception queue say, batched per query level:
    the ERP time bill with the entry's id as external id → BILLED or POSTED; an open exception whose
    subject is the entry → EXCEPTION; else the PSA's flags (BILLED / QUEUED / NOT_READY)."""
    loaders = ctx.loaders.delivery
    ids = [e.id for e in entries]
    bills = await loaders.time_bills.load_many(ids)
    failed = await loaders.open_exceptions.load_many(ids)
    statuses: list[PostingStatus] = []
    for entry, bill, exception in zip(entries, bills, failed, strict=True):
        if bill is not None:
            statuses.append(PostingStatus.BILLED if boolean(bill, "billed") else PostingStatus.POSTED)
        elif exception:
            statuses.append(PostingStatus.EXCEPTION)
        else:
            statuses.append(posting_status(entry))
    return statuses


@strawberry.type
class TimeEntry:
    id: strawberry.ID
    project_id: strawberry.ID | None
    user: str
    spent_date: date
    hours: Decimal
    billable: bool
    approval_status: ApprovalStatus
    posting_status: PostingStatus
    is_billed: bool
    notes: str
    psa_id: str | None
    erp_id: str | None
    entity: strawberry.Private[entities.TimeEntry]

    @classmethod
    def of(
        cls, entry: entities.TimeEntry, *, project_id: str | None, status: PostingStatus | None = None
    ) -> TimeEntry:
        return cls(
            id=strawberry.ID(entry.id),
            project_id=strawberry.ID(project_id) if project_id else None,
            user=entry.user,
            spent_date=entry.spent_date,
            hours=entry.hours,
            billable=entry.billable,
            approval_status=entry.approval_status,
            posting_status=status or posting_status(entry),
            is_billed=entry.is_billed,
            notes=entry.notes,
            psa_id=entry.psa_id,
            erp_id=entry.erp_id,
            entity=entry,
        )

    @financial
    def bill_rate(self) -> MoneyType | None:
        return MoneyType.of(self.entity.bill_rate)

    @financial
    def cost_rate(self) -> MoneyType | None:
        return MoneyType.of(self.entity.cost_rate)

    @financial
    def cost(self) -> MoneyType | None:
        return MoneyType.of(self.entity.cost_amount)


@strawberry.type
class Expense:
    id: strawberry.ID
    project_id: strawberry.ID | None
    user: str
    spent_date: date
    amount: MoneyType
    category: str
    billable: bool
    approval_status: ApprovalStatus
    posting_status: PostingStatus
    is_billed: bool
    psa_id: str | None
    erp_id: str | None

    @classmethod
    def of(cls, expense: entities.Expense, *, project_id: str | None) -> Expense:
        return cls(
            id=strawberry.ID(expense.id),
            project_id=strawberry.ID(project_id) if project_id else None,
            user=expense.user,
            spent_date=expense.spent_date,
            amount=MoneyType.required(expense.amount),
            category=expense.category,
            billable=expense.billable,
            approval_status=expense.approval_status,
            posting_status=posting_status(expense),
            is_billed=expense.is_billed,
            psa_id=expense.psa_id,
            erp_id=expense.erp_id,
        )
