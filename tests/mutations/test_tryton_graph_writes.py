"""The graph over a Tryton entity where the test writes first: account health from Tryton's receivables,
and an invoice renamed by hand in Tryton still found under its project."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, timedelta
from decimal import Decimal

import pytest

from canonical.entities import Project
from mutations.identity import account_canonical_id, provisioned_project_canonical_id
from resolvers.schema import build_schema
from store.repositories import CrossReferenceRepo
from subgraphs.erp_tryton.mapping import invoice_project
from tests.mutations.conftest import Flow
from tests.mutations.tryton_flow import credit_with_refund, log_and_invoice, use_tryton, win_and_provision
from tests.mutations.tryton_graph_support import PROJECTS, TM, Booked, book, graph_context
from tests.subgraphs.erp_tryton.tryton_support import Server

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

        context = graph_context(flow, client)
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


@pytest.fixture
async def booked(flow: Flow, tryton: Server) -> AsyncIterator[Booked]:
    client = use_tryton(flow, tryton)
    yield await book(flow, client)
    await client.aclose()


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


# one root field per query: the PostgreSQL test store is one connection (savepoints), not for parallel roots
CREDITED_PROJECT = """query($id: ID!) { project(id: $id) { financials { billed { amount } backlog { amount } }
  invoices { id number status total { amount } amountPaid { amount } amountRemaining { amount }
    creditMemos { id } } } }"""
CREDITED_ACCOUNT = """query($id: ID!) { account(id: $id) {
  health { billedToDate { amount } openReceivables { amount } paidToDate { amount } } } }"""
CREDITED_LIST = """{ invoices(first: 100, filter: {legalEntity: "EU01"}) {
  edges { node { id number status total { amount } } } } }"""


async def test_an_invoice_credited_in_tryton_is_voided_and_its_credit_note_is_not_an_invoice(
    booked: Booked,
) -> None:
    b, client = booked, booked.client
    await credit_with_refund(client, b.invoice_id)
    project = (await b.query(CREDITED_PROJECT, id=provisioned_project_canonical_id(TM)))["project"]
    health = (await b.query(CREDITED_ACCOUNT, id=b.account_id))["account"]["health"]
    found = await b.query(CREDITED_LIST)
    assert project["invoices"] == [  # the credit note is the void's counter-move, not a negative invoice
        {
            "id": f"tryton:{b.invoice_id}",
            "number": "INV/2026/1",
            "status": "VOIDED",
            "total": {"amount": str(b.invoice_total)},
            "amountPaid": {"amount": "0.00"},
            "amountRemaining": {"amount": "0.00"},
            "creditMemos": [],
        }
    ]
    assert project["financials"]["billed"] == {"amount": "0.00"}
    assert health == {
        "billedToDate": {"amount": "0.00"},
        "openReceivables": {"amount": "0.00"},
        "paidToDate": {"amount": "0.00"},
    }
    listed = [e["node"] for e in found["invoices"]["edges"] if e["node"]["id"].startswith("tryton:")]
    assert listed == [
        {
            "id": f"tryton:{b.invoice_id}",
            "number": "INV/2026/1",
            "status": "VOIDED",
            "total": {"amount": str(b.invoice_total)},
        }
    ]
