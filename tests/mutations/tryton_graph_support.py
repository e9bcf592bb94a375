"""The state the Tryton graph tests read: two EU01 deals provisioned into Tryton through the flows, time
logged and invoiced there, the same time in the PSA; and the graph queried over it."""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal
from typing import Any

from canonical.principal import Principal
from mutations.identity import account_canonical_id
from mutations.provisioning.outcomes import ProvisionResult
from resolvers.context import Context, build_context
from resolvers.schema import build_schema
from store.repositories import CrossReferenceRepo
from subgraphs.erp_tryton.client import TrytonClient
from tests.mutations.conftest import ADMIN, Flow
from tests.mutations.tryton_flow import log_and_invoice, win_and_provision

TM = "006000000000032AAA"  # account 10, EU01, T&M
FIXED_FEE = "006000000000059AAA"  # account 19, EU01, Managed Services: an effort project in Tryton
MILESTONE = "006000000000033AAA"  # account 10 again: a progress project, a task per milestone
AS_OF = date(2026, 12, 27)
US_ONLY = Principal("us", roles=frozenset({"finance"}), legal_entities=frozenset({"US01"}))
PROJECTS = """
query($first: Int!, $after: String, $filter: ProjectFilter) {
  projects(first: $first, after: $after, filter: $filter) { totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { id code legalEntity erpId billingMethod account { id }
      financials { budgetAmount { amount currency } billed { amount currency } backlog { amount } }
      invoices { id number status total { amount currency } } } } } }
"""
INVOICES = """
query($first: Int!, $after: String, $filter: InvoiceFilter) {
  invoices(first: $first, after: $after, filter: $filter) { totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { id number status erpId legalEntity projectId accountId payments { id }
      total { amount currency } amountRemaining { amount } } } } }
"""
PORTFOLIO = """
query($filter: PortfolioFilter) { portfolio(filter: $filter) {
  legalEntity businessLine month revenue { amount currency } backlog { amount currency } } }
"""


@dataclasses.dataclass
class Booked:
    """Three EU01 deals provisioned into Tryton: T&M (2 h logged, invoiced and posted), a fixed fee and a
    milestone deal."""

    flow: Flow
    client: TrytonClient
    tm: ProvisionResult
    fixed: ProvisionResult
    milestone: ProvisionResult
    invoice_id: int  # Tryton
    invoice_total: Decimal
    revenue: Decimal  # the T&M project's PSA time at bill rate
    account_id: str  # account 10's canonical id

    def context(self, principal: Principal = ADMIN) -> Context:
        return graph_context(self.flow, self.client, principal)

    async def query(
        self, query: str, principal: Principal = ADMIN, *, tryton: bool = True, **variables: Any
    ) -> dict[str, Any]:
        return await graph_query(self.flow, self.client if tryton else None, query, principal, **variables)


def graph_context(flow: Flow, client: TrytonClient | None, principal: Principal = ADMIN) -> Context:
    """The graph over ``flow``'s systems, EU01 booked in Tryton through ``client`` (None: as if Tryton were
    not configured)."""
    deps = flow.deps
    return build_context(
        principal=principal,
        crm=deps.crm,
        psa=deps.psa,
        erp=deps.erp,
        sessionmaker=deps.sessionmaker,
        as_of=AS_OF,
        tryton=client,
        erp_by_entity={"EU01": "tryton"},
    )


async def graph_query(
    flow: Flow, client: TrytonClient | None, query: str, principal: Principal = ADMIN, **variables: Any
) -> dict[str, Any]:
    """``query`` in ``graph_context`` → its data; errors fail the test."""
    context = graph_context(flow, client, principal)
    answer = await build_schema().execute(query, variable_values=variables, context_value=context)
    assert answer.errors is None, answer.errors
    assert answer.data is not None
    return answer.data


async def book(flow: Flow, client: TrytonClient) -> Booked:
    """``Booked`` on ``flow``, whose EU01 books in Tryton through ``client``."""
    tm = await win_and_provision(flow, TM, "c-lists")
    fixed = await win_and_provision(flow, FIXED_FEE, "c-lists")
    milestone = await win_and_provision(flow, MILESTONE, "c-lists")
    project = int(str(tm.erp_job_id))
    (row,) = await client.read("project.work", [project], ["timesheet_start_date", "list_price"])
    invoice = await log_and_invoice(client, project, 2)
    # the same work in the PSA, where the portfolio's revenue comes from
    psa_project = int(str(tm.psa_project_id))
    assignment = (await flow.deps.psa.task_assignments(psa_project))[0]
    person = next(e for e in flow.firm.employees if e.legal_entity == "EU01")
    entry = await flow.deps.psa.create_time_entry(
        {
            "project_id": psa_project,
            "task_id": assignment["task"]["id"],
            "user_id": person.psa_user_id,
            "spent_date": row["timesheet_start_date"].isoformat(),
            "hours": 2,
            "notes": "graph lists",
        }
    )
    crm_account = flow.firm.accounts[10].crm_id
    account_id = account_canonical_id(crm_account)
    async with flow.deps.sessionmaker.begin() as session:  # what backfill links on day one
        if not (await CrossReferenceRepo(session).system_ids_for("crm", [account_id])):
            await CrossReferenceRepo(session).link(account_id, "Account", "crm", crm_account)
    return Booked(
        flow,
        client,
        tm,
        fixed,
        milestone,
        invoice,
        (2 * row["list_price"]).quantize(Decimal("0.01")),
        Decimal(str(entry["billable_rate"])) * 2,
        account_id,
    )


async def all_pages(b: Booked, query: str, field: str, first: int, **variables: Any) -> list[Any]:
    """Every edge of a connection, page after page; each page's totalCount must be the list's length."""
    edges: list[Any] = []
    after = None
    totals = set()
    while True:
        page = (await b.query(query, first=first, after=after, **variables))[field]
        edges.extend(page["edges"])
        totals.add(page["totalCount"])
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert totals == {len(edges)}
    assert len({e["cursor"] for e in edges}) == len({e["node"]["id"] for e in edges}) == len(edges)
    return edges
