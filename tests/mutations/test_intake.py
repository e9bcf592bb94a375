"""CRM change events → inbox → ``provision`` work; the SystemModstamp poller converging on the same queue.

The CRM sandbox is real (in-process); "sales" changes come through a second connector with another client
name, so they are not our echoes. Runs on SQLite and PostgreSQL (``sessionmaker``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from canonical.errors import ValidationFailed
from mutations.identity import PROJECT, provisioned_project_canonical_id
from mutations.intake import Outcome, ProvisionRequest, format_stamp, handle_crm_event, normalise_stamp
from mutations.pollers import OPPORTUNITY_CURSOR, OpportunityPoller
from store.db import make_engine, make_sessionmaker
from store.models import InboxEvent, WorkItem
from store.repositories import CrossReferenceRepo, CursorRepo
from subgraphs.common.sandbox import SandboxOptions
from subgraphs.crm.client import CrmClient
from subgraphs.crm.config import CrmConfig
from subgraphs.crm.sandbox import create_app
from subgraphs.crm.wire import ChangeEvent

Sessions = async_sessionmaker[AsyncSession]


@dataclass(frozen=True)
class Deps:
    crm: CrmClient
    sessionmaker: Sessions
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


@pytest.fixture
def crm_app() -> Starlette:
    return create_app(SandboxOptions(accounts=5))


@pytest.fixture
async def crm(crm_app: Starlette) -> AsyncIterator[CrmClient]:
    client = CrmClient.from_config(CrmConfig(), httpx.ASGITransport(crm_app))
    yield client
    await client.aclose()


@pytest.fixture
async def sales(crm_app: Starlette) -> AsyncIterator[CrmClient]:
    """Someone else's integration (a person in the CRM UI, say): its writes are not our echoes."""
    client = CrmClient.from_config(CrmConfig(client_name="sales-ui"), httpx.ASGITransport(crm_app))
    yield client
    await client.aclose()


@pytest.fixture
def deps(crm: CrmClient, sessionmaker: Sessions) -> Deps:
    return Deps(crm, sessionmaker)


async def open_opportunity(crm: CrmClient) -> str:
    records = await crm.query_all("SELECT Id FROM Opportunity WHERE IsClosed = FALSE ORDER BY Id LIMIT 1")
    return str(records[0]["Id"])


async def change(crm: CrmClient, by: CrmClient, opportunity_id: str, **fields: Any) -> ChangeEvent:
    """Write as ``by`` and return the change event the write produced."""
    latest = await crm.events_since(0, limit=1000)
    after = latest[-1]["replayId"] if latest else 0
    await by.update("Opportunity", opportunity_id, fields)
    (event,) = await crm.events_since(after)
    return event


async def inbox_rows(sessionmaker: Sessions) -> list[InboxEvent]:
    async with sessionmaker() as session:
        return list((await session.execute(sa.select(InboxEvent))).scalars())


async def work_items(sessionmaker: Sessions) -> list[WorkItem]:
    async with sessionmaker() as session:
        return list((await session.execute(sa.select(WorkItem).order_by(WorkItem.id))).scalars())


async def stamp_of(crm: CrmClient, opportunity_id: str) -> str:
    (record,) = await crm.opportunities_by_ids([opportunity_id])
    stamp = normalise_stamp(record["SystemModstamp"])
    assert stamp is not None
    return stamp


# --- the webhook's half: handle_crm_event ------------------------------------------------------------


async def test_closed_won_queues_one_provision_item(deps: Deps, crm: CrmClient, sales: CrmClient) -> None:
    opportunity = await open_opportunity(crm)
    event = await change(crm, sales, opportunity, StageName="Closed Won")

    result = await handle_crm_event(deps, event, source="crm", correlation_id="c-42")

    assert result.outcome is Outcome.ACCEPTED
    assert result.opportunities == [opportunity]
    (item,) = await work_items(deps.sessionmaker)
    assert item.kind == "provision"
    assert item.dedupe_key == f"provision:{opportunity}:{await stamp_of(crm, opportunity)}"
    assert item.payload["opportunity_id"] == opportunity
    assert item.payload["correlation_id"] == "c-42"
    assert result.queued == [item.id]
    (row,) = await inbox_rows(deps.sessionmaker)
    assert (row.source, row.source_event_id, row.status) == ("crm", str(event["replayId"]), "PROCESSED")


