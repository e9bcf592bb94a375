"""Approved PSA expenses → ERP expense reports (flow 3, the expense half), on SQLite and PostgreSQL.

The PSA sandbox has no expense-entry API (Harvest's ``POST /v2/expenses`` is not emulated), so a person
logging or editing an expense is a row written into the sandbox's own store, stamped by its clock exactly
as its writes are; approving goes through its admin API as in the time-posting tests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from gateway.worker import Worker, WorkerReport, default_handlers
from mutations.time_posting import POST_EXPENSE, ExpensePoller, PostingCaches
from store.repositories import ExceptionRepo
from subgraphs.demo import Project
from subgraphs.psa.mapping import version_of
from subgraphs.psa.sandbox.app import PsaSandbox
from tests.mutations.conftest import Flow
from tests.mutations.posting_support import Posting, link_projects


@dataclasses.dataclass
class Expenses:
    posting: Posting

    @property
    def sandbox(self) -> PsaSandbox:
        sandbox: PsaSandbox = self.posting.flow.apps["psa"].state.psa
        return sandbox

    def log(
        self, project: Project, total: str, *, on: date = date(2026, 11, 24), category: str = "Travel"
    ) -> int:
        """A person logs an expense (submitted, not yet approved) → its PSA id."""
        firm = self.posting.flow.firm
        conn, stamp = self.sandbox.conn, self.sandbox.clock.tick()
        new_id = int(conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM expenses").fetchone()[0])
        conn.execute(
            f"INSERT INTO expenses VALUES ({', '.join('?' * 19)})",
            (
                new_id,
                on.isoformat(),
                firm.employees[project.staff[0]].psa_user_id,
                firm.accounts[project.account_index].psa_client_id,
                project.psa_project_id,
                1,
                category,
                None,
                float(total),
                "expense posting test",
                1,
                "SUBMITTED",
                0,
                0,
                None,
                0,
                None,
                stamp,
                stamp,
            ),
        )
        return new_id

    def change(self, expense_id: int, **columns: Any) -> None:
        """Edit the expense's own columns (``total_cost``, ``spent_date`` ...); a new ``updated_at``."""
        assignments = ", ".join(f"{name} = ?" for name in columns)
        self.sandbox.conn.execute(
            f"UPDATE expenses SET {assignments}, updated_at = ? WHERE id = ?",
            [*columns.values(), self.sandbox.clock.tick(), expense_id],
        )

    async def approve(self, expense_id: int, action: str = "approve") -> None:
        await self.posting.admin("psa", "POST", f"/__sandbox/psa/expenses/{expense_id}/{action}")

    async def edit(self, expense_id: int, **columns: Any) -> None:
        """Reopen, edit, approve again: the way an approved expense is corrected in the PSA."""
        await self.approve(expense_id, "reopen")
        self.change(expense_id, **columns)
        await self.approve(expense_id)

    async def round(self, start: datetime) -> WorkerReport:
        deps = self.posting.deps
        poller = ExpensePoller(deps, start=start, lag=timedelta(0))
        handlers = default_handlers(deps, caches=self.posting.caches)
        return await Worker(deps.sessionmaker, handlers, pollers=[poller], batch=50, clock=deps.clock).drain()

    async def reports(self, expense_id: int) -> list[dict[str, Any]]:
        """The ERP expense reports carrying this expense's external ids (every version), oldest first."""
        rows = await self.posting.deps.erp.suiteql(
            "SELECT id, externalid FROM transaction "
            f"WHERE type = 'ExpRept' AND externalid LIKE 'psa:{expense_id}:v%' ORDER BY id"
        )
        return [dict(await self.posting.deps.erp.get("expenseReport", str(r["id"]))) for r in rows]

    async def approved_total(self, expense_ids: list[int]) -> Decimal:
        total = Decimal(0)
        for expense_id in expense_ids:
            for report in await self.reports(expense_id):
                if report.get("approvalStatus") == "approved":
                    total += Decimal(str(report["total"]))
        return total


@pytest.fixture(name="x")
async def expenses(flow: Flow) -> AsyncIterator[Expenses]:
    await link_projects(flow)
    posting = Posting(flow, PostingCaches(ttl_s=0))
    later = await posting.psa_now() + timedelta(hours=1)  # our clock ahead: the cursor never caps
    flow.deps = dataclasses.replace(flow.deps, clock=lambda: later)
    yield Expenses(posting)


