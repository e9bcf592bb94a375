"""Flow 3 end to end through the sandboxes, on SQLite and PostgreSQL: scenarios 10–16b."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from canonical.errors import Conflict
from mutations.intake import format_stamp
from mutations.posting.intake import TIME_CURSOR
from mutations.replay import replay_exception
from mutations.time_posting import POST_TIME
from store.models import WorkItem
from store.repositories import CursorRepo, ExceptionRepo, RunRepo
from tests.mutations.conftest import ADMIN
from tests.mutations.posting_support import Posting, mapping_with, with_mapping


async def exceptions(p: Posting, flow: str = POST_TIME) -> list[tuple[str, str, str]]:
    async with p.deps.sessionmaker() as session:
        found = await ExceptionRepo(session).list(flow=flow)
        return [(e.reason_code, e.status, str((e.payload or {}).get("fix"))) for e in found]


async def test_only_approved_entries_are_posted_and_a_partial_week(posting: Posting) -> None:
    """Scenarios 10 and 16: of a week's entries only the approved ones reach the ERP, once."""
    project = posting.project()
    start = await posting.psa_now()
    entries = [await posting.entry(project, on=date(2026, 11, 23) + timedelta(days=i)) for i in range(4)]
    ids = [int(e["id"]) for e in entries]
    await posting.admin(
        "psa",
        "POST",
        "/__sandbox/psa/time_entries/approve_week",
        {"project_id": project.psa_project_id, "week_of": "2026-11-23", "ids": ids[:2]},
    )
    await posting.approve(ids[3], "reject")

    report = await posting.round(start)
    assert report.failed == 0
    assert [len(await posting.time_bills(i)) for i in ids] == [1, 1, 0, 0]
    bill = (await posting.time_bills(ids[0]))[0]
    assert bill["approvalstatus"] == "approved"
    assert Decimal(str(bill["hours"])) == Decimal("2.5")

    again = await posting.round(start)  # the poller re-reads the same window: nothing new
    assert again.claimed == 0
    assert [len(await posting.time_bills(i)) for i in ids] == [1, 1, 0, 0]


async def test_unknown_project_closed_task_and_unmapped_task_then_replay(posting: Posting) -> None:
    """Scenario 11: each problem → an exception with its reason and fix; fix, replay → posted once."""
    project = posting.project()
    start = await posting.psa_now()
    psa = posting.deps.psa
    workshop = await psa.create_task({"name": "Workshop"})
    await psa.create_task_assignment(project.psa_project_id, {"task_id": workshop["id"], "billable": True})
    unmapped = await posting.entry(project, task=int(workshop["id"]))
    await posting.approve(int(unmapped["id"]))

    orphan = await psa.create_project(
        {
            "client_id": project_client(posting, project),
            "name": "Side project",
            "code": "SIDE-1",
            "is_billable": True,
            "bill_by": "Project",
            "budget_by": "none",
        }
    )
    await psa.create_task_assignment(int(orphan["id"]), {"task_id": project.tasks[0].psa_task_id})
    stray = dict(
        await psa.create_time_entry(
            {
                "project_id": orphan["id"],
                "task_id": project.tasks[0].psa_task_id,
                "user_id": posting.flow.firm.employees[project.staff[0]].psa_user_id,
                "spent_date": "2026-11-24",
                "hours": 1,
            }
        )
    )
    await posting.approve(int(stray["id"]))

    other = posting.project(n=1)
    task = other.tasks[0]
    await posting.deps.erp.update("projectTask", str(task.erp_task_id), {"status": "completed"})
    on_closed = await posting.entry(other, task=task.psa_task_id)
    await posting.approve(int(on_closed["id"]))

    report = await posting.round(start)
    assert report.failed == 3
    found = {reason: fix for reason, _status, fix in await exceptions(posting)}
    assert set(found) == {"MAPPING_MISSING", "UNKNOWN_PROJECT", "TASK_CLOSED"}
    assert "map task 'Workshop' to a labour category" in found["MAPPING_MISSING"]
    assert "link PSA project SIDE-1" in found["UNKNOWN_PROJECT"]
    assert f"reopen task '{task.name}'" in found["TASK_CLOSED"]
    for entry in (unmapped, stray, on_closed):
        assert await posting.time_bills(int(entry["id"])) == []

    async with posting.deps.sessionmaker() as session:
        missing = (await ExceptionRepo(session).list(reason_code="MAPPING_MISSING"))[0].id
    fixed = with_mapping(posting.deps, mapping_with("Workshop"))
    result = await replay_exception(fixed, missing, principal=ADMIN)
    assert result.exception.status == "RESOLVED"
    with pytest.raises(Conflict):  # resolved: a second replay is refused, nothing posted twice
        await replay_exception(fixed, missing, principal=ADMIN)
    bills = await posting.time_bills(int(unmapped["id"]))
    assert len(bills) == 1 and bills[0]["approvalstatus"] == "approved"
    await posting.round(start, fixed)
    assert len(await posting.time_bills(int(unmapped["id"]))) == 1