async def test_duplicate_event_is_one_inbox_row_and_one_item(
    deps: Deps, crm: CrmClient, sales: CrmClient
) -> None:
    event = await change(crm, sales, await open_opportunity(crm), StageName="Closed Won")

    first = await handle_crm_event(deps, event, source="crm")
    again = await handle_crm_event(deps, event, source="crm")

    assert (first.outcome, again.outcome) == (Outcome.ACCEPTED, Outcome.DUPLICATE)
    assert again.queued == []
    assert len(await inbox_rows(deps.sessionmaker)) == 1
    assert len(await work_items(deps.sessionmaker)) == 1


async def test_our_own_write_is_an_echo_recorded_and_ignored(deps: Deps, crm: CrmClient) -> None:
    event = await change(crm, crm, await open_opportunity(crm), StageName="Closed Won")

    result = await handle_crm_event(deps, event, source="crm")

    assert result.outcome is Outcome.IGNORED_ECHO
    assert [row.status for row in await inbox_rows(deps.sessionmaker)] == ["IGNORED"]
    assert await work_items(deps.sessionmaker) == []


async def test_open_deal_changes_and_other_objects_queue_nothing(
    deps: Deps, crm: CrmClient, sales: CrmClient
) -> None:
    opportunity = await open_opportunity(crm)
    amount = await handle_crm_event(deps, await change(crm, sales, opportunity, Amount=1234), source="crm")
    (account,) = await crm.query_all("SELECT Id FROM Account ORDER BY Id LIMIT 1")
    before = (await crm.events_since(0))[-1]["replayId"]
    await sales.update("Account", str(account["Id"]), {"Industry": "Retail"})
    (account_event,) = await crm.events_since(before)
    other = await handle_crm_event(deps, account_event, source="crm")

    assert (amount.outcome, amount.queued) == (Outcome.ACCEPTED, [])
    assert other.outcome is Outcome.IGNORED
    assert await work_items(deps.sessionmaker) == []
    assert sorted(row.status for row in await inbox_rows(deps.sessionmaker)) == ["IGNORED", "PROCESSED"]


async def test_changes_to_a_won_or_provisioned_deal_reach_the_flow(
    deps: Deps, crm: CrmClient, sales: CrmClient
) -> None:
    opportunity = await open_opportunity(crm)
    await handle_crm_event(deps, await change(crm, sales, opportunity, StageName="Closed Won"), source="crm")
    amended = await handle_crm_event(deps, await change(crm, sales, opportunity, Amount=99000), source="crm")
    async with deps.sessionmaker.begin() as session:  # what provisioning leaves behind
        project = provisioned_project_canonical_id(opportunity)
        await CrossReferenceRepo(session).link(project, PROJECT, "erp", "9001")
    reopened = await handle_crm_event(
        deps, await change(crm, sales, opportunity, StageName="Prospecting"), source="crm"
    )

    assert amended.opportunities == [opportunity] and len(amended.queued) == 1
    assert reopened.opportunities == [opportunity] and len(reopened.queued) == 1
    assert len({item.dedupe_key for item in await work_items(deps.sessionmaker)}) == 3


async def test_not_a_change_event_is_refused_and_nothing_stored(deps: Deps) -> None:
    with pytest.raises(ValidationFailed):
        await handle_crm_event(deps, {"hello": "world"}, source="crm")
    with pytest.raises(ValidationFailed):
        await handle_crm_event(deps, {"replayId": 1, "payload": {}}, source="crm")
    assert await inbox_rows(deps.sessionmaker) == []


