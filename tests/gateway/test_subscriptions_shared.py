"""Shared subscriptions (``gateway.ws``): one execution per group, permissions and resume unchanged.

Groups are keyed by document, variables (without the resume point) and the principal's roles and legal
entities; these tests hold several connections at once and check what each receives, how many groups
the process holds and how many times a group executed.
"""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from starlette.routing import WebSocketRoute

from canonical.principal import Role
from gateway.app import create_app
from gateway.bus import CHANNEL, EventBus, asyncpg_dsn, notice_event
from gateway.graphql import GraphQLView
from gateway.settings import Settings, load_settings
from gateway.ws import OVERFLOW, Frame, Group, SubscriptionHub, plan_subscription
from resolvers.types.events import INTEGRATION_EVENT, INVOICE_STATUS_CHANGED
from store.db import make_engine, make_sessionmaker
from store.migrate import upgrade_to_head

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette would rather have httpx2 behind its TestClient
    from starlette.testclient import TestClient

from tests.gateway.test_subscriptions_support import (
    INVOICES,
    PROTOCOL,
    all_entities_token,
    billing_payload,
    emit,
    emit_async,
    init,
    subscribe,
    token,
    with_subscriptions,
)

OPERATORS = 'subscription { integrationEvents(flow: "billing") { eventId flow } }'


