"""Expenses and master-data validation for the legal entity booked in Tryton (EU01), against a real trytond.

Expenses: Tryton as installed has no expense reports, so an approved expense of a Tryton project is an
exception ``EXPENSE_UNSUPPORTED`` with a fix finance can act on — never posted, never dropped, once per
version, and a replay does not post it either. Validation: a Tryton entity's deal is checked against
Tryton's master data (products, employees, payment terms, the company), with NetSuite's codes, and a deal
refused there leaves nothing in Tryton, the PSA or the CRM.
"""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta
from typing import Any

import pytest

from canonical.errors import ValidationFailed
from gateway.worker import Worker, WorkerReport, default_handlers
from mutations.identity import account_canonical_id, provisioned_project_canonical_id
from mutations.posting.model import EXPENSE, TIME, PostItem
from mutations.posting.post import post_items
from mutations.provision import provision_engagement
from mutations.provisioning.options import provisioning_options
from mutations.provisioning.plan import EngagementInput, Overrides
from mutations.replay import replay_exception
from mutations.time_posting import POST_EXPENSE, ExpensePoller, PostingCaches, TimeEntryPoller
from store.repositories import ExceptionRepo, RunRepo
from store.repositories.postings import PostingRepo
from subgraphs.erp_tryton.client import TrytonClient
from subgraphs.erp_tryton.mapping import reference_domain
from subgraphs.psa.mapping import version_of
from subgraphs.psa.sandbox.app import PsaSandbox
from tests.mutations.conftest import ADMIN, Flow
from tests.mutations.posting_support import Posting
from tests.mutations.tryton_flow import tryton_of
from tests.subgraphs.erp_tryton.tryton_support import Server

TM = "006000000000032AAA"  # account 10, EU01, Consulting, T&M
US01_TM = "006000000000002AAA"
FIXED_FEE = "006000000000059AAA"  # account 19, EU01, Managed Services


