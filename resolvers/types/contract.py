"""Contracts with their billing schedule and rate card (ERP-owned).

The demo ERP keeps no contract records of its own yet (provisioning writes them), so the graph exposes
the type and its federation key; ``resolve_reference`` answers null until an ERP contract reader lands.
"""

from __future__ import annotations

from datetime import date

import strawberry

from resolvers.context import Info
from resolvers.permissions import financial
from resolvers.types.money import MoneyType


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


@strawberry.federation.type(keys=["id"])
class Contract:
    id: strawberry.ID
    account_id: strawberry.ID
    legal_entity: str
    billing_method: str
    value: MoneyType
    current_value: MoneyType
    start_date: date | None
    end_date: date | None
    payment_terms: str | None
    erp_id: str | None
    billing_schedule: BillingSchedule | None
    rate_card: list[RateCardLine]

    @classmethod
    async def resolve_reference(cls, info: Info, id: strawberry.ID) -> Contract | None:
        return None
