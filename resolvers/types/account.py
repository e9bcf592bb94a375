"""Account (CRM-introduced: its id is ``canonical_id("crm", "Account", <Salesforce Id>)``) and its health.

Fields come from their owner: name, owner, industry and business line from the CRM; tax id from the ERP
customer; receivables from ERP aggregates; margin from PSA time. ``legalEntity`` is read from the CRM's
copy (``Legal_Entity__c``, kept in step by the write-back) because row visibility must be decided for
the whole list before paging, without one ERP read per row.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, cast

import strawberry

from canonical import entities
from canonical.enums import HealthStatus
from resolvers import figures
from resolvers.cache import MISSING
from resolvers.context import Context, Info
from resolvers.permissions import financial
from resolvers.types.money import Aging, MoneyType
from subgraphs.erp_tryton.mapping import PREFIX as TRYTON
from subgraphs.erp_tryton.mapping import graph_id

if TYPE_CHECKING:
    from resolvers.types.contract import Contract
    from resolvers.types.pipeline import Opportunity
    from resolvers.types.project import Project
    from resolvers.types.receivables import Invoice

strawberry.enum(HealthStatus)


@strawberry.type
class AccountHealth:
    """Receivables, backlog, margin and DSO of one account as of the request's date, with a traffic light.

    What resolves these fields is a ``HealthView`` over the account's figures, computed once per account
    and request (``resolvers.figures``): every field is a property that strawberry's default resolver
    reads — no resolver function, no coroutine per field. A field whose system failed raises its error."""

    billed_to_date: MoneyType | None
    paid_to_date: MoneyType | None
    open_receivables: MoneyType | None
    overdue: MoneyType | None
    aging: Aging | None
    backlog: MoneyType | None
    margin_percent: Decimal | None = financial(
        description="(revenue − cost) / revenue × 100 over the account's time; null without revenue"
    )
    dso: Decimal | None = strawberry.field(description="Days sales outstanding over the last 90 days")
    status: HealthStatus | None = strawberry.field()
    reasons: list[str] | None = strawberry.field()


class HealthView:
    """The object ``Account.health`` returns for an ``AccountHealth``: its fields as properties."""

    __slots__ = ("_figures",)

    def __init__(self, found: figures.AccountFigures) -> None:
        self._figures = found

    @property
    def billed_to_date(self) -> MoneyType | None:
        return MoneyType.of(self._figures.receivables.get().billed)

    @property
    def paid_to_date(self) -> MoneyType | None:
        return MoneyType.of(self._figures.receivables.get().paid)

    @property
    def open_receivables(self) -> MoneyType | None:
        return MoneyType.of(self._figures.receivables.get().open_total)

    @property
    def overdue(self) -> MoneyType | None:
        return MoneyType.of(self._figures.receivables.get().overdue)

    @property
    def aging(self) -> Aging | None:
        found = self._figures.receivables.get()
        return Aging.of(found.aging, overdue=found.overdue, total=found.open_total)

    @property
    def backlog(self) -> MoneyType | None:
        return MoneyType.of(self._figures.backlog.get())

    @property
    def margin_percent(self) -> Decimal | None:
        return figures.percent(self._figures.margin.get())

    @property
    def dso(self) -> Decimal | None:
        return self._figures.receivables.get().dso

    @property
    def status(self) -> HealthStatus | None:
        return self._figures.health.get().status

    @property
    def reasons(self) -> list[str] | None:
        return list(self._figures.health.get().reasons)


@strawberry.federation.type(keys=["id"])
class Account:
    id: strawberry.ID
    name: str
    legal_entity: str
    currency: str
    account_number: str | None
    industry: str | None
    business_line: str | None
    owner: str | None
    crm_id: str | None
    entity: strawberry.Private[entities.Account]

    @classmethod
    def of(cls, account: entities.Account) -> Account:
        return cls(
            id=strawberry.ID(account.id),
            name=account.name,
            legal_entity=account.legal_entity,
            currency=account.currency,
            account_number=account.account_number,
            industry=account.industry,
            business_line=account.business_line,
            owner=account.owner,
            crm_id=account.crm_id,
            entity=account,
        )

    @classmethod
    async def resolve_reference(cls, info: Info, id: strawberry.ID) -> Account | None:
        return await load_account(info.context, str(id))

    async def _erp_id(self, ctx: Context) -> str | None:
        linked = await ctx.loaders.xref_to_system["erp"].load(self.entity.id)
        return linked or self.entity.erp_id

    async def _erp_customers(self, ctx: Context) -> tuple[str | None, str | None]:
        """The account's NetSuite customer id and its Tryton party as ``tryton:<id>`` (either may be None):
        the party from provisioning's link, or from the CRM's copy of the ERP id when that names one."""
        erp_id = await self._erp_id(ctx)
        party = None
        if ctx.loaders.tryton is not None:
            linked = await ctx.loaders.xref_to_system["tryton"].load(self.entity.id)
            party = graph_id(linked) if linked else None
        if erp_id is not None and erp_id.startswith(TRYTON):
            return None, party or erp_id
        return erp_id, party

    async def _psa_id(self, ctx: Context) -> str | None:
        return await ctx.loaders.xref_to_system["psa"].load(self.entity.id)

    @strawberry.field
    async def erp_id(self, info: Info) -> str | None:
        return await self._erp_id(info.context)

    @strawberry.field
    async def psa_id(self, info: Info) -> str | None:
        return await self._psa_id(info.context)

    @strawberry.field(description="Tax registration, from the ERP customer (the legal master)")
    async def tax_id(self, info: Info) -> str | None:
        erp_id = await self._erp_id(info.context)
        customer = await info.context.loaders.erp_customers.load(erp_id) if erp_id else None
        return customer.tax_id if customer is not None else None

    @strawberry.field
    async def health(self, info: Info) -> AccountHealth:
        loaders = info.context.loaders
        ref = figures.AccountRef.of(self.entity)
        # warm: straight from the process cache; otherwise one batch for every account of this level
        found = figures.warm_figures(loaders, ref) or await loaders.account_figures.load(ref)
        # strawberry reads an object type's plain fields with getattr: the view stands in for the type
        return cast(AccountHealth, HealthView(found))

    @strawberry.field
    async def opportunities(
        self, info: Info
    ) -> list[Annotated[Opportunity, strawberry.lazy("resolvers.types.pipeline")]]:
        from resolvers.types.pipeline import Opportunity

        if self.crm_id is None:
            return []
        found = await info.context.loaders.crm_opportunities_by_account.load(self.crm_id)
        return [Opportunity.of(o, account_id=self.entity.id) for o in found]

    @strawberry.field
    async def invoices(
        self, info: Info
    ) -> list[Annotated[Invoice, strawberry.lazy("resolvers.types.receivables")]]:
        """The NetSuite customer's invoices, then the Tryton party's (issued ones), each list in ERP id order;
        Tryton's only when the caller may see the legal entity Tryton books."""
        from resolvers.types.project import invoice_node, tryton_entity

        ctx = info.context
        erp_id, party = await self._erp_customers(ctx)
        found = await ctx.loaders.erp_invoices_by_customer.load(erp_id) if erp_id else []
        nodes = [invoice_node(i, erp_id) for i in found]
        entity = tryton_entity(ctx)
        if party is not None and entity is not None:
            rows = await ctx.loaders.tryton_invoices_by_party.load((entity, party.removeprefix(TRYTON)))
            nodes.extend(
                invoice_node(i, c) for i, c in ctx.principal.visible(rows, lambda r: r[0].legal_entity)
            )
        return nodes

    @strawberry.field
    async def projects(
        self, info: Info
    ) -> list[Annotated[Project, strawberry.lazy("resolvers.types.project")]]:
        from resolvers.types.project import Project, project_rows

        customers = set(await self._erp_customers(info.context)) - {None}
        if not customers:
            return []
        return [
            Project.of(p, parent) for p, parent in await project_rows(info.context) if parent in customers
        ]

    @strawberry.field(description="One contract per ERP job of the account (see Contract)")
    async def contracts(
        self, info: Info
    ) -> list[Annotated[Contract, strawberry.lazy("resolvers.types.contract")]]:
        from resolvers.types.contract import contract_of
        from resolvers.types.project import project_rows

        ctx = info.context
        erp_id, _party = await self._erp_customers(ctx)  # Tryton keeps no contract records
        if erp_id is None:
            return []
        rows = [(p, parent) for p, parent in await project_rows(ctx) if parent == erp_id]
        found = await asyncio.gather(*(contract_of(ctx, p, parent) for p, parent in rows))
        return [c for c in found if c is not None]


async def load_account(ctx: Context, canonical_id: str) -> Account | None:
    """By canonical id; None when unknown or in a legal entity the caller may not see. The link and the
    row come from the process cache when it holds them (no loader, no await), else through the loaders."""
    cache = ctx.loaders.cache
    crm_id = MISSING if cache is None else cache.xrefs.peek(("system", "crm", canonical_id))
    if crm_id is MISSING:
        crm_id = await ctx.loaders.xref_to_system["crm"].load(canonical_id)
    if crm_id is None:
        return None
    found = MISSING if cache is None else cache.crm_accounts.peek(crm_id)
    if found is MISSING:
        found = await ctx.loaders.crm_accounts.load(crm_id)
    if not isinstance(found, entities.Account) or not ctx.principal.can_see_entity(found.legal_entity):
        return None
    return Account.of(found)


async def account_for_erp_customer(ctx: Context, erp_customer_id: str | None) -> Account | None:
    if erp_customer_id is None:
        return None
    canonical_id = await ctx.loaders.xref_to_canonical["erp"].load(erp_customer_id)
    return await load_account(ctx, canonical_id) if canonical_id else None


__all__ = ["Account", "AccountHealth", "HealthStatus", "load_account"]
