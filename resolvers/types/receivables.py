"""Invoices, payments and credit memos (ERP-introduced: ``canonical_id("erp", "invoice", <internal id>)``,
or our external id when the gateway wrote the record)."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Annotated

import strawberry

from canonical import entities
from canonical.enums import InvoiceStatus, PaymentStatus
from canonical.ids import canonical_id
from resolvers.context import Context, Info
from resolvers.types.money import MoneyType
from subgraphs.erp.mapping import credit_memo_from_record, payment_from_record
from subgraphs.erp.wire import Record
from subgraphs.erp_tryton.mapping import PREFIX as TRYTON
from subgraphs.erp_tryton.mapping import payment_from_line

if TYPE_CHECKING:
    from resolvers.types.account import Account

strawberry.enum(InvoiceStatus)
strawberry.enum(PaymentStatus)


async def _receipts(ctx: Context, invoice: entities.Invoice, kind: str) -> list[Record]:
    """The payments (``CustPymt``) or credit memos (``CustCred``) applied to this invoice, each with all
    its applications: one SuiteQL per query level (``NextTransactionLineLink``) for every invoice on it."""
    if invoice.erp_id is None:
        return []
    return [r for r in await ctx.loaders.delivery.receipts.load(invoice.erp_id) if r["type"] == kind]


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
        """A NetSuite invoice by canonical id; a Tryton one (``tryton:<id>``) among the caller's Tryton
        invoices (never a NetSuite read for it)."""
        from resolvers.types.project import invoice_node, tryton_invoice_rows

        ctx = info.context
        if str(id).startswith(TRYTON):
            tryton = next((r for r in await tryton_invoice_rows(ctx) if r[0].id == str(id)), None)
            return invoice_node(*tryton) if tryton is not None else None
        row = await ctx.loaders.erp_invoice_by_canonical_id.load(str(id))
        if row is None or not ctx.principal.visible([row], lambda r: r[0].legal_entity):
            return None
        return Invoice.of(*row)

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

    @strawberry.field(description="Customer payments applied to this invoice (ERP)")
    async def payments(self, info: Info) -> list[Payment]:
        ctx = info.context
        if self.entity.id.startswith(TRYTON):  # its payment lines in Tryton
            lines = await ctx.loaders.tryton_payment_lines.load(self.entity.id.removeprefix(TRYTON))
            paid = [payment_from_line(line, self.entity, today=ctx.as_of) for line in lines]
            return [Payment.of(p, erp_invoice_id=None, invoice_id=self.entity.id) for p in paid]
        records = await _receipts(ctx, self.entity, "CustPymt")
        reference = await ctx.erp.reference_data()
        account = self.entity.account_id
        found = [payment_from_record(r, reference, account_id=account) for r in records]
        return [Payment.of(p, erp_invoice_id=self.entity.erp_id, invoice_id=self.entity.id) for p in found]

    @strawberry.field(description="Credit memos applied to this invoice (ERP)")
    async def credit_memos(self, info: Info) -> list[CreditMemo]:
        ctx = info.context
        records = await _receipts(ctx, self.entity, "CustCred")
        reference = await ctx.erp.reference_data()
        return [
            CreditMemo.of(
                credit_memo_from_record(r, reference, invoice_id=self.entity.id), self.entity.account_id
            )
            for r in records
        ]


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

    @classmethod
    def of(cls, payment: entities.Payment, *, erp_invoice_id: str | None, invoice_id: str) -> Payment:
        # mapping names a day-one invoice by its derived id; the graph's invoice id may be an external id
        derived = canonical_id("erp", "invoice", str(erp_invoice_id))
        return cls(
            id=strawberry.ID(payment.id),
            account_id=strawberry.ID(payment.account_id),
            date=payment.date,
            amount=MoneyType.required(payment.amount),
            status=payment.status,
            reference=payment.reference,
            erp_id=payment.erp_id,
            applications=[
                PaymentApplication(
                    invoice_id=strawberry.ID(invoice_id if a.invoice_id == derived else a.invoice_id),
                    amount=MoneyType.required(a.amount),
                )
                for a in payment.applications
            ],
        )


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

    @classmethod
    def of(cls, memo: entities.CreditMemo, account_id: str) -> CreditMemo:
        return cls(
            id=strawberry.ID(memo.id),
            number=memo.number,
            account_id=strawberry.ID(account_id),
            date=memo.date,
            amount=MoneyType.required(memo.amount),
            invoice_id=strawberry.ID(memo.invoice_id) if memo.invoice_id else None,
            reason=memo.reason,
            erp_id=memo.erp_id,
        )


async def visible_invoices(ctx: Context) -> list[Invoice]:
    """Every invoice of the legal entities the caller may see, ordered by ERP id (one SuiteQL)."""
    found = await ctx.loaders.erp_invoice_list.load("*")
    return [Invoice.of(i, c) for i, c in ctx.principal.visible(found, lambda row: row[0].legal_entity)]