def project_client(posting: Posting, project: object) -> int:
    firm = posting.flow.firm
    return int(firm.accounts[project.account_index].psa_client_id)  # type: ignore[attr-defined]


async def test_closed_period_next_open_and_exception_policies(posting: Posting) -> None:
    """Scenario 12: Sep 2026 is closed. US01 (NEXT_OPEN) posts to Oct 2026; EU01 (EXCEPTION) refuses."""
    start = await posting.psa_now()
    us, eu = posting.project(entity="US01"), posting.project(entity="EU01")
    moved = await posting.entry(us, on=date(2026, 9, 15))
    refused = await posting.entry(eu, on=date(2026, 9, 15))
    for entry in (moved, refused):
        await posting.approve(int(entry["id"]))

    await posting.round(start)
    bills = await posting.time_bills(int(moved["id"]))
    assert len(bills) == 1 and str(bills[0]["trandate"]).startswith("2026-10-01")
    assert "posted to Oct 2026" in str(bills[0]["memo"])
    assert await posting.time_bills(int(refused["id"])) == []
    [(reason, status, fix)] = await exceptions(posting)
    assert (reason, status) == ("PERIOD_CLOSED", "OPEN")
    assert "reopen period Sep 2026" in fix and "EU01" in fix
    # The exception carries its legal entity, so finance scoped to EU01 sees and may replay it.
    async with posting.deps.sessionmaker() as session:
        assert [e.legal_entity for e in await ExceptionRepo(session).list(flow=POST_TIME)] == ["EU01"]
        scoped = await ExceptionRepo(session).list(flow=POST_TIME, legal_entity="EU01")
        assert [e.reason_code for e in scoped] == ["PERIOD_CLOSED"]


async def test_unapprove_and_edit_reverse_and_correct_totals_to_the_cent(posting: Posting) -> None:
    """Scenario 13: unapproved → reversed; edited → old version reversed, new posted; ERP = PSA."""
    project = posting.project()
    start = await posting.psa_now()
    ids = [int((await posting.entry(project, hours=h))["id"]) for h in (1.25, 3.5, 7.75)]
    for i in ids:
        await posting.approve(i)
    await posting.round(start)
    rate = Decimal(str((await posting.time_bills(ids[0]))[0]["rate"]))
    assert await posting.approved_total(ids) == (Decimal("12.5") * rate).quantize(Decimal("0.01"))

    await posting.approve(ids[0], "reopen")  # unapproved
    await posting.edit(ids[1], hours=4.25)  # edited
    await posting.round(start)

    first = await posting.time_bills(ids[0])
    assert [r["approvalstatus"] for r in first] == ["rejected"]
    assert "REVERSED" in str(first[0]["memo"])
    second = await posting.time_bills(ids[1])
    assert [r["approvalstatus"] for r in second] == ["rejected", "approved"]
    assert Decimal(str(second[1]["hours"])) == Decimal("4.25")
    psa_total = sum(((Decimal(h) * rate).quantize(Decimal("0.01")) for h in ("4.25", "7.75")), Decimal(0))
    assert await posting.approved_total(ids) == psa_total

    await posting.approve(ids[0])  # approved again → posted again, as a new version
    await posting.round(start)
    assert [r["approvalstatus"] for r in await posting.time_bills(ids[0])] == ["rejected", "approved"]


async def test_billed_entry_edited_is_an_exception_and_the_erp_is_untouched(posting: Posting) -> None:
    """Scenario 14."""
    project = posting.project()
    start = await posting.psa_now()
    entry = await posting.entry(project)
    entry_id = int(entry["id"])
    await posting.approve(entry_id)
    await posting.round(start)
    await posting.admin("erp", "POST", "/__sandbox/erp/billing/run", {"asOf": "2026-11-30"})
    before = await posting.time_bills(entry_id)
    assert before[0]["billed"] in (True, "T")

    await posting.edit(entry_id, hours=6)
    report = await posting.round(start)
    assert report.failed == 1
    assert await posting.time_bills(entry_id) == before
    [(reason, _status, fix)] = await exceptions(posting)
    assert reason == "ALREADY_BILLED" and "credit memo" in fix


