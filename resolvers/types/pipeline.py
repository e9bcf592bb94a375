"""Opportunities and their line items (CRM-introduced: ``canonical_id("crm", "Opportunity", <Id>)``)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import strawberry

from canonical import entities
from resolvers.context import Info
from resolvers.types.money import MoneyType


@strawberry.type
class OpportunityLine:
    id: strawberry.ID | None
    crm_id: str | None
    product_code: str
    description: str
    quantity: Decimal
    unit_price: MoneyType
    total: MoneyType
    service_date: date | None

    @classmethod
    def of(cls, line: entities.OpportunityLine) -> OpportunityLine:
        return cls(
            id=strawberry.ID(line.id) if line.id else None,
            crm_id=line.crm_id,
            product_code=line.product_code,
            description=line.description,
            quantity=line.quantity,
            unit_price=MoneyType.required(line.unit_price),
            total=MoneyType.required(line.total),
            service_date=line.service_date,
        )


@strawberry.type
class Opportunity:
    id: strawberry.ID
    account_id: strawberry.ID
    name: str
    stage: str
    amount: MoneyType
    close_date: date
    billing_method: str | None
    probability: Decimal | None
    is_closed: bool
    is_won: bool
    business_line: str | None
    crm_id: str | None

    @classmethod
    def of(cls, opportunity: entities.Opportunity, *, account_id: str) -> Opportunity:
        return cls(
            id=strawberry.ID(opportunity.id),
            account_id=strawberry.ID(account_id),
            name=opportunity.name,
            stage=str(opportunity.stage),
            amount=MoneyType.required(opportunity.amount),
            close_date=opportunity.close_date,
            billing_method=str(opportunity.billing_method) if opportunity.billing_method else None,
            probability=opportunity.probability,
            is_closed=opportunity.is_closed,
            is_won=opportunity.is_won,
            business_line=opportunity.business_line,
            crm_id=opportunity.crm_id,
        )

    @strawberry.field
    async def lines(self, info: Info) -> list[OpportunityLine]:
        if self.crm_id is None:
            return []
        return [
            OpportunityLine.of(line)
            for line in await info.context.loaders.crm_opportunity_lines.load(self.crm_id)
        ]