def test_stamps_normalise_to_one_spelling() -> None:
    spelled = {
        normalise_stamp("2026-03-31T12:00:00.250+0000"),
        normalise_stamp("2026-03-31T14:00:00.250+02:00"),
        normalise_stamp("2026-03-31T12:00:00.250Z"),
        normalise_stamp(int(datetime(2026, 3, 31, 12, 0, 0, 250_000, tzinfo=UTC).timestamp() * 1000)),
    }
    assert spelled == {"2026-03-31T12:00:00.250Z"}
    assert normalise_stamp("yesterday") is None and normalise_stamp(None) is None
    assert ProvisionRequest("006X", "2026-03-31T12:00:00.250Z").dedupe_key == (
        "provision:006X:2026-03-31T12:00:00.250Z"
    )


# --- the poller's half ------------------------------------------------------------------------------


async def test_poller_picks_up_a_closed_won_change_and_advances_its_cursor(
    deps: Deps, crm: CrmClient, sales: CrmClient
) -> None:
    poller = OpportunityPoller(deps, lag=timedelta(seconds=60))
    quiet = await poller.poll()  # first round: anchors the cursor at now, nothing queued
    opportunity = await open_opportunity(crm)
    await sales.update("Opportunity", opportunity, {"StageName": "Closed Won"})

    found = await poller.poll()
    again = await poller.poll()

    assert quiet.queued == []
    assert found.cursor_before == quiet.cursor_after
    stamp = await stamp_of(crm, opportunity)
    # The newest stamp seen, but never past our clock (the demo firm has records stamped in the future).
    assert stamp <= found.cursor_after <= format_stamp(datetime.now(UTC))
    (item,) = await work_items(deps.sessionmaker)
    assert found.queued == [item.id]
    assert item.dedupe_key == f"provision:{opportunity}:{stamp}"
    assert item.payload["trigger"] == "crm.opportunities"
    # The lag window re-reads it; the dedupe key makes that a no-op.
    assert again.read >= 1 and again.queued == [] and again.cursor_after >= found.cursor_after
    async with deps.sessionmaker() as session:
        assert await CursorRepo(session).get(OPPORTUNITY_CURSOR) == again.cursor_after


async def test_poller_and_webhook_for_one_change_queue_one_item(
    deps: Deps, crm: CrmClient, sales: CrmClient
) -> None:
    poller = OpportunityPoller(deps, start=datetime.now(UTC) - timedelta(minutes=5))
    event = await change(crm, sales, await open_opportunity(crm), StageName="Closed Won")

    polled = await poller.poll()
    hooked = await handle_crm_event(deps, event, source="crm")

    assert len(polled.queued) == 1 and hooked.outcome is Outcome.ACCEPTED and hooked.queued == []
    assert len(await work_items(deps.sessionmaker)) == 1


async def test_cursor_stays_when_the_enqueue_rolls_back(
    deps: Deps, crm: CrmClient, sales: CrmClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    poller = OpportunityPoller(deps, start=datetime.now(UTC) - timedelta(minutes=5))
    await sales.update("Opportunity", await open_opportunity(crm), {"StageName": "Closed Won"})

    async def broken(*args: Any, **kwargs: Any) -> list[int]:
        raise RuntimeError("store fell over mid-enqueue")

    monkeypatch.setattr("mutations.pollers.enqueue_provisions", broken)
    with pytest.raises(RuntimeError):
        await poller.poll()
    async with deps.sessionmaker() as session:
        assert await CursorRepo(session).get(OPPORTUNITY_CURSOR) is None


async def test_webhook_and_poller_racing_on_a_real_database_queue_once(
    scratch_database_url: str, crm: CrmClient, sales: CrmClient
) -> None:
    engine = make_engine(scratch_database_url)
    try:
        deps = Deps(crm, make_sessionmaker(engine))
        poller = OpportunityPoller(deps, start=datetime.now(UTC) - timedelta(minutes=5))
        event = await change(crm, sales, await open_opportunity(crm), StageName="Closed Won")

        polled, hooked = await asyncio.gather(poller.poll(), handle_crm_event(deps, event, source="crm"))

        assert len(polled.queued) + len(hooked.queued) == 1
        assert len(await work_items(deps.sessionmaker)) == 1
    finally:
        await engine.dispose()
