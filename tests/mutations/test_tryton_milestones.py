"""Delivery milestones of a project booked in Tryton (EU01): PSA sandbox, worker rounds, a real trytond.

Same assertions as the NetSuite scenario 16b where they apply: a milestone marked complete twice queues and
releases once; here the release is its task done in Tryton, and Tryton's own project invoicing then bills
the milestone's amount once however often it is run. A closed Tryton project refuses with
``PROJECT_CLOSED`` and is left as it was — as a closed NetSuite job now does.

Provisioning makes no PSA milestones (the PSA sandbox has no API for them), so a project manager adding
one is a row written into the sandbox's store, stamped by its clock, as the expense tests do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from mutations.identity import provisioned_project_canonical_id
from mutations.time_posting import RELEASE_MILESTONE, MilestonePoller, release_milestone
from store.models import WorkItem
from store.repositories import ExceptionRepo, RunRepo
from subgraphs.erp_tryton.client import TrytonClient
from subgraphs.erp_tryton.errors import TrytonRejected
from subgraphs.erp_tryton.wire import hours
from subgraphs.psa.sandbox.app import PsaSandbox
from tests.mutations.conftest import Flow
from tests.mutations.posting_support import Posting
from tests.mutations.tryton_flow import provisioned_for_posting, use_tryton
from tests.mutations.tryton_graph_support import graph_query
from tests.subgraphs.erp_tryton.tryton_support import Server

MILESTONE = "006000000000033AAA"  # account 10, EU01, billed by milestone → a progress project in Tryton


@dataclasses.dataclass
class Milestones:
    posting: Posting
    client: TrytonClient
    project_id: int  # Tryton
    psa_project_id: int
    tasks: dict[str, dict[str, Any]]  # the project's milestone tasks by name (effort × price = amount)

    @property
    def sandbox(self) -> PsaSandbox:
        sandbox: PsaSandbox = self.posting.flow.apps["psa"].state.psa
        return sandbox

    def add(self, name: str, amount: Decimal) -> int:
        """The project manager adds the milestone to the PSA project (not completed) → its PSA id."""
        conn, stamp = self.sandbox.conn, self.sandbox.clock.tick()
        new_id = int(conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM milestones").fetchone()[0])
        conn.execute(
            "INSERT INTO milestones VALUES (?, ?, ?, ?, ?, 0, NULL, ?, ?)",
            (new_id, self.psa_project_id, name, float(amount), "2026-12-15", stamp, stamp),
        )
        return new_id

    async def complete(self, milestone_id: int) -> None:
        await self.posting.admin("psa", "POST", f"/__sandbox/psa/milestones/{milestone_id}/complete")

    async def round(self) -> None:
        deps = self.posting.deps
        worker = self.posting.worker(start=await self.posting.psa_now())
        worker.pollers = [MilestonePoller(deps)]
        await worker.drain()

    async def task(self, name: str) -> dict[str, Any]:
        (row,) = await self.client.read(
            "project.work", [int(self.tasks[name]["id"])], ["progress", "status.name", "invoiced_progress"]
        )
        return row

    async def to_invoice(self) -> Decimal:
        (row,) = await self.client.read("project.work", [self.project_id], ["amount_to_invoice"])
        return Decimal(str(row["amount_to_invoice"] or 0)).quantize(Decimal("0.01"))

    async def invoiced(self, name: str) -> Decimal:
        """What Tryton has invoiced for the milestone's task: its invoice lines, all invoices."""
        lines = await self.client.search_read(
            "account.invoice.line", [["description", "=", name]], ["amount", "invoice.party"]
        )
        return sum((Decimal(str(ln["amount"])) for ln in lines), Decimal(0))


MILESTONES = "query($id: ID!) { project(id: $id) { milestones { name status } } }"


@pytest.fixture
async def m(flow: Flow, tryton: Server) -> AsyncIterator[Milestones]:
    client = use_tryton(flow, tryton)
    result, posting = await provisioned_for_posting(flow, MILESTONE, "c-milestone")
    (project,) = await client.read(
        "project.work",
        [int(str(result.erp_job_id))],
        ["project_invoice_method", "children.name", "children.effort_duration", "children.list_price"],
    )
    assert project["project_invoice_method"] == "progress"
    tasks = {str(c["name"]): c for c in project["children."] if c.get("effort_duration")}
    assert tasks, "provisioning made no milestone task"
    yield Milestones(posting, client, int(project["id"]), int(str(result.psa_project_id)), tasks)
    await client.aclose()


def amount_of(task: dict[str, Any]) -> Decimal:
    return (hours(task["effort_duration"]) * Decimal(str(task["list_price"]))).quantize(Decimal("0.01"))


