"""The graph over a legal entity booked in Tryton (EU01): the same queries as for NetSuite, the rows from
Tryton — account health, the project and invoice lists, a project's financials, the portfolio — and none of
them for a caller who may not see EU01."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import AsyncIterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from canonical.entities import Project
from canonical.principal import Principal
from mutations.identity import account_canonical_id, provisioned_project_canonical_id
from mutations.provisioning.outcomes import ProvisionResult
from resolvers.context import Context, build_context
from resolvers.schema import build_schema
from store.repositories import CrossReferenceRepo
from subgraphs.erp_tryton.client import TrytonClient
from subgraphs.erp_tryton.mapping import invoice_project
from tests.mutations.conftest import ADMIN, Flow
from tests.mutations.tryton_flow import log_and_invoice, use_tryton, win_and_provision
from tests.subgraphs.erp_tryton.tryton_support import Server

TM = "006000000000032AAA"  # account 10, EU01
HEALTH = """
query($id: ID!) { account(id: $id) { id name health {
  billedToDate { amount currency } paidToDate { amount } openReceivables { amount } overdue { amount } } } }
"""


async def test_health_of_a_tryton_account_comes_from_tryton(flow: Flow, tryton: Server) -> None:
    async with use_tryton(flow, tryton) as client:
        deps = flow.deps
        result = await win_and_provision(flow, TM, "c-graph")
        project = int(str(result.erp_job_id))
        (row,) = await client.read("project.work", [project], ["list_price"])
        await log_and_invoice(client, project, 2)
        total = (2 * row["list_price"]).quantize(Decimal("0.01"))

        context = build_context(
            principal=ADMIN,
            crm=deps.crm,
            psa=deps.psa,
            erp=deps.erp,
            sessionmaker=deps.sessionmaker,
            as_of=date(2026, 12, 27),
            tryton=client,
            erp_by_entity=deps.erp_by_entity,
        )
        crm_account = flow.firm.accounts[10].crm_id
        account_id = account_canonical_id(crm_account)
        async with deps.sessionmaker.begin() as session:  # what backfill links on day one
            if not (await CrossReferenceRepo(session).system_ids_for("crm", [account_id])):
                await CrossReferenceRepo(session).link(account_id, "Account", "crm", crm_account)
        calls = client.calls
        answer = await build_schema().execute(
            HEALTH, variable_values={"id": account_id}, context_value=context
        )

    assert answer.errors is None, answer.errors
    health = answer.data["account"]["health"]
    assert health["billedToDate"] == {"amount": str(total), "currency": "EUR"}
    assert Decimal(health["openReceivables"]["amount"]) == total
    assert Decimal(health["paidToDate"]["amount"]) == 0
    assert Decimal(health["overdue"]["amount"]) == 0  # NET30 from 30 Nov: due 30 Dec
    assert client.calls == calls + 1  # one Tryton read for the account's receivables


# -- lists, financials and the portfolio (issue 9) ---------------------------------------------------------

FIXED_FEE = "006000000000059AAA"  # account 19, EU01, Managed Services: an effort project in Tryton
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
    """Two EU01 deals provisioned into Tryton: T&M (2 h logged, invoiced and posted) and a fixed fee."""

    flow: Flow
    client: TrytonClient
    tm: ProvisionResult
    fixed: ProvisionResult
    invoice_id: int  # Tryton
    invoice_total: Decimal
    revenue: Decimal  # the T&M project's PSA time at bill rate
    account_id: str  # account 10's canonical id

    def context(self, principal: Principal = ADMIN, *, tryton: bool = True) -> Context:
        deps = self.flow.deps
        return build_context(
            principal=principal,
            crm=deps.crm,
            psa=deps.psa,
            erp=deps.erp,
            sessionmaker=deps.sessionmaker,
            as_of=AS_OF,
            tryton=self.client if tryton else None,
            erp_by_entity={"EU01": "tryton"},
        )

    async def query(
        self, query: str, principal: Principal = ADMIN, *, tryton: bool = True, **variables: Any
    ) -> dict[str, Any]:
        answer = await build_schema().execute(
            query, variable_values=variables, context_value=self.context(principal, tryton=tryton)
        )
        assert answer.errors is None, answer.errors
        assert answer.data is not None
        return answer.data


@pytest.fixture
async def booked(flow: Flow, tryton: Server) -> AsyncIterator[Booked]:
    client = use_tryton(flow, tryton)
    tm = await win_and_provision(flow, TM, "c-lists")
    fixed = await win_and_provision(flow, FIXED_FEE, "c-lists")
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
    yield Booked(
        flow,
        client,
        tm,
        fixed,
        invoice,
        (2 * row["list_price"]).quantize(Decimal("0.01")),
        Decimal(str(entry["billable_rate"])) * 2,
        account_id,
    )
    await client.aclose()


async def _all_pages(b: Booked, query: str, field: str, first: int, **variables: Any) -> list[Any]:
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


@pytest.mark.parametrize("first", [7, 11, 100])  # a page mixing both ERPs, one ending inside Tryton's rows
async def test_projects_list_tryton_projects_after_netsuite_ones_with_their_financials(
    booked: Booked, first: int
) -> None:
    b = booked
    edges = await _all_pages(b, PROJECTS, "projects", first, filter={"legalEntity": "EU01"})
    nodes = [e["node"] for e in edges]
    tryton = [n for n in nodes if str(n["erpId"]).startswith("tryton:")]
    netsuite = [n for n in nodes if str(n["erpId"]).isdigit()]

    assert len(netsuite) >= 1 and len(tryton) == 2 and len(nodes) == len(netsuite) + len(tryton)
    assert nodes[-2:] == tryton  # after every NetSuite row, in Tryton id order
    assert {n["legalEntity"] for n in nodes} == {"EU01"}
    tm, fixed = tryton
    assert tm["id"] == provisioned_project_canonical_id(TM)
    assert (tm["code"], tm["erpId"]) == (b.tm.project_code, f"tryton:{b.tm.erp_job_id}")
    assert tm["billingMethod"] == "TIME_AND_MATERIALS" and tm["account"] == {"id": b.account_id}
    money = {"amount": str(b.invoice_total), "currency": "EUR"}
    assert tm["financials"]["billed"] == money
    value = Decimal(str(b.tm.value)).quantize(Decimal("0.01"))  # the deal's, as Tryton's planned effort
    assert tm["financials"]["budgetAmount"] == {"amount": str(value), "currency": "EUR"}
    assert tm["financials"]["backlog"] == {"amount": str(value - b.invoice_total)}
    assert tm["invoices"] == [
        {"id": f"tryton:{b.invoice_id}", "number": "INV/2026/1", "status": "OPEN", "total": money}
    ]
    assert (fixed["code"], fixed["billingMethod"]) == (b.fixed.project_code, "FIXED_FEE")
    budget = fixed["financials"]["budgetAmount"]
    assert budget["currency"] == "EUR" and abs(Decimal(budget["amount"]) - Decimal(str(b.fixed.value))) < 1
    assert fixed["financials"]["billed"]["amount"] == "0.00" and fixed["invoices"] == []
    assert fixed["financials"]["backlog"]["amount"] == budget["amount"]

    everything = await b.query(PROJECTS, first=100)
    assert everything["projects"]["totalCount"] > len(nodes)  # other entities' NetSuite jobs too
    one = await b.query(
        "query($id: ID!) { project(id: $id) { id erpId financials { billed { amount } } } }", id=tm["id"]
    )
    assert one["project"] == {
        "id": tm["id"],
        "erpId": tm["erpId"],
        "financials": {"billed": {"amount": str(b.invoice_total)}},
    }


async def test_a_list_level_costs_one_tryton_read_per_list(booked: Booked) -> None:
    calls = booked.client.calls
    await booked.query(PROJECTS, first=100, filter={"legalEntity": "EU01"})
    assert booked.client.calls == calls + 2  # the project list, the invoice list (financials, invoices)


async def test_a_list_of_netsuite_rows_only_reads_nothing_from_tryton(booked: Booked) -> None:
    b = booked
    calls = b.client.calls

    projects = await b.query(PROJECTS, first=100, filter={"legalEntity": "US01"})
    invoices = await b.query(INVOICES, first=100, filter={"legalEntity": "US01"})
    portfolio = await b.query(PORTFOLIO, filter={"legalEntity": "US01"})

    assert b.client.calls == calls
    assert projects["projects"]["totalCount"] == len(projects["projects"]["edges"]) > 0
    assert all(str(e["node"]["erpId"]).isdigit() for e in projects["projects"]["edges"])
    assert invoices["invoices"]["totalCount"] == len(invoices["invoices"]["edges"]) > 0
    assert all(str(e["node"]["erpId"]).isdigit() for e in invoices["invoices"]["edges"])
    assert portfolio["portfolio"] and {r["legalEntity"] for r in portfolio["portfolio"]} == {"US01"}


@pytest.mark.parametrize("first", [2, 5])
async def test_invoices_list_the_tryton_invoice_with_amount_currency_and_status(
    booked: Booked, first: int
) -> None:
    b = booked
    edges = await _all_pages(b, INVOICES, "invoices", first, filter={"legalEntity": "EU01"})
    mine = [e["node"] for e in edges if e["node"]["id"].startswith("tryton:")]
    assert edges[-1]["node"] in mine and len(edges) > len(mine)  # NetSuite's EU01 invoices come first
    assert mine == [
        {
            "id": f"tryton:{b.invoice_id}",
            "number": "INV/2026/1",
            "status": "OPEN",
            "erpId": f"tryton:{b.invoice_id}",
            "legalEntity": "EU01",
            "projectId": provisioned_project_canonical_id(TM),
            "accountId": b.account_id,
            "payments": [],
            "total": {"amount": str(b.invoice_total), "currency": "EUR"},
            "amountRemaining": {"amount": str(b.invoice_total)},
        }
    ]
    by_project = await b.query(INVOICES, first=10, filter={"projectId": provisioned_project_canonical_id(TM)})
    assert [e["node"]["id"] for e in by_project["invoices"]["edges"]] == [f"tryton:{b.invoice_id}"]
    assert by_project["invoices"]["totalCount"] == 1
    paid = await b.query(INVOICES, first=100, filter={"legalEntity": "EU01", "status": "PAID"})
    assert all(not e["node"]["id"].startswith("tryton:") for e in paid["invoices"]["edges"])

    account = await b.query(
        "query($id: ID!) { account(id: $id) { projects { id }"
        " invoices { id status total { amount currency } } } }",
        id=b.account_id,
    )
    assert {"id": provisioned_project_canonical_id(TM)} in account["account"]["projects"]
    assert {
        "id": f"tryton:{b.invoice_id}",
        "status": "OPEN",
        "total": {"amount": str(b.invoice_total), "currency": "EUR"},
    } in account["account"]["invoices"]


async def test_portfolio_rows_of_a_netsuite_entity_and_of_the_tryton_one(booked: Booked) -> None:
    b = booked
    rows = (await b.query(PORTFOLIO))["portfolio"]
    without = (await b.query(PORTFOLIO, tryton=False))["portfolio"]

    assert {r["legalEntity"] for r in rows} >= {"US01", "EU01"}
    assert [r for r in rows if r["legalEntity"] != "EU01"] == [
        r for r in without if r["legalEntity"] != "EU01"
    ]
    # Tryton projects keep their deal's business line (a tag in the work's comment): no row without one
    assert all(r["businessLine"] for r in rows)
    month = AS_OF.strftime("%Y-%m")
    figures = "financials { budgetAmount { amount } backlog { amount } }"
    tryton = [
        (await b.query(f"query($id: ID!) {{ project(id: $id) {{ businessLine {figures} }} }}", id=pid))[
            "project"
        ]
        for pid in (provisioned_project_canonical_id(FIXED_FEE), provisioned_project_canonical_id(TM))
    ]

    def added(field: str, line: str | None = None, only_month: str | None = None) -> Decimal:
        """What Tryton's projects add to EU01's rows: with them minus without them."""

        def total(rs: list[dict[str, Any]]) -> Decimal:
            return sum(
                (
                    Decimal(r[field]["amount"])
                    for r in rs
                    if r["legalEntity"] == "EU01"
                    and (line is None or r["businessLine"] == line)
                    and (only_month is None or r["month"] == only_month)
                ),
                Decimal(0),
            )

        return total(rows) - total(without)

    for project in tryton:
        assert project["businessLine"]
    backlog = sum((Decimal(p["financials"]["backlog"]["amount"]) for p in tryton), Decimal(0))
    assert added("backlog", only_month=month) == backlog and added("backlog") == backlog
    by_line: dict[str, Decimal] = {}
    for p in tryton:
        line = p["businessLine"]
        by_line[line] = by_line.get(line, Decimal(0)) + Decimal(p["financials"]["backlog"]["amount"])
    for line, amount in by_line.items():  # each lands in its own business line's row of the month
        assert added("backlog", line=line, only_month=month) == amount
    assert added("revenue") == b.revenue > 0


async def test_a_principal_of_us01_sees_no_tryton_row(booked: Booked) -> None:
    b = booked
    calls = b.client.calls
    projects = await b.query(PROJECTS, US_ONLY, first=100)
    invoices = await b.query(INVOICES, US_ONLY, first=100)
    portfolio = await b.query(PORTFOLIO, US_ONLY)
    project = await b.query(
        "query($id: ID!) { project(id: $id) { id } }", US_ONLY, id=provisioned_project_canonical_id(TM)
    )

    assert b.client.calls == calls  # not even read
    assert projects["projects"]["edges"] and invoices["invoices"]["edges"]
    assert {e["node"]["legalEntity"] for e in projects["projects"]["edges"]} == {"US01"}
    assert {e["node"]["legalEntity"] for e in invoices["invoices"]["edges"]} == {"US01"}
    assert {r["legalEntity"] for r in portfolio["portfolio"]} == {"US01"}
    assert project["project"] is None


ENTITIES = """query($r: [_Any!]!) { _entities(representations: $r) {
  ... on Invoice { id number erpId total { amount currency } } ... on Project { id erpId } } }"""


async def test_a_supergraph_resolves_tryton_invoices_and_projects_by_key(booked: Booked) -> None:
    b = booked
    project_id = provisioned_project_canonical_id(TM)
    reps = [
        {"__typename": "Invoice", "id": f"tryton:{b.invoice_id}"},
        {"__typename": "Project", "id": project_id},
        {"__typename": "Invoice", "id": "tryton:999999"},  # no such invoice in Tryton
    ]
    found = (await b.query(ENTITIES, r=[dict(r) for r in reps]))["_entities"]  # strawberry pops keys
    assert found == [
        {
            "id": f"tryton:{b.invoice_id}",
            "number": "INV/2026/1",
            "erpId": f"tryton:{b.invoice_id}",
            "total": {"amount": str(b.invoice_total), "currency": "EUR"},
        },
        {"id": project_id, "erpId": f"tryton:{b.tm.erp_job_id}"},
        None,
    ]

    calls = b.client.calls
    hidden = (await b.query(ENTITIES, US_ONLY, r=[dict(r) for r in reps]))["_entities"]
    assert hidden == [None, None, None] and b.client.calls == calls  # another entity's: not even read


async def test_a_bad_cursor_is_refused_with_a_code(booked: Booked) -> None:
    bad = base64.urlsafe_b64encode(b"p2c:t:x").decode()
    answer = await build_schema().execute(
        "query($after: String) { projects(first: 5, after: $after) { totalCount } }",
        variable_values={"after": bad},
        context_value=booked.context(),
    )
    assert answer.errors is not None
    assert answer.errors[0].extensions is not None
    assert answer.errors[0].extensions["code"] == "VALIDATION_FAILED"


async def test_an_invoice_renamed_by_hand_still_finds_its_project_through_its_timesheet_lines(
    booked: Booked,
) -> None:
    b, client = booked, booked.client
    project = int(str(b.tm.erp_job_id))
    (row,) = await client.read("project.work", [project], ["timesheet_works", "timesheet_start_date"])
    employee = next(iter((await client.employees()).values()))
    await client.create(
        "timesheet.line",
        [
            {
                "work": row["timesheet_works"][0],
                "employee": employee,
                "date": row["timesheet_start_date"],
                "duration": timedelta(hours=1),
            }
        ],
    )
    await client.button("project.work", "invoice", [project])
    (draft,) = await client.search_read("account.invoice", [["state", "=", "draft"]], ["id"])
    await client.write(
        "account.invoice", [draft["id"]], {"invoice_date": date(2026, 12, 2), "description": "December"}
    )
    await client.button("account.invoice", "post", [draft["id"]])
    calls = client.calls

    found = await b.query(PROJECTS, first=100, filter={"legalEntity": "EU01"})

    tm = next(e["node"] for e in found["projects"]["edges"] if e["node"]["code"] == b.tm.project_code)
    assert [i["id"] for i in tm["invoices"]] == [f"tryton:{b.invoice_id}", f"tryton:{draft['id']}"]
    assert Decimal(tm["financials"]["billed"]["amount"]) == b.invoice_total * 3 / 2
    assert client.calls == calls + 3  # projects, invoices, and the timesheet lines of the renamed one


def test_an_invoice_made_by_effort_or_progress_names_its_project_by_the_works_it_invoiced() -> None:
    a, b = (Project(id=i, name=i, account_id="acct", code=f"P2C-{i}") for i in ("AAAA0001", "BBBB0002"))
    by_code, by_work = {"P2C-AAAA0001": a, "P2C-BBBB0002": b}, {5: a, 9: b}
    effort = {"description": "Renamed", "lines.": [{"project_invoice_works.": [{"path": "9/"}]}]}
    progress = {"lines.": [{"project_invoice_progresses.": [{"work.": {"path": "5/6/"}}]}]}

    assert invoice_project({"description": "P2C-AAAA0001 Rollout"}, by_code, by_work) is a
    assert invoice_project(effort, by_code, by_work) is b
    assert invoice_project(progress, by_code, by_work) is a
    assert invoice_project({"description": "December", "lines.": []}, by_code, by_work) is None
