"""Time entries and expenses (PSA-introduced: ``canonical_id("psa", "TimeEntry", <Harvest id>)``)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import strawberry

from canonical import entities
from canonical.enums import ApprovalStatus, PostingStatus
from resolvers.permissions import financial
from resolvers.types.money import MoneyType

strawberry.enum(ApprovalStatus)
strawberry.enum(PostingStatus)


def posting_status(entry: entities.TimeEntry | entities.Expense) -> PostingStatus:
    """Derived from the PSA's flags: billed → BILLED, approved → QUEUED (on its way to, or in, the ERP),
    else NOT_READY. POSTED/EXCEPTION need the store's posting records (not read here yet)."""
    if entry.is_billed:
        return PostingStatus.BILLED
    if entry.approval_status is ApprovalStatus.APPROVED:
        return PostingStatus.QUEUED
    return PostingStatus.NOT_READY


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
    def of(cls, entry: entities.TimeEntry, *, project_id: str | None) -> TimeEntry:
        return cls(
            id=strawberry.ID(entry.id),
            project_id=strawberry.ID(project_id) if project_id else None,
            user=entry.user,
            spent_date=entry.spent_date,
            hours=entry.hours,
            billable=entry.billable,
            approval_status=entry.approval_status,
            posting_status=posting_status(entry),
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
