"""``syncStatus``, ``syncApprovedTime`` and the ledger's posting status through ``schema.execute``, on SQLite
and PostgreSQL: the schema merged as ``resolvers.mutation`` is to wire it, contexts built like the gateway's
(``Graph`` of ``test_operations``), the 30-account flow firm in three in-process sandboxes."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import strawberry
from strawberry.tools import merge_types

from canonical import entities
from canonical.enums import ApprovalStatus, PostingStatus
from mutations.intake import PROVISION
from mutations.posting.intake import TIME_CURSOR
from mutations.provisioning.outcomes import FLOW as PROVISION_FLOW
from mutations.time_posting import POST_EXPENSE, POST_TIME, PostingCaches
from resolvers.errors import GatewayErrors
from resolvers.mutation import Mutation
from resolvers.operations import OperationsQuery
from resolvers.query import Query
from resolvers.sync import LedgerLoaders, SyncMutation, SyncQuery, ledger_posting_statuses
from resolvers.types.contract import Contract
from store.migrate import upgrade_to_head
from store.models import WorkItem
from store.repositories import AuditRepo, CursorRepo, ExceptionRepo, WorkQueueRepo
from subgraphs.demo import generate_firm
from subgraphs.psa.mapping import version_of
from tests.conftest import BACKENDS
from tests.mutations.conftest import FLOW_ACCOUNTS, FLOW_SEED, Flow, build_apps, close_flow, make_flow, now
from tests.mutations.posting_support import Posting, link_projects
from tests.resolvers.test_operations import ADMIN, AUDITOR, DELIVERY, FINANCE, SALES, US_ONLY, Graph

STATUS = """
query {
  syncStatus {
    asOf
    flows {
      kind exceptionFlow depth ready oldestWaitingSeconds
      byStatus { status count }
      throughput { windowMinutes completed failed perMinute }
      openExceptions exceptionsByReason { reasonCode count oldestAgeSeconds }
    }
    exceptionsByReason { reasonCode count oldestAgeSeconds }
    pollers { poller cursor value updatedAt }
  }
}"""
SYNC = """
mutation($since: DateTime!, $key: String) {
  syncApprovedTime(since: $since, idempotencyKey: $key) {
    since timeEntriesRead expensesRead timeEntriesQueued expensesQueued queued
  }
}"""


@pytest.fixture(scope="module")
def schema() -> strawberry.Schema:
    return strawberry.federation.Schema(
        query=merge_types("Query", (Query, OperationsQuery, SyncQuery)),
        mutation=merge_types("Mutation", (Mutation, SyncMutation)),
        types=[Contract],
        extensions=[GatewayErrors],
    )


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Per-test store on both backends (this package's conftest shares one backfilled store instead)."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    upgrade_to_head(url)
    return url


@pytest.fixture
async def flow(sessionmaker: Any) -> AsyncIterator[Flow]:
    built = await make_flow(build_apps(), generate_firm(FLOW_SEED, FLOW_ACCOUNTS), sessionmaker)
    yield built
    await close_flow(built)


@pytest.fixture
def graph(schema: strawberry.Schema, flow: Flow) -> Graph:
    return Graph(schema, flow)


def ago(minutes: float) -> Callable[[], datetime]:
    moment = now() - timedelta(minutes=minutes)
    return lambda: moment


# --- syncStatus -------------------------------------------------------------------------------------------


async def fill_store(flow: Flow) -> None:
    """At ``now()`` (the flows' fixed clock), post_time has: 3 waiting (due 20 and 8 minutes ago, one
    delayed retry due in 5), finished items at 0.5, 4, 10 and 16 minutes ago and one failed 2 minutes
    ago; post_expense one waiting for 3 minutes. Exceptions in US01, EU01 and none; one resolved."""
    async with flow.deps.sessionmaker.begin() as s:
        early = WorkQueueRepo(s, clock=ago(20))
        ids: list[int] = []
        for i in range(6):
            item_id = await early.enqueue(POST_TIME, {"n": i}, dedupe_key=f"t:{i}")
            assert item_id is not None
            ids.append(item_id)
        await early.enqueue(
            POST_TIME, {"n": 7}, dedupe_key="t:delayed", available_at=now() + timedelta(minutes=5)
        )
        await WorkQueueRepo(s, clock=ago(8)).enqueue(POST_TIME, {"n": 8}, dedupe_key="t:late")
        await WorkQueueRepo(s, clock=ago(3)).enqueue(POST_EXPENSE, {"n": 9}, dedupe_key="e:1")
        claimed = await WorkQueueRepo(s, clock=ago(19)).claim(POST_TIME, worker="w", batch=5)
        assert [c.id for c in claimed] == ids[:5]
        for item_id, minutes in zip(ids[:4], (0.5, 4, 10, 16), strict=True):
            assert await WorkQueueRepo(s, clock=ago(minutes)).complete(item_id, "w")
        assert await WorkQueueRepo(s, clock=ago(2)).fail(ids[4], "w", {"e": "x"}, retry=False) == "FAILED"

        def opened(minutes: float) -> ExceptionRepo:
            return ExceptionRepo(s, clock=ago(minutes))

        await opened(30).open(
            flow=POST_TIME, reason_code="PERIOD_CLOSED", subject="psa:time:1", legal_entity="US01"
        )
        await opened(60).open(
            flow=POST_TIME, reason_code="PERIOD_CLOSED", subject="psa:time:2", legal_entity="EU01"
        )
        await opened(10).open(
            flow=POST_TIME, reason_code="MAPPING_MISSING", subject="psa:time:3", legal_entity="US01"
        )
        await opened(5).open(
            flow=PROVISION_FLOW, reason_code="UPSTREAM_UNAVAILABLE", subject="006X", legal_entity="EU01"
        )
        await opened(1).open(flow=POST_EXPENSE, reason_code="INTERNAL", subject="psa:expense:4")
        gone = await opened(90).open(
            flow=POST_TIME, reason_code="PERIOD_CLOSED", subject="psa:time:5", legal_entity="US01"
        )
        await opened(45).mark_resolved(gone.id)
        await CursorRepo(s, clock=ago(2)).set(TIME_CURSOR, "2026-11-27T11:57:00.000Z")


def by_kind(data: Any) -> dict[str, Any]:
    return {f["kind"]: f for f in data["syncStatus"]["flows"]}


async def test_sync_status_counts_queues_throughput_exceptions_and_cursors(graph: Graph, flow: Flow) -> None:
    await fill_store(flow)

    data = await graph.data(STATUS, ADMIN)

    status = data["syncStatus"]
    assert status["asOf"] == "2026-11-27T12:00:00+00:00"
    flows = by_kind(data)
    assert list(flows) == [POST_TIME, POST_EXPENSE, "release_milestone", PROVISION]
    time = flows[POST_TIME]
    assert (time["depth"], time["ready"], time["oldestWaitingSeconds"]) == (3, 2, 1200)
    assert time["byStatus"] == [
        {"status": "DONE", "count": 4},
        {"status": "FAILED", "count": 1},
        {"status": "QUEUED", "count": 3},
    ]
    assert time["throughput"] == [
        {"windowMinutes": 1, "completed": 1, "failed": 0, "perMinute": 1.0},
        {"windowMinutes": 5, "completed": 2, "failed": 1, "perMinute": 0.4},
        {"windowMinutes": 15, "completed": 3, "failed": 1, "perMinute": 0.2},
    ]
    assert time["openExceptions"] == 3
    assert time["exceptionsByReason"] == [
        {"reasonCode": "PERIOD_CLOSED", "count": 2, "oldestAgeSeconds": 3600},
        {"reasonCode": "MAPPING_MISSING", "count": 1, "oldestAgeSeconds": 600},
    ]
    expense = flows[POST_EXPENSE]
    assert (expense["depth"], expense["ready"], expense["oldestWaitingSeconds"]) == (1, 1, 180)
    assert [t["completed"] for t in expense["throughput"]] == [0, 0, 0]
    assert expense["openExceptions"] == 1
    milestone = flows["release_milestone"]
    assert (milestone["depth"], milestone["oldestWaitingSeconds"], milestone["byStatus"]) == (0, None, [])
    assert flows[PROVISION]["exceptionFlow"] == PROVISION_FLOW
    assert flows[PROVISION]["exceptionsByReason"] == [
        {"reasonCode": "UPSTREAM_UNAVAILABLE", "count": 1, "oldestAgeSeconds": 300}
    ]
    assert status["exceptionsByReason"] == [
        {"reasonCode": "PERIOD_CLOSED", "count": 2, "oldestAgeSeconds": 3600},
        {"reasonCode": "INTERNAL", "count": 1, "oldestAgeSeconds": 60},
        {"reasonCode": "MAPPING_MISSING", "count": 1, "oldestAgeSeconds": 600},
        {"reasonCode": "UPSTREAM_UNAVAILABLE", "count": 1, "oldestAgeSeconds": 300},
    ]
    pollers = {p["poller"]: p for p in status["pollers"]}
    assert pollers["psa.time"] == {
        "poller": "psa.time",
        "cursor": TIME_CURSOR,
        "value": "2026-11-27T11:57:00.000Z",
        "updatedAt": "2026-11-27T11:58:00+00:00",
    }
    assert pollers["psa.expense"]["value"] is None and pollers["crm.opportunities"]["updatedAt"] is None


async def test_sync_status_counts_only_the_callers_legal_entities(graph: Graph, flow: Flow) -> None:
    await fill_store(flow)

    data = await graph.data(STATUS, US_ONLY)

    assert data["syncStatus"]["exceptionsByReason"] == [
        {"reasonCode": "MAPPING_MISSING", "count": 1, "oldestAgeSeconds": 600},
        {"reasonCode": "PERIOD_CLOSED", "count": 1, "oldestAgeSeconds": 1800},
    ]
    flows = by_kind(data)
    assert [flows[k]["openExceptions"] for k in flows] == [2, 0, 0, 0]  # EU01 and entity-less left out
    assert flows[POST_TIME]["depth"] == 3  # queue figures are operational: every entity


async def test_sync_status_is_for_admins_finance_and_auditors(graph: Graph, flow: Flow) -> None:
    for principal in (SALES, DELIVERY):
        error = await graph.error(STATUS, principal)
        assert error["code"] == "FORBIDDEN"
    for principal in (ADMIN, FINANCE, AUDITOR):
        assert (await graph.data(STATUS, principal))["syncStatus"]["flows"]


# --- syncApprovedTime -------------------------------------------------------------------------------------


@pytest.fixture
async def posting(flow: Flow) -> Posting:
    await link_projects(flow)
    made = Posting(flow, PostingCaches(ttl_s=0))
    later = await made.psa_now() + timedelta(hours=1)  # our clock ahead of the PSA's, as the pollers need
    flow.deps = dataclasses.replace(flow.deps, clock=lambda: later)
    return made


async def work_keys(flow: Flow) -> list[str]:
    async with flow.deps.sessionmaker() as session:
        keys = await session.scalars(sa.select(WorkItem.dedupe_key).order_by(WorkItem.id))
        return [k for k in keys if k is not None]


async def audits(flow: Flow) -> list[tuple[str, str]]:
    async with flow.deps.sessionmaker() as session:
        rows = await AuditRepo(session).query(operation="syncApprovedTime")
        return [(r.status, r.principal) for r in reversed(rows)]


def stamp(moment: datetime) -> str:
    return moment.isoformat()


async def test_sync_approved_time_queues_approved_entries_once_per_key(
    graph: Graph, posting: Posting
) -> None:
    flow = posting.flow
    since = await posting.psa_now()
    project = posting.project()
    entries = [int((await posting.entry(project))["id"]) for _ in range(3)]
    for entry_id in entries[:2]:
        await posting.approve(entry_id)

    first = (await graph.data(SYNC, ADMIN, since=stamp(since), key="s-1"))["syncApprovedTime"]

    assert first["timeEntriesRead"] == 3 and first["timeEntriesQueued"] == 2
    assert first["queued"] == first["timeEntriesQueued"] + first["expensesQueued"]
    keys = await work_keys(flow)
    assert sorted(int(k.split(":")[1]) for k in keys if k.startswith("post_time:")) == entries[:2]

    await posting.approve(entries[2])  # new work the replay must not pick up
    again = (await graph.data(SYNC, ADMIN, since=stamp(since), key="s-1"))["syncApprovedTime"]
    assert again == first and await work_keys(flow) == keys

    other = (await graph.data(SYNC, ADMIN, since=stamp(since), key="s-2"))["syncApprovedTime"]
    assert other["timeEntriesQueued"] == 1  # the first two are already queued: dedupe, not counted
    assert await audits(flow) == [("COMPLETED", "ops"), ("REPLAYED", "ops"), ("COMPLETED", "ops")]


async def test_sync_approved_time_key_rules_bounds_and_permissions(graph: Graph, posting: Posting) -> None:
    flow = posting.flow
    clock = flow.deps.clock()
    since = clock - timedelta(days=2)
    first = await graph.data(SYNC, FINANCE, since=stamp(since), key="k-1")

    reused = await graph.error(SYNC, FINANCE, since=stamp(since + timedelta(hours=1)), key="k-1")
    assert reused["code"] == "IDEMPOTENCY_KEY_REUSED"
    too_old = await graph.error(SYNC, FINANCE, since=stamp(clock - timedelta(days=63)), key="k-2")
    assert too_old["code"] == "VALIDATION_FAILED" and too_old["problems"][0]["field"] == "since"
    future = await graph.error(SYNC, FINANCE, since=stamp(clock + timedelta(minutes=1)), key="k-3")
    assert future["code"] == "VALIDATION_FAILED"
    assert (await graph.error(SYNC, FINANCE, since=stamp(since)))["code"] == "IDEMPOTENCY_KEY_REQUIRED"
    by_header = await graph.data(
        SYNC, FINANCE, since=stamp(since), header="k-1"
    )  # the header's key: a replay
    assert by_header == first
    for principal in (SALES, AUDITOR):
        assert (await graph.error(SYNC, principal, since=stamp(since), key="k-9"))["code"] == "FORBIDDEN"
    assert await audits(flow) == [
        ("COMPLETED", "fin"),
        ("IDEMPOTENCY_KEY_REUSED", "fin"),
        ("VALIDATION_FAILED", "fin"),
        ("VALIDATION_FAILED", "fin"),
        ("IDEMPOTENCY_KEY_REQUIRED", "fin"),
        ("REPLAYED", "fin"),
        ("FORBIDDEN", "sam"),
        ("FORBIDDEN", "aud"),
    ]


# --- TimeEntry.postingStatus from the ledger --------------------------------------------------------------


async def entity(posting: Posting, entry_id: int) -> entities.TimeEntry:
    wire = await posting.deps.psa.time_entry(entry_id)
    return entities.TimeEntry(
        id=f"te-{entry_id}",
        project_id="p",
        task_id="t",
        user="u",
        spent_date=now().date(),
        hours=Decimal(str(wire["hours"])),
        approval_status=ApprovalStatus.APPROVED if wire["is_closed"] else ApprovalStatus.SUBMITTED,
        version=version_of(str(wire["updated_at"])),
        is_billed=bool(wire["is_billed"]),
        psa_id=str(entry_id),
    )


async def test_ledger_posting_status_queued_posted_reversed(graph: Graph, posting: Posting) -> None:
    flow = posting.flow
    since = await posting.psa_now()
    project = posting.project()
    entries = [int((await posting.entry(project))["id"]) for _ in range(3)]
    for entry_id in entries[:2]:
        await posting.approve(entry_id)
    await graph.data(SYNC, ADMIN, since=stamp(since), key="s-1")

    async def statuses() -> list[PostingStatus]:
        loaders = LedgerLoaders(flow.deps.sessionmaker)
        return await ledger_posting_statuses(loaders, [await entity(posting, i) for i in entries])

    assert await statuses() == [PostingStatus.QUEUED, PostingStatus.QUEUED, PostingStatus.NOT_READY]
    report = await posting.round(since)
    assert report.failed == 0
    assert await statuses() == [PostingStatus.POSTED, PostingStatus.POSTED, PostingStatus.NOT_READY]

    await posting.approve(entries[1], "reopen")  # unapproved while live: reversed by the next round
    await posting.round(since)
    assert await statuses() == [PostingStatus.POSTED, PostingStatus.REVERSED, PostingStatus.NOT_READY]
    async with flow.deps.sessionmaker.begin() as s:
        await ExceptionRepo(s).open(
            flow=POST_TIME, reason_code="PERIOD_CLOSED", subject=f"psa:time:{entries[0]}"
        )
    assert (await statuses())[0] is PostingStatus.EXCEPTION