@pytest.fixture
def settings(scratch_database_url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    with_subscriptions(monkeypatch)
    nowhere = {"base_url": "http://127.0.0.1:9"}
    return load_settings(database_url=scratch_database_url, crm=nowhere, psa=nowhere, erp=nowhere)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def hub_of(client: TestClient) -> SubscriptionHub:
    view = next(r.endpoint for r in client.app.routes if isinstance(r, WebSocketRoute))  # type: ignore[attr-defined]
    assert isinstance(view, GraphQLView) and view._hub is not None
    return view._hub


def connect(client: TestClient) -> Any:
    return client.websocket_connect("/graphql", subprotocols=[PROTOCOL])


def acked(ws: Any, token_value: str) -> None:
    ws.send_json(init(token_value))
    assert ws.receive_json() == {"type": "connection_ack"}


def quiet(ws: Any) -> None:
    """Nothing else is on the wire: a ping's pong comes next."""
    ws.send_json({"type": "ping"})
    assert ws.receive_json() == {"type": "pong"}


def event_ids(ws: Any, count: int, field: str = "invoiceStatusChanged", operation: str = "1") -> list[str]:
    ids: list[str] = []
    for _ in range(count):
        message = ws.receive_json()
        assert message["type"] == "next" and message["id"] == operation, message
        assert "errors" not in message["payload"], message
        ids.append(message["payload"]["data"][field]["eventId"])
    return ids


# --- one execution per group ----------------------------------------------------------------------------


def test_subscribers_with_the_same_operation_and_scope_share_one_execution(
    client: TestClient, settings: Settings
) -> None:
    url = settings.database_url
    with connect(client) as first, connect(client) as second, connect(client) as third:
        for ws, operation in ((first, "a"), (second, "b"), (third, "c")):
            acked(ws, all_entities_token(settings))
            ws.send_json(subscribe(operation, INVOICES, account="acct-1"))
            quiet(ws)
        hub = hub_of(client)
        (group,) = hub.groups.values()
        assert len(group.members) == 3
        ids = emit(
            url, *(billing_payload(entity="US01", account="acct-1", number=f"S-{n}") for n in range(4))
        )
        for ws, operation in ((first, "a"), (second, "b"), (third, "c")):
            assert event_ids(ws, 4, operation=operation) == [str(i) for i in ids]  # in order, each once
        assert group.executions == 4  # once per event, not once per subscriber
        first.send_json({"id": "a", "type": "complete"})
        quiet(first)
        assert len(group.members) == 2
    # Everyone gone: the group stops and is forgotten.
    assert hub.groups == {}


def test_groups_split_by_legal_entity_and_nothing_crosses(client: TestClient, settings: Settings) -> None:
    url = settings.database_url
    with connect(client) as us, connect(client) as eu:
        acked(us, token(settings, ["US01"]))
        acked(eu, token(settings, ["EU01"]))
        for ws in (us, eu):
            ws.send_json(subscribe("1", INVOICES))  # the same document and variables
            quiet(ws)
        assert len(hub_of(client).groups) == 2
        us_event, eu_event, _unlinked = emit(
            url,
            billing_payload(entity="US01", account="acct-us", number="US-1"),
            billing_payload(entity="EU01", account="acct-eu", number="EU-1"),
            billing_payload(entity=None, account="acct-new", number="NONE-1"),
        )
        assert event_ids(us, 1) == [str(us_event)]
        assert event_ids(eu, 1) == [str(eu_event)]
        quiet(us)
        quiet(eu)


def test_groups_split_by_role_so_operator_only_fields_stay_refused(
    client: TestClient, settings: Settings
) -> None:
    url = settings.database_url
    with connect(client) as finance, connect(client) as sales:
        acked(finance, token(settings, ["US01"]))
        finance.send_json(subscribe("1", OPERATORS))
        quiet(finance)
        # Same document, same entities, another role: not the finance group.
        acked(sales, token(settings, ["US01"], roles=(Role.SALES,)))
        sales.send_json(subscribe("1", OPERATORS))
        refused = sales.receive_json()
        assert refused["type"] == "next"
        assert refused["payload"]["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert sales.receive_json() == {"id": "1", "type": "complete"}
        (event,) = emit(
            url, billing_payload(entity="US01", account="a", number="OP-1"), topic=INTEGRATION_EVENT
        )
        assert event_ids(finance, 1, field="integrationEvents") == [str(event)]
        quiet(sales)


def test_complete_right_after_subscribe_leaves_no_group_behind(
    client: TestClient, settings: Settings
) -> None:
    with connect(client) as ws:
        acked(ws, all_entities_token(settings))
        for operation in ("1", "2", "3"):
            ws.send_json(subscribe(operation, INVOICES))
            ws.send_json({"id": operation, "type": "complete"})
        quiet(ws)
        hub = hub_of(client)
        assert hub.groups == {} or all(not group.members for group in hub.groups.values())
        ws.send_json(subscribe("4", INVOICES))
        quiet(ws)
        (event,) = emit(settings.database_url, billing_payload(entity="US01", account="a", number="C-1"))
        assert event_ids(ws, 1, operation="4") == [str(event)]
        (group,) = hub.groups.values()
        assert len(group.members) == 1 and group.executions == 1


# --- resume -----------------------------------------------------------------------------------------------


def test_resume_joins_a_live_group_after_replaying_with_no_gap_and_no_duplicate(
    client: TestClient, settings: Settings
) -> None:
    url = settings.database_url
    with connect(client) as live, connect(client) as returning:
        acked(live, all_entities_token(settings))
        live.send_json(subscribe("1", INVOICES, account="acct-1"))
        quiet(live)
        seen, *missed = emit(
            url, *(billing_payload(entity="US01", account="acct-1", number=f"R-{n}") for n in range(3))
        )
        assert event_ids(live, 3) == [str(seen), *map(str, missed)]
        acked(returning, all_entities_token(settings))
        returning.send_json(subscribe("1", INVOICES, account="acct-1", after=str(seen)))
        assert event_ids(returning, 2) == [str(event) for event in missed]
        (group,) = hub_of(client).groups.values()  # the resume point is not part of the key
        assert len(group.members) == 2
        (latest,) = emit(url, billing_payload(entity="US01", account="acct-1", number="R-live"))
        assert event_ids(returning, 1) == [str(latest)]
        assert event_ids(live, 1) == [str(latest)]
        quiet(returning)


def test_a_literal_last_event_id_still_resumes_on_the_private_path(
    client: TestClient, settings: Settings
) -> None:
    url = settings.database_url
    seen, missed = emit(
        url, *(billing_payload(entity="US01", account="a", number=f"L-{n}") for n in range(2))
    )
    query = f'subscription {{ invoiceStatusChanged(lastEventId: "{seen}") {{ eventId }} }}'
    with connect(client) as ws:
        acked(ws, all_entities_token(settings))
        ws.send_json(subscribe("1", query))
        assert event_ids(ws, 1) == [str(missed)]
        assert hub_of(client).groups == {}


def test_a_resume_point_that_is_not_an_id_is_refused(client: TestClient, settings: Settings) -> None:
    with connect(client) as ws:
        acked(ws, all_entities_token(settings))
        ws.send_json(subscribe("1", INVOICES, after="yesterday"))
        message = ws.receive_json()
        assert message["type"] == "next"
        assert message["payload"]["errors"][0]["extensions"]["code"] == "VALIDATION_FAILED"


def test_sharing_off_runs_one_execution_per_subscriber(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(GraphQLView, "share_subscriptions", False)
    with TestClient(create_app(settings)) as client, connect(client) as ws:
        acked(ws, all_entities_token(settings))
        ws.send_json(subscribe("1", INVOICES))
        quiet(ws)
        (event,) = emit(settings.database_url, billing_payload(entity="US01", account="a", number="OFF"))
        assert event_ids(ws, 1) == [str(event)]
        view = next(r.endpoint for r in client.app.routes if isinstance(r, WebSocketRoute))  # type: ignore[attr-defined]
        assert isinstance(view, GraphQLView) and view._hub is None


# --- what may be shared, and a slow member ------------------------------------------------------------------


def test_plans() -> None:
    plan = plan_subscription(INVOICES, {"account": "a", "after": "41"}, None)
    assert plan is not None and plan.resume == 41 and dict(plan.variables) == {"account": "a"}
    same = plan_subscription(INVOICES, {"after": "7", "account": "a"}, None)
    assert same is not None and same.variables_key == plan.variables_key  # the resume point is not in it
    assert plan_subscription(INVOICES, {"after": 5}, None).resume == 5  # type: ignore[union-attr]
    assert plan_subscription(INVOICES, {"after": "x"}, None) is None  # the resolver's error, privately
    assert (
        plan_subscription('subscription { invoiceStatusChanged(lastEventId: "3") { eventId } }', {}, None)
        is None
    )
    assert (
        plan_subscription(
            "subscription($a: ID!) { invoiceStatusChanged(lastEventId: $a) { eventId } }", {}, None
        )
        is None
    )
    assert plan_subscription("query { __typename }", None, None) is None
    assert plan_subscription("subscription {", None, None) is None
    assert plan_subscription(INVOICES, None, "Other") is None  # no such operation
    assert plan_subscription(INVOICES, ["not", "an", "object"], None) is None
    assert plan_subscription(INVOICES + "#" * 10_000, None, None) is None  # long: private, not cached


async def test_a_slow_member_is_dropped_and_told_to_reconnect(scratch_database_url: str) -> None:
    engine = make_engine(scratch_database_url)
    try:
        bus = EventBus(make_sessionmaker(engine), scratch_database_url, queue_size=2)
        hub = SubscriptionHub(schema=None, bus=bus)  # type: ignore[arg-type]
        plan = plan_subscription(INVOICES, {}, None)
        assert plan is not None
        group = Group(hub, ("q", None, "{}", (frozenset(), frozenset(), True)), plan, None, None)  # type: ignore[arg-type]
        slow, fast = (hub_member(group) for _ in range(2))
        for event_id in (1, 2):
            group._publish(Frame("next", event_id, {}, "{}"))
            fast.queue.get_nowait()
        group._publish(Frame("next", 3, {}, "{}"))  # slow's queue holds 1 and 2: full
        assert slow not in group.members and fast in group.members
        assert slow.dropped and slow.queue.get_nowait() is OVERFLOW and slow.queue.empty()
        assert fast.queue.get_nowait().event_id == 3
    finally:
        await engine.dispose()


def hub_member(group: Group) -> Any:
    from gateway.ws import Member

    member = Member(asyncio.Queue(group.hub.queue_size))
    group.members.add(member)
    return member


# --- the bus: rows carried by notices ----------------------------------------------------------------------


async def test_notices_that_follow_the_watermark_are_dispatched_without_reading_the_outbox(
    scratch_database_url: str,
) -> None:
    url = scratch_database_url
    first, second, third = await emit_async(
        url,
        [
            (INVOICE_STATUS_CHANGED, dict(billing_payload(entity="US01", account="a", number=f"N-{n}")))
            for n in range(3)
        ],
    )
    engine = make_engine(url)
    try:
        bus = EventBus(make_sessionmaker(engine), url)
        dispatched: list[int] = []
        bus._dispatch = lambda event: dispatched.append(event.id)  # type: ignore[method-assign]
        bus._watermark = first - 1

        bus._notified(None, 0, CHANNEL, notice(first, "US01"))
        assert await bus.drain(store=False) == 1
        assert dispatched == [first] and bus.stats.from_notices == 1 and bus.stats.store_reads == 0

        bus._notified(None, 0, CHANNEL, notice(third, "US01"))  # the notice of `second` never came
        assert await bus.drain(store=False) == 2
        assert dispatched == [first, second, third] and bus.stats.store_reads == 1  # the gap: read

        bus._notified(None, 0, CHANNEL, notice(second, "US01"))  # late, and already dispatched
        assert await bus.drain(store=False) == 0 and dispatched == [first, second, third]

        bus._read_store = False
        bus._notified(None, 0, CHANNEL, str(third))  # the relay's notice: an id, not a row
        assert bus._read_store
    finally:
        await engine.dispose()


def notice(event_id: int, entity: str) -> str:
    row = {"id": event_id, "topic": INVOICE_STATUS_CHANGED, "key": "k", "legal_entity": entity,
           "payload": {"account_id": "a", "legal_entity": entity}}  # fmt: skip
    return json.dumps(row)


def test_notice_rows_are_parsed_or_refused() -> None:
    event = notice_event(notice(7, "EU01"))
    assert event is not None and (event.id, event.topic, event.legal_entity, event.key) == (
        7, INVOICE_STATUS_CHANGED, "EU01", "k",
    )  # fmt: skip
    assert event.payload == {"account_id": "a", "legal_entity": "EU01"}
    for other in ("", "41", "{not json", '{"id": true, "topic": "t"}', '{"id": 3}', '["x"]', None):
        assert notice_event(other) is None


async def test_postgres_add_notifies_the_row_itself(pg_scratch_url: str) -> None:
    url = pg_scratch_url
    upgrade_to_head(url)
    received: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await listener.add_listener(CHANNEL, lambda _c, _pid, _channel, payload: received.put_nowait(payload))
        payload = dict(billing_payload(entity="EU01", account="acct-9", number="PG-1"))
        (event_id,) = await emit_async(url, [(INVOICE_STATUS_CHANGED, payload)])
        event = notice_event(await asyncio.wait_for(received.get(), 5))
        assert event is not None and event.id == event_id and event.legal_entity == "EU01"
        assert event.payload == payload and event.key == "inv-PG-1"

        big = dict(payload, padding="x" * 9000)  # too big for a notice: announced empty, read from the outbox
        await emit_async(url, [(INVOICE_STATUS_CHANGED, big)])
        assert await asyncio.wait_for(received.get(), 5) == ""
    finally:
        await listener.close()