async def open_exceptions(x: Expenses) -> list[tuple[str, str, str]]:
    async with x.posting.deps.sessionmaker() as session:
        found = await ExceptionRepo(session).list(flow=POST_EXPENSE)
        return [(e.reason_code, e.status, str((e.payload or {}).get("fix"))) for e in found]


async def test_an_approved_expense_posts_one_expense_report_keyed_by_id_and_version(x: Expenses) -> None:
    project = x.posting.project()
    start = await x.posting.psa_now()
    expense_id = x.log(project, "412.30")
    await x.approve(expense_id)
    version_stamp = (await x.posting.deps.psa.expense(expense_id))["updated_at"]

    report = await x.round(start)

    assert report.failed == 0 and report.by_kind == {POST_EXPENSE: 1}
    [posted] = await x.reports(expense_id)
    assert posted["externalId"] == f"psa:{expense_id}:v{version_of(str(version_stamp))}"
    assert posted["approvalStatus"] == "approved"
    assert Decimal(str(posted["total"])) == Decimal("412.30")
    assert str(posted["job"]["id"]) == str(project.erp_job_id)
    assert [item["category"] for item in posted["expense"]["items"]] == ["Travel"]
    assert str(posted["tranDate"]).startswith("2026-11-24")

    again = await x.round(start)  # the same window re-read: nothing new, nothing posted twice
    assert again.claimed == 0
    assert len(await x.reports(expense_id)) == 1


async def test_an_expense_not_approved_is_not_posted(x: Expenses) -> None:
    project = x.posting.project()
    start = await x.posting.psa_now()
    submitted = x.log(project, "55.00")
    rejected = x.log(project, "80.00")
    await x.approve(rejected, "reject")

    report = await x.round(start)

    assert report.claimed == 0
    assert await x.reports(submitted) == [] and await x.reports(rejected) == []
    assert await open_exceptions(x) == []


async def test_an_edit_after_posting_is_a_correction_and_totals_match_to_the_cent(x: Expenses) -> None:
    project = x.posting.project()
    start = await x.posting.psa_now()
    ids = [x.log(project, total) for total in ("100.10", "250.25", "19.99")]
    for expense_id in ids:
        await x.approve(expense_id)
    await x.round(start)
    assert await x.approved_total(ids) == Decimal("370.34")

    await x.edit(ids[1], total_cost=260.75)  # corrected amount
    await x.approve(ids[2], "reopen")  # unapproved: reversed
    report = await x.round(start)

    assert report.failed == 0
    edited = await x.reports(ids[1])
    assert [r["approvalStatus"] for r in edited] == ["rejected", "approved"]
    assert "REVERSED" in str(edited[0]["memo"]) and "superseded" in str(edited[0]["memo"])
    assert Decimal(str(edited[0]["total"])) == Decimal("250.25")  # the old version stays, visible
    assert Decimal(str(edited[1]["total"])) == Decimal("260.75")
    assert edited[0]["externalId"] != edited[1]["externalId"]
    assert [r["approvalStatus"] for r in await x.reports(ids[2])] == ["rejected"]
    assert await x.approved_total(ids) == Decimal("100.10") + Decimal("260.75")  # ERP = PSA

    await x.edit(ids[0], notes="expense posting test")  # re-approved, same content: nothing to correct
    await x.round(start)
    assert [r["approvalStatus"] for r in await x.reports(ids[0])] == ["approved"]
    assert await x.approved_total(ids) == Decimal("360.85")


async def test_closed_period_policy_next_open_for_us01_exception_for_eu01(x: Expenses) -> None:
    """Sep 2026 is closed: US01 (NEXT_OPEN) posts to Oct 2026, EU01 (EXCEPTION) refuses with the fix."""
    start = await x.posting.psa_now()
    moved = x.log(x.posting.project(entity="US01"), "64.00", on=date(2026, 9, 15))
    refused = x.log(x.posting.project(entity="EU01"), "71.00", on=date(2026, 9, 15))
    for expense_id in (moved, refused):
        await x.approve(expense_id)

    report = await x.round(start)

    assert report.failed == 1
    [posted] = await x.reports(moved)
    assert str(posted["tranDate"]).startswith("2026-10-01")
    assert "posted to Oct 2026" in str(posted["memo"])
    assert await x.reports(refused) == []
    [(reason, status, fix)] = await open_exceptions(x)
    assert (reason, status) == ("PERIOD_CLOSED", "OPEN")
    assert "reopen period Sep 2026" in fix and "EU01" in fix