async def test_project_closed_in_psa_or_erp_posts_nothing(posting: Posting) -> None:
    """Scenario 16a."""
    start = await posting.psa_now()
    in_psa, in_erp = posting.project(n=0), posting.project(n=1)
    entries = [await posting.entry(p) for p in (in_psa, in_erp)]
    for e in entries:
        await posting.approve(int(e["id"]))
    await posting.admin("psa", "POST", f"/__sandbox/psa/projects/{in_psa.psa_project_id}/close")
    await posting.deps.erp.update("job", str(in_erp.erp_job_id), {"status": "closed"})

    report = await posting.round(start)
    assert report.failed == 2
    for e in entries:
        assert await posting.time_bills(int(e["id"])) == []
    reasons = sorted(r for r, _s, _f in await exceptions(posting))
    assert reasons == ["PROJECT_CLOSED", "PROJECT_CLOSED"]


async def test_milestone_completed_twice_is_released_once(posting: Posting) -> None:
    """Scenario 16b."""
    project = next(
        p
        for p in posting.flow.firm.projects
        if p.is_active and p.milestones and any(not m.completed for m in p.milestones)
    )
    milestone = next(m for m in project.milestones if not m.completed)
    worker = posting.worker(start=await posting.psa_now())
    from mutations.time_posting import MilestonePoller

    worker.pollers = [MilestonePoller(posting.deps)]
    for _ in range(2):
        await posting.admin("psa", "POST", f"/__sandbox/psa/milestones/{milestone.erp_id}/complete")
        await worker.drain()
    key = f"erp:milestoneRelease:{milestone.erp_id}"
    async with posting.deps.sessionmaker() as session:
        queued = await session.scalars(
            sa.select(WorkItem.status).where(WorkItem.dedupe_key == f"release_milestone:{milestone.erp_id}")
        )
        assert list(queued) == ["DONE"]
        step = await RunRepo(session).get_step(key)
        assert step.status == "SUCCEEDED" and step.result is not None and step.result["released"] is True
    rows = await posting.deps.erp.suiteql(
        f"SELECT completed FROM billingschedulemilestone WHERE milestone = '{milestone.erp_id}'"
    )
    assert len(rows) == 1 and str(rows[0]["completed"]) in ("T", "True", "true")


async def queued_keys(posting: Posting, entry_ids: list[int]) -> list[str]:
    async with posting.deps.sessionmaker() as session:
        keys = await session.scalars(sa.select(WorkItem.dedupe_key).where(WorkItem.kind == POST_TIME))
    return sorted(k for k in keys if k is not None and int(k.split(":")[1]) in entry_ids)


async def test_poller_lag_window_picks_up_late_updates_without_double_enqueue(posting: Posting) -> None:
    """An entry stamped before the cursor (a slow commit) is read within the lag; re-reads queue nothing."""
    project = posting.project()
    start = await posting.psa_now()
    late, seen = await posting.entry(project), await posting.entry(project)
    for e in (late, seen):
        await posting.approve(int(e["id"]))
    ids = [int(late["id"]), int(seen["id"])]
    stamp = (await posting.deps.psa.time_entry(ids[1]))["updated_at"]
    cursor = datetime.fromisoformat(stamp.replace("Z", "+00:00")) + timedelta(seconds=10)
    async with posting.deps.sessionmaker.begin() as session:
        await CursorRepo(session).set(TIME_CURSOR, format_stamp(cursor))

    blind = posting.worker(start=start, lag=timedelta(0))
    await blind.run_pollers(force=True)
    assert await queued_keys(posting, ids) == []
    worker = posting.worker(start=start, lag=timedelta(seconds=60))
    await worker.run_pollers(force=True)
    await worker.run_pollers(force=True)  # the same window again: deduplicated
    keys = await queued_keys(posting, ids)
    assert len(keys) == 2 and all(k.startswith("post_time:") for k in keys)
    await worker.drain()
    assert [len(await posting.time_bills(i)) for i in ids] == [1, 1]
