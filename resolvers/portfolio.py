"""Portfolio roll-up: revenue, cost and margin of time by legal entity, business line and month, with
each group's backlog (contracted by ERP job budget − billed) on the month of the request's date.

Reads: the ERP job list, the ERP invoice list, the PSA project list and the firm's time — four list
reads whatever the size of the portfolio. A legal entity booked in Tryton adds its project and invoice
lists (two Tryton reads, none for a caller who may not see that entity): its projects are grouped, costed
and billed exactly like NetSuite's, their time found in the PSA by the same project code.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

import strawberry

from canonical import analytics
from canonical.entities import Invoice, TimeEntry
from canonical.money import Money
from resolvers.context import Context
from resolvers.figures import percent
from resolvers.permissions import financial
from resolvers.types.money import MoneyType
from resolvers.types.project import on_tryton, project_rows, tryton_invoice_rows


@strawberry.input
class PortfolioFilter:
    legal_entity: str | None = None
    business_line: str | None = None
    from_month: str | None = strawberry.field(default=None, description="YYYY-MM, inclusive")
    to_month: str | None = strawberry.field(default=None, description="YYYY-MM, inclusive")


@strawberry.type
class PortfolioRow:
    legal_entity: str
    business_line: str
    month: str
    revenue: MoneyType
    backlog: MoneyType
    cost_money: strawberry.Private[Money]
    margin_fraction: strawberry.Private[Decimal | None]

    @financial
    def cost(self) -> MoneyType | None:
        return MoneyType.of(self.cost_money)

    @financial
    def margin_percent(self) -> Decimal | None:
        return percent(self.margin_fraction)


@dataclass
class _Group:
    currency: str
    revenue: list[Money] = field(default_factory=list)
    cost: list[Money] = field(default_factory=list)
    backlog: list[Money] = field(default_factory=list)


async def portfolio_rows(ctx: Context, f: PortfolioFilter) -> list[PortfolioRow]:
    loaders = ctx.loaders
    projects = [
        (p, parent)
        for p, parent in await project_rows(ctx, f.legal_entity)  # only the caller's legal entities
        if (f.legal_entity is None or p.legal_entity == f.legal_entity)
        and (f.business_line is None or p.business_line == f.business_line)
    ]
    psa = await loaders.psa_project_list.load("*")
    invoices = await loaders.erp_invoice_list.load("*")
    if any(on_tryton(p) for p, _parent in projects):
        invoices = [*invoices, *await tryton_invoice_rows(ctx)]
    entries = await loaders.psa_all_time.load("*")
    by_psa_project: dict[int, list[TimeEntry]] = defaultdict(list)
    for entry in entries:
        pid = loaders.psa_project_of(entry)
        if pid is not None:
            by_psa_project[pid].append(entry)
    billed: dict[str, list[Invoice]] = defaultdict(list)
    for invoice, _customer in invoices:
        if invoice.project_id:
            billed[invoice.project_id].append(invoice)

    groups: dict[tuple[str, str, str], _Group] = {}
    this_month = ctx.as_of.strftime("%Y-%m")
    for project, _parent in projects:
        wire = psa.get(project.code or "")
        currency = (
            project.budget.currency if project.budget else (wire["client"].get("currency") if wire else None)
        ) or "USD"
        le, line = project.legal_entity or "", project.business_line or ""

        def group(month: str, le: str = le, line: str = line, currency: str = currency) -> _Group:
            return groups.setdefault((le, line, month), _Group(currency))

        for entry in by_psa_project.get(wire["id"], []) if wire else []:
            g = group(entry.spent_date.strftime("%Y-%m"))
            g.revenue.append(analytics.time_revenue([entry], g.currency))
            g.cost.append(analytics.time_cost([entry], g.currency))
        budget = project.budget
        if budget is None and wire is not None and wire.get("cost_budget") is not None:
            budget = Money(Decimal(repr(wire["cost_budget"])), currency)
        if budget is not None:
            done = analytics.billed_to_date(billed.get(project.id, []), currency, as_of=ctx.as_of)
            group(this_month).backlog.append(analytics.backlog(budget, done))

    rows: list[PortfolioRow] = []
    for (le, line, month), g in sorted(groups.items()):
        if (f.from_month and month < f.from_month) or (f.to_month and month > f.to_month):
            continue
        revenue, cost = Money.sum(g.revenue, g.currency), Money.sum(g.cost, g.currency)
        rows.append(
            PortfolioRow(
                legal_entity=le,
                business_line=line,
                month=month,
                revenue=MoneyType.required(revenue),
                backlog=MoneyType.required(Money.sum(g.backlog, g.currency)),
                cost_money=cost,
                margin_fraction=analytics.margin(revenue, cost),
            )
        )
    return rows