# --- expenses ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Expenses:
    posting: Posting
    psa_project_id: int
    psa_client_id: int
    psa_user_id: int
    project_id: int  # Tryton

    @property
    def sandbox(self) -> PsaSandbox:
        sandbox: PsaSandbox = self.posting.flow.apps["psa"].state.psa
        return sandbox

    def log(self, total: str, *, on: date = date(2026, 11, 24), new_id: int | None = None) -> int:
        """A person logs an expense on the Tryton project (submitted, not yet approved) → its PSA id."""
        conn, stamp = self.sandbox.conn, self.sandbox.clock.tick()
        if new_id is None:
            new_id = int(conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM expenses").fetchone()[0])
        assert conn.execute("SELECT COUNT(*) FROM expenses WHERE id = ?", (new_id,)).fetchone()[0] == 0
        row = (
            new_id, on.isoformat(), self.psa_user_id, self.psa_client_id, self.psa_project_id, 1, "Travel",
            None, float(total), "tryton expense test", 1, "SUBMITTED", 0, 0, None, 0, None, stamp, stamp,
        )  # fmt: skip
        conn.execute(f"INSERT INTO expenses VALUES ({', '.join('?' * len(row))})", row)
        return new_id

    async def approve(self, expense_id: int) -> None:
        await self.posting.admin("psa", "POST", f"/__sandbox/psa/expenses/{expense_id}/approve")

    async def round(self, start: Any) -> WorkerReport:
        deps = self.posting.deps
        pollers = [ExpensePoller(deps, start=start, lag=timedelta(0)), TimeEntryPoller(deps, start=start)]
        handlers = default_handlers(deps, caches=self.posting.caches)
        return await Worker(deps.sessionmaker, handlers, pollers=pollers, batch=50, clock=deps.clock).drain()

    async def exceptions(self, expense_id: int) -> list[Any]:
        async with self.posting.deps.sessionmaker() as session:
            found = await ExceptionRepo(session).list(flow=POST_EXPENSE)
        return [e for e in found if e.subject == f"psa:expense:{expense_id}"]


@pytest.fixture
async def x(on_tryton: Flow) -> Expenses:
    flow = on_tryton
    await flow.deps.crm.update("Opportunity", TM, {"StageName": "Closed Won"})
    result = await provision_engagement(flow.deps, TM, principal=ADMIN, correlation_id="c-expense")
    assert result.status == "PROVISIONED", result
    posting = Posting(flow, PostingCaches(ttl_s=0))
    later = await posting.psa_now() + timedelta(hours=1)
    flow.deps = dataclasses.replace(flow.deps, clock=lambda: later)
    psa = await flow.deps.psa.project(int(str(result.psa_project_id)))
    person = next(e for e in flow.firm.employees if e.legal_entity == "EU01")
    return Expenses(
        posting, int(psa["id"]), int(psa["client"]["id"]), person.psa_user_id, int(str(result.erp_job_id))
    )


async def test_an_approved_expense_of_a_tryton_project_is_an_exception_finance_can_act_on(
    x: Expenses,
) -> None:
    client = tryton_of(x.posting.flow)
    invoices = await client.search_read("account.invoice", [], ["id"])
    start = await x.posting.psa_now()
    expense_id = x.log("412.30")
    await x.approve(expense_id)
    version = version_of(str((await x.posting.deps.psa.expense(expense_id))["updated_at"]))
    await x.posting.flow.reset_counters()

    report = await x.round(start)

    assert report.claimed == 1 and report.failed == 1
    [exception] = await x.exceptions(expense_id)
    assert (exception.reason_code, exception.status, exception.legal_entity) == (
        "EXPENSE_UNSUPPORTED", "OPEN", "EU01",
    )  # fmt: skip
    fix = str((exception.payload or {}).get("fix"))
    assert "EU01 books in Tryton" in fix and "412.30" in fix and "Book it in Tryton by hand" in fix
    assert "resolve this exception" in fix
    async with x.posting.deps.sessionmaker() as session:
        step = await RunRepo(session).get_step(f"tryton:expense:{expense_id}:v{version}")
        head = (await PostingRepo(session).heads([f"psa:expense:{expense_id}:head"])).get(
            f"psa:expense:{expense_id}:head"
        )
    assert step.status == "FAILED"
    assert head is None or head.get("live") is None  # never marked posted
    assert await x.posting.flow.writes() == {}  # nothing to NetSuite (no expense report), nothing written
    assert await client.search_read("account.invoice", [], ["id"]) == invoices  # nor in Tryton

    again = await x.round(start)  # the same window again: queued once, one exception
    assert again.claimed == 0
    assert len(await x.exceptions(expense_id)) == 1

    replayed = await replay_exception(x.posting.deps, exception.id, principal=ADMIN)
    assert replayed.exception.status == "OPEN"  # a replay cannot post it either, and says so again
    [still] = await x.exceptions(expense_id)
    assert still.id == exception.id and still.reason_code == "EXPENSE_UNSUPPORTED"
    assert await client.search_read("account.invoice", [], ["id"]) == invoices


async def test_time_and_expense_with_the_same_psa_id_are_routed_apart(x: Expenses) -> None:
    """A time entry and an expense may share an id in the PSA; in one batch (a replay, a direct call: the
    worker batches by kind) neither may shadow the other."""
    assignment = (await x.posting.deps.psa.task_assignments(x.psa_project_id))[0]
    client = tryton_of(x.posting.flow)
    (project,) = await client.read("project.work", [x.project_id], ["timesheet_start_date"])
    entry = await x.posting.deps.psa.create_time_entry(
        {
            "project_id": x.psa_project_id,
            "task_id": assignment["task"]["id"],
            "user_id": x.psa_user_id,
            "spent_date": (project["timesheet_start_date"] + timedelta(days=1)).isoformat(),
            "hours": 1.5,
            "notes": "same id as an expense",
        }
    )
    expense_id = x.log("20.00", new_id=int(entry["id"]))
    await x.posting.approve(int(entry["id"]))
    await x.approve(expense_id)
    psa = x.posting.deps.psa
    time_entry, expense = await psa.time_entry(expense_id), await psa.expense(expense_id)
    items = [
        PostItem(spec, record, version_of(str(record["updated_at"])))
        for spec, record in ((TIME, time_entry), (EXPENSE, expense))
    ]

    report = await post_items(x.posting.deps, items, caches=x.posting.caches)

    assert [report.outcomes[i].status for i in items] == ["POSTED", "FAILED"]
    lines = await client.search_read(
        "timesheet.line", [["description", "like", f"psa:{entry['id']}:v%"]], ["description"]
    )
    assert len(lines) == 1  # the time entry posted
    assert [e.reason_code for e in await x.exceptions(expense_id)] == ["EXPENSE_UNSUPPORTED"]


# --- master-data validation -------------------------------------------------------------------------------


async def _nothing_written(client: TrytonClient, flow: Flow, opportunity: str, account_crm_id: str) -> None:
    account_id = account_canonical_id(account_crm_id)
    assert await client.search_read("party.party", [["code", "=", account_id]], ["id"]) == []
    project = provisioned_project_canonical_id(opportunity)
    assert await client.search_read("project.work", [reference_domain(project)], ["id"]) == []
    assert await flow.writes() == {}  # nor in the CRM, the PSA or NetSuite


async def _refused(flow: Flow, opportunity: str, input: EngagementInput | None = None) -> ValidationFailed:
    await flow.deps.crm.update("Opportunity", opportunity, {"StageName": "Closed Won"})
    await flow.reset_counters()
    with pytest.raises(ValidationFailed) as info:
        await provision_engagement(flow.deps, opportunity, input, principal=ADMIN, correlation_id="c-v")
    return info.value


async def test_a_product_archived_in_tryton_is_invalid_and_nothing_is_written(on_tryton: Flow) -> None:
    flow, client = on_tryton, tryton_of(on_tryton)
    [line] = [ln for ln in await flow.deps.crm.lines_for_opportunities([TM])][:1]
    code = str(line["ProductCode"])
    products = await client.search_read("product.product", [["code", "=", code]], ["id"])
    assert products
    await client.write("product.product", [int(p["id"]) for p in products], {"active": False})
    client.invalidate()

    error = await _refused(flow, TM)

    problems = {(p.field, p.reason) for p in error.problems}
    assert ("opportunity.lines[0].ProductCode", "INVALID") in problems, error.problems
    assert all(reason == "INVALID" for _field, reason in problems)
    assert error.extensions["reasonCode"] == "VALIDATION_FAILED"
    await _nothing_written(client, flow, TM, flow.firm.accounts[10].crm_id)
    async with flow.deps.sessionmaker() as session:
        exception = await ExceptionRepo(session).get(str(error.extensions["exceptionId"]))
    assert exception.reason_code == "VALIDATION_FAILED" and exception.legal_entity == "EU01"


async def test_employees_and_terms_are_tryton_s_not_netsuite_s(on_tryton: Flow) -> None:
    flow, client = on_tryton, tryton_of(on_tryton)
    reference_data = await flow.deps.erp.reference_data()
    netsuite_employee = next(iter(reference_data.employees))  # an id NetSuite knows, Tryton does not
    person = next(e for e in flow.firm.employees if e.legal_entity == "EU01")
    assert person.email.lower() in await client.employees()

    error = await _refused(
        flow,
        TM,
        EngagementInput(project_manager=netsuite_employee, overrides=Overrides(payment_terms="NET45")),
    )

    problems = {p.field: p.reason for p in error.problems}
    assert problems == {"input.project_manager": "INVALID", "input.overrides.payment_terms": "INVALID"}
    await _nothing_written(client, flow, TM, flow.firm.accounts[10].crm_id)

    # The same NetSuite employee id is fine for a NetSuite entity: the ERP of the entity is asked.
    await flow.deps.crm.update("Opportunity", US01_TM, {"StageName": "Closed Won"})
    us01 = await provision_engagement(
        flow.deps, US01_TM, EngagementInput(project_manager=netsuite_employee), principal=ADMIN
    )
    assert us01.status == "PROVISIONED"

    # The form offers EU01's managers by their Tryton employee id; one of them and Tryton's own terms pass.
    options = await provisioning_options(flow.deps, TM)
    in_tryton = await client.employees()
    assert options.project_managers
    assert {p.erp_employee_id for p in options.project_managers} <= {str(i) for i in in_tryton.values()}
    manager = next(p for p in options.project_managers if p.email and p.email.lower() == person.email.lower())
    result = await provision_engagement(
        flow.deps, TM, EngagementInput(project_manager=manager.erp_employee_id), principal=ADMIN
    )
    assert result.status == "PROVISIONED"
    also = await _refused(flow, FIXED_FEE, EngagementInput(project_manager="nobody@example.com"))
    assert {p.field for p in also.problems} == {"input.project_manager"}
    by_email = await provision_engagement(
        flow.deps, FIXED_FEE, EngagementInput(project_manager=person.email), principal=ADMIN
    )
    assert by_email.status == "PROVISIONED"  # an e-mail names a Tryton employee too


async def test_a_company_missing_in_tryton_is_invalid_on_the_legal_entity(
    on_tryton: Flow, tryton: Server
) -> None:
    flow, client = on_tryton, tryton_of(on_tryton)
    missing = tryton.client(company=999)
    flow.deps = dataclasses.replace(flow.deps, tryton=missing)
    try:
        error = await _refused(flow, TM)
    finally:
        await missing.aclose()
    problems = {p.field: p.reason for p in error.problems}
    assert problems.get("account.Legal_Entity__c") == "INVALID", error.problems
    assert "does not exist in Tryton" in str(error)
    await _nothing_written(client, flow, TM, flow.firm.accounts[10].crm_id)
