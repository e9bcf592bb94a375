"""The graph over a legal entity booked in Tryton (EU01): the same queries as for NetSuite, the rows from
Tryton — the project and invoice lists, a project's financials, the portfolio, federation lookups — and
none of them for a caller who may not see EU01.

These tests only read, so the booking (two deals provisioned, time logged, an invoice posted: seconds of
flows) is made once per store backend for the whole module, on the module's event loop. Tests that
write are in ``test_tryton_graph_writes.py``.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio

from mutations.identity import provisioned_project_canonical_id
from mutations.provisioning.plan import milestone_id, task_id
from resolvers.schema import build_schema
from store.db import make_engine, make_sessionmaker
from subgraphs.demo import Firm
from tests.mutations.conftest import build_apps, close_flow, make_flow
from tests.mutations.tryton_flow import use_tryton
from tests.mutations.tryton_graph_support import (
    AS_OF,
    FIXED_FEE,
    INVOICES,
    MILESTONE,
    PORTFOLIO,
    PROJECTS,
    TM,
    US_ONLY,
    Booked,
    all_pages,
    book,
)
from tests.subgraphs.erp_tryton.tryton_support import Server

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def booked(module_database_url: str, flow_firm: Firm, tryton: Server) -> AsyncIterator[Booked]:
    engine = make_engine(module_database_url)
    flow = await make_flow(build_apps(), flow_firm, make_sessionmaker(engine))
    client = use_tryton(flow, tryton)
    try:
        yield await book(flow, client)
    finally:
        await client.aclose()
        await close_flow(flow)
        await engine.dispose()


@pytest.mark.parametrize("first", [7, 11, 100])  # a page mixing both ERPs, one ending inside Tryton's rows
async def test_projects_list_tryton_projects_after_netsuite_ones_with_their_financials(
    booked: Booked, first: int
) -> None:
    b = booked
    edges = await all_pages(b, PROJECTS, "projects", first, filter={"legalEntity": "EU01"})
    nodes = [e["node"] for e in edges]
    tryton = [n for n in nodes if str(n["erpId"]).startswith("tryton:")]
    netsuite = [n for n in nodes if str(n["erpId"]).isdigit()]

    assert len(netsuite) >= 1 and len(tryton) == 3 and len(nodes) == len(netsuite) + len(tryton)
    assert nodes[-3:] == tryton  # after every NetSuite row, in Tryton id order
    assert {n["legalEntity"] for n in nodes} == {"EU01"}
    tm, fixed, milestone = tryton
    assert (milestone["code"], milestone["billingMethod"]) == (b.milestone.project_code, "MILESTONE")
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
    edges = await all_pages(b, INVOICES, "invoices", first, filter={"legalEntity": "EU01"})
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
        for pid in map(provisioned_project_canonical_id, (FIXED_FEE, TM, MILESTONE))
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


TASKS = """query($id: ID!) { project(id: $id) { billingMethod
  tasks { id name status erpId } milestones { id name status erpId amount { amount currency } } } }"""


async def test_a_tryton_project_lists_its_tasks_and_milestones_under_their_canonical_ids(
    booked: Booked,
) -> None:
    b = booked
    projects = {
        opp: (await b.query(TASKS, id=provisioned_project_canonical_id(opp)))["project"]
        for opp in (TM, MILESTONE)
    }
    works = {
        opp: await b.client.search_read(
            "project.work", [["parent", "=", int(str(result.erp_job_id))]], ["name"]
        )
        for opp, result in ((TM, b.tm), (MILESTONE, b.milestone))
    }

    tm = projects[TM]
    assert tm["milestones"] == [] and tm["tasks"] == [
        {"id": task_id(TM, w["name"]), "name": w["name"], "status": "OPEN", "erpId": f"tryton:{w['id']}"}
        for w in works[TM]
    ]
    deal = projects[MILESTONE]
    assert deal["billingMethod"] == "MILESTONE" and deal["milestones"]
    ids = {m["id"] for m in deal["milestones"]} | {t["id"] for t in deal["tasks"]}
    assert len(ids) == len(works[MILESTONE])  # every child work once, as a task or a milestone
    for m in deal["milestones"]:
        assert m["id"] == milestone_id(MILESTONE, m["name"]) and m["status"] == "PLANNED"
        assert m["amount"]["currency"] == "EUR" and Decimal(m["amount"]["amount"]) > 0
    assert all(t["id"] == task_id(MILESTONE, t["name"]) for t in deal["tasks"])
    total = sum((Decimal(m["amount"]["amount"]) for m in deal["milestones"]), Decimal(0))
    assert abs(total - Decimal(str(b.milestone.value))) <= Decimal("0.01") * len(deal["milestones"])
