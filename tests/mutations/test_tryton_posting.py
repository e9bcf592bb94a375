"""Approved time → Tryton timesheet lines end to end: PSA sandbox, worker round, a real trytond (EU01).

Same assertions as the NetSuite time-posting scenarios where they apply: only approved entries, once; a
second round posts nothing; a correction replaces the line; an entry after the project's end and a change to
an invoiced line become exceptions with their reason codes; and a line Tryton committed but the gateway did
not record (a worker killed in between) is adopted, never doubled.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from mutations.time_posting import POST_TIME
from store.repositories import ExceptionRepo
from store.repositories.postings import PostingRepo
from subgraphs.erp_tryton.client import TrytonClient
from subgraphs.erp_tryton.mapping import timesheet_values
from subgraphs.erp_tryton.wire import hours
from subgraphs.psa.mapping import version_of
from tests.mutations.conftest import Flow
from tests.mutations.posting_support import Posting
from tests.mutations.tryton_flow import provisioned_for_posting, use_tryton
from tests.subgraphs.erp_tryton.tryton_support import Server

TM = "006000000000032AAA"  # account 10, EU01, Consulting, T&M


@dataclasses.dataclass
class OnTryton:
    posting: Posting
    client: TrytonClient
    project_id: int  # Tryton
    psa_project_id: int
    psa_task_id: int
    psa_user_id: int
    start: date
    end: date

    async def entry(self, *, spent: float = 2.5, on: date | None = None) -> int:
        on = on or self.start + timedelta(days=1)
        body = {
            "project_id": self.psa_project_id,
            "task_id": self.psa_task_id,
            "user_id": self.psa_user_id,
            "spent_date": on.isoformat(),
            "hours": spent,
            "notes": "tryton posting test",
        }
        return int((await self.posting.deps.psa.create_time_entry(body))["id"])

    async def lines(self, entry_id: int) -> list[dict[str, Any]]:
        return await self.client.search_read(
            "timesheet.line",
            [["description", "like", f"psa:{entry_id}:v%"]],
            ["description", "duration", "date", "employee", "work", "invoice_line"],
        )


@pytest.fixture
async def on_tryton(flow: Flow, tryton: Server) -> AsyncIterator[OnTryton]:
    client = use_tryton(flow, tryton)
    result, posting = await provisioned_for_posting(flow, TM, "c-posting")
    psa_project = int(str(result.psa_project_id))
    assignment = (await flow.deps.psa.task_assignments(psa_project))[0]
    person = next(e for e in flow.firm.employees if e.legal_entity == "EU01")
    dates = ["timesheet_start_date", "timesheet_end_date"]
    (project,) = await client.read("project.work", [int(str(result.erp_job_id))], dates)
    yield OnTryton(
        posting,
        client,
        int(project["id"]),
        psa_project,
        int(assignment["task"]["id"]),
        person.psa_user_id,
        project["timesheet_start_date"],
        project["timesheet_end_date"],
    )
    await client.aclose()


async def exceptions(p: Posting, *, detail: bool = False) -> list[tuple[Any, ...]]:
    async with p.deps.sessionmaker() as session:
        found = await ExceptionRepo(session).list(flow=POST_TIME)
    if detail:
        return [(e.reason_code, e.status, e.upstream_error) for e in found]
    return [(e.reason_code, e.status) for e in found]


async def test_only_approved_entries_become_one_line_each(on_tryton: OnTryton) -> None:
    t = on_tryton
    start = await t.posting.psa_now()
    ids = [await t.entry(on=t.start + timedelta(days=i)) for i in range(3)]
    await t.posting.approve(ids[0])
    await t.posting.approve(ids[1])
    await t.posting.approve(ids[2], "reject")
    await t.posting.flow.reset_counters()

    report = await t.posting.round(start)

    assert report.failed == 0, await exceptions(t.posting, detail=True)
    assert [len(await t.lines(i)) for i in ids] == [1, 1, 0]
    line = (await t.lines(ids[0]))[0]
    assert str(line["description"]).startswith(f"psa:{ids[0]}:v")
    assert hours(line["duration"]) == Decimal("2.50") and line["date"] == t.start
    (project,) = await t.client.read("project.work", [t.project_id], ["timesheet_duration"])
    assert hours(project["timesheet_duration"]) == Decimal("5.00")
    assert "erp" not in await t.posting.flow.writes()  # nothing went to NetSuite

    again = await t.posting.round(start)
    assert again.claimed == 0
    assert [len(await t.lines(i)) for i in ids] == [1, 1, 0]


async def test_a_correction_replaces_the_line_and_a_billed_line_is_refused(on_tryton: OnTryton) -> None:
    t = on_tryton
    start = await t.posting.psa_now()
    first, second = await t.entry(), await t.entry(on=t.start + timedelta(days=2))
    await t.posting.approve(first)
    await t.posting.approve(second)
    await t.posting.round(start)
    before = (await t.lines(first))[0]

    await t.posting.edit(first, hours=4.0)
    await t.posting.round(start)

    (after,) = await t.lines(first)
    assert after["id"] != before["id"] and hours(after["duration"]) == Decimal("4.00")
    assert str(after["description"]) != str(before["description"])  # the new version's reference

    await t.client.button("project.work", "invoice", [t.project_id])  # bills both lines
    await t.posting.edit(second, hours=1.0)
    await t.posting.round(start)

    (kept,) = await t.lines(second)
    assert hours(kept["duration"]) == Decimal("2.50") and kept["invoice_line"]
    assert ("ALREADY_BILLED", "OPEN") in await exceptions(t.posting)


async def test_time_after_the_projects_end_is_an_exception(on_tryton: OnTryton) -> None:
    t = on_tryton
    start = await t.posting.psa_now()
    late = await t.entry(on=t.end + timedelta(days=3))
    await t.posting.approve(late)

    report = await t.posting.round(start)

    assert report.failed == 1 or await exceptions(t.posting)
    assert await t.lines(late) == []
    assert ("AFTER_END_DATE", "OPEN") in await exceptions(t.posting)


async def test_a_line_tryton_kept_but_the_gateway_did_not_record_is_adopted(on_tryton: OnTryton) -> None:
    """What a worker killed between Tryton's commit and ours leaves: the next round adopts the line."""
    t = on_tryton
    start = await t.posting.psa_now()
    entry = await t.entry()
    await t.posting.approve(entry)
    psa = await t.posting.deps.psa.time_entry(entry)
    employees = await t.client.employees()
    (work,) = (await t.client.read("project.work", [t.project_id], ["timesheet_works"]))[0]["timesheet_works"]
    version = version_of(str(psa["updated_at"]))  # what intake will queue
    orphan_values = timesheet_values(
        int(work), next(iter(employees.values())), t.start, Decimal("2.5"), entry, version
    )
    (orphan,) = await t.client.create("timesheet.line", [orphan_values])

    await t.posting.round(start)

    (line,) = await t.lines(entry)
    assert line["id"] == orphan, psa  # adopted: exactly one line, the one Tryton already had
    async with t.posting.deps.sessionmaker() as session:
        head = (await PostingRepo(session).heads([f"psa:time:{entry}:head"]))[f"psa:time:{entry}:head"]
    assert head["erp_id"] == str(orphan) and head["version"] == version