async def test_a_milestone_completed_twice_is_released_once_and_billed_once(m: Milestones) -> None:
    name, other = sorted(m.tasks)[0], sorted(m.tasks)[-1]
    amount = amount_of(m.tasks[name])
    milestone = m.add(name, amount)
    await m.posting.flow.reset_counters()

    for _ in range(2):  # marked complete, then complete again (a second change event)
        await m.complete(milestone)
        await m.round()

    async with m.posting.deps.sessionmaker() as session:
        queued = await session.scalars(
            sa.select(WorkItem.status).where(WorkItem.dedupe_key == f"{RELEASE_MILESTONE}:{milestone}")
        )
        assert list(queued) == ["DONE"]
        step = await RunRepo(session).get_step(f"tryton:milestoneRelease:{milestone}")
        assert step.status == "SUCCEEDED" and step.result is not None
        assert step.result["released"] is True and step.result["task"] == str(m.tasks[name]["id"])
        found = await ExceptionRepo(session).list(flow=RELEASE_MILESTONE)  # the demo firm's have their own
        assert [e for e in found if e.subject == f"psa:milestone:{milestone}"] == []
    task = await m.task(name)
    assert task["progress"] == 1.0 and task["status."]["name"] == "Done"
    if other != name:
        assert (await m.task(other))["progress"] in (None, 0.0)  # only the completed milestone
    assert "erp" not in await m.posting.flow.writes()  # nothing went to NetSuite
    # the graph reads the milestone's state from Tryton: completed, the others still planned
    graph = await graph_query(
        m.posting.flow, m.client, MILESTONES, id=provisioned_project_canonical_id(MILESTONE)
    )
    statuses = {x["name"]: x["status"] for x in graph["project"]["milestones"]}
    assert statuses[name] == "COMPLETED" and set(statuses) == set(m.tasks)
    assert all(status == "PLANNED" for n, status in statuses.items() if n != name)

    assert await m.to_invoice() == amount
    await m.client.button("project.work", "invoice", [m.project_id])
    billed = await m.invoiced(name)
    assert billed == amount
    assert await m.to_invoice() == 0
    with pytest.raises(TrytonRejected):  # invoicing again: Tryton has nothing left to invoice
        await m.client.button("project.work", "invoice", [m.project_id])
    assert await m.invoiced(name) == billed
    assert len((await m.task(name))["invoiced_progress"]) == 1
    if other != name:
        assert await m.invoiced(other) == 0


async def test_a_milestone_of_a_closed_tryton_project_is_project_closed(m: Milestones) -> None:
    name = sorted(m.tasks)[0]
    milestone = m.add(name, amount_of(m.tasks[name]))
    (project,) = await m.client.read("project.work", [m.project_id], ["children"])
    (done,) = await m.client.search_read("project.work.status", [["name", "=", "Done"]], ["id"])
    await m.client.write("project.work", [m.project_id, *project["children"]], {"progress": 1.0})
    await m.client.write("project.work", [m.project_id], {"status": done["id"]})  # closed in Tryton
    before = await m.task(name)

    await m.complete(milestone)
    await m.round()

    async with m.posting.deps.sessionmaker() as session:
        found = await ExceptionRepo(session).list(flow=RELEASE_MILESTONE)
        [exception] = [e for e in found if e.subject == f"psa:milestone:{milestone}"]
        step = await RunRepo(session).get_step(f"tryton:milestoneRelease:{milestone}")
    assert exception.reason_code == "PROJECT_CLOSED" and exception.status == "OPEN"
    assert exception.legal_entity == "EU01"
    assert "reopen the project in Tryton" in str(exception.upstream_error)
    assert step.status == "FAILED"
    assert await m.task(name) == before  # Tryton untouched: not marked done by us
    assert before["status."]["name"] != "Done"


async def test_a_release_without_the_milestone_s_name_reads_it_from_the_psa(m: Milestones) -> None:
    """A webhook payload may carry only ids; Tryton knows the milestone's task by its name."""
    name = sorted(m.tasks)[-1]
    milestone = m.add(name, amount_of(m.tasks[name]))
    await m.complete(milestone)

    payload = {"milestone_id": milestone, "project_id": m.psa_project_id}
    result = await release_milestone(m.posting.deps, payload, correlation_id="c-ids-only")
    again = await release_milestone(m.posting.deps, payload, correlation_id="c-ids-only-again")

    assert result["released"] is True and result["task"] == str(m.tasks[name]["id"])
    assert again == result  # the step's stored result: nothing read or written again
    assert (await m.task(name))["progress"] == 1.0


async def test_netsuite_refuses_a_milestone_of_a_closed_job_alike(posting: Posting) -> None:
    """The NetSuite path gives the same code for the same case: a closed job releases nothing."""
    project = next(
        p
        for p in posting.flow.firm.projects
        if p.is_active and p.milestones and any(not m.completed for m in p.milestones)
    )
    milestone = next(m for m in project.milestones if not m.completed)
    await posting.deps.erp.update("job", str(project.erp_job_id), {"status": "closed"})
    worker = posting.worker(start=await posting.psa_now())
    worker.pollers = [MilestonePoller(posting.deps)]

    await posting.admin("psa", "POST", f"/__sandbox/psa/milestones/{milestone.erp_id}/complete")
    await worker.drain()

    async with posting.deps.sessionmaker() as session:
        found = await ExceptionRepo(session).list(flow=RELEASE_MILESTONE)
        step = await RunRepo(session).get_step(f"erp:milestoneRelease:{milestone.erp_id}")
    [exception] = [e for e in found if e.subject == f"psa:milestone:{milestone.erp_id}"]
    assert exception.reason_code == "PROJECT_CLOSED" and step.status == "FAILED"
    rows = await posting.deps.erp.suiteql(
        f"SELECT completed FROM billingschedulemilestone WHERE milestone = '{milestone.erp_id}'"
    )
    assert rows and all(str(r["completed"]) not in ("T", "True", "true") for r in rows)
