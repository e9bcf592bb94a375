"""Invoices, payments and credit memos (ERP-introduced: ``canonical_id("erp", "invoice", <internal id>)``,
or our external id when the gateway wrote the record)."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Annotated

import strawberry

from canonical import entities
from canonical.enums import InvoiceStatus, PaymentStatus
from resolvers.context import Context, Info
from resolvers.types.money import MoneyType

if TYPE_CHECKING:
    from resolvers.types.account import Account

strawberry.enum(InvoiceStatus)
strawberry.enum(PaymentStatus)


@strawberry.federation.type(keys=["id"])
class Invoice:
    id: strawberry.ID
    number: str
    project_id: strawberry.ID | None
    tran_date: date
    due_date: date
    total: MoneyType
    amount_paid: MoneyType
    amount_remaining: MoneyType
    status: InvoiceStatus
    legal_entity: str | None
    erp_id: str | None
    entity: strawberry.Private[entities.Invoice]
    erp_customer_id: strawberry.Private[str | None]

    @classmethod
    def of(cls, invoice: entities.Invoice, erp_customer_id: str | None) -> Invoice:
        return cls(
            id=strawberry.ID(invoice.id),
            number=invoice.number,
            project_id=strawberry.ID(invoice.project_id) if invoice.project_id else None,
            tran_date=invoice.tran_date,
            due_date=invoice.due_date,
            total=MoneyType.required(invoice.total),
            amount_paid=MoneyType.required(invoice.amount_paid),
            amount_remaining=MoneyType.required(invoice.amount_remaining),
            status=invoice.status,
            legal_entity=invoice.legal_entity,
            erp_id=invoice.erp_id,
            entity=invoice,
            erp_customer_id=erp_customer_id,
        )

    @classmethod
    async def resolve_reference(cls, info: Info, id: strawberry.ID) -> Invoice | None:
        for invoice in await visible_invoices(info.context):
            if invoice.id == id:
                return invoice
        return None

    @strawberry.field
    def days_past_due(self, info: Info) -> int:
        return max(0, self.entity.days_past_due(info.context.as_of))

    @strawberry.field(description="The canonical account (CRM-introduced) billed by this invoice")
    async def account_id(self, info: Info) -> strawberry.ID | None:
        if self.erp_customer_id is None:
            return None
        linked = await info.context.loaders.xref_to_canonical["erp"].load(self.erp_customer_id)
        return strawberry.ID(linked) if linked else None

    @strawberry.field
    async def account(
        self, info: Info
    ) -> Annotated[Account, strawberry.lazy("resolvers.types.account")] | None:
        from resolvers.types.account import account_for_erp_customer

        return await account_for_erp_customer(info.context, self.erp_customer_id)


@strawberry.type
class PaymentApplication:
    invoice_id: strawberry.ID
    amount: MoneyType


@strawberry.type
class Payment:
    id: strawberry.ID
    account_id: strawberry.ID
    date: date
    amount: MoneyType
    status: PaymentStatus
    reference: str | None
    erp_id: str | None
    applications: list[PaymentApplication]


@strawberry.type
class CreditMemo:
    id: strawberry.ID
    number: str
    account_id: strawberry.ID
    date: date
    amount: MoneyType
    invoice_id: strawberry.ID | None
    reason: str
    erp_id: str | None


async def visible_invoices(ctx: Context) -> list[Invoice]:
    """Every invoice of the legal entities the caller may see, ordered by ERP id (one SuiteQL)."""
    found = await ctx.loaders.erp_invoice_list.load("*")
    return [Invoice.of(i, c) for i, c in ctx.principal.visible(found, lambda row: row[0].legal_entity)]
