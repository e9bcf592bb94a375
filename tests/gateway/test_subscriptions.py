"""Subscriptions over graphql-transport-ws and SSE, on SQLite (in-process bus) and PostgreSQL (LISTEN/NOTIFY).

Events are outbox rows committed the way the billing producer commits them (``OutboxRepo.add`` with the
``mutations.billing.events`` payload); the gateway's bus relays and delivers them.
"""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocketDisconnect

from canonical.principal import Role
from gateway.app import create_app
from gateway.graphql import GraphQLView
from gateway.settings import Settings, load_settings
from mutations.billing.events import PAYMENT_RECEIVED

with warnings.catch_warnings():
    # Starlette would rather have httpx2 behind its TestClient; httpx is what this project installs.
    warnings.simplefilter("ignore")
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


@pytest.fixture
def settings(scratch_database_url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    with_subscriptions(monkeypatch)
    # Subscriptions read only the store: the systems are never called (no sandboxes, no backfill).
    nowhere = {"base_url": "http://127.0.0.1:9"}
    return load_settings(database_url=scratch_database_url, crm=nowhere, psa=nowhere, erp=nowhere)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def connect(client: TestClient, token_value: str | None, **headers: str) -> Any:
    return client.websocket_connect("/graphql", subprotocols=[PROTOCOL], headers=headers)


def acked(ws: Any, token_value: str | None, **payload: Any) -> None:
    ws.send_json(init(token_value, **payload))
    assert ws.receive_json() == {"type": "connection_ack"}


def next_payload(ws: Any, operation_id: str = "1") -> dict[str, Any]:
    message = ws.receive_json()
    assert message["type"] == "next", message
    assert message["id"] == operation_id
    payload: dict[str, Any] = message["payload"]
    assert "errors" not in payload, payload
    data: dict[str, Any] = payload["data"]
    return data


def started(ws: Any, operation_id: str = "1") -> None:
    """A round trip after ``subscribe``: once the pong is back, the subscription is registered."""
    ws.send_json({"type": "ping"})
    assert ws.receive_json() == {"type": "pong"}


# --- delivery ------------------------------------------------------------------------------------------


def test_invoice_events_arrive_in_order(client: TestClient, settings: Settings) -> None:
    with connect(client, None) as ws:
        acked(ws, all_entities_token(settings))
        ws.send_json(subscribe("1", INVOICES, account="acct-1"))
        started(ws)
        ids = emit(
            settings.database_url,
            billing_payload(entity="US01", account="acct-1", number="INV-1", status="PARTIALLY_PAID"),
            billing_payload(entity="US01", account="acct-2", number="INV-X"),  # another account
            billing_payload(entity="US01", account="acct-1", number="INV-2", status="PAID"),
        )
        ids += emit(settings.database_url, billing_payload(entity="EU01", account="acct-1", number="INV-3"))
        got = [next_payload(ws)["invoiceStatusChanged"] for _ in range(3)]
        assert [event["eventId"] for event in got] == [str(ids[0]), str(ids[2]), str(ids[3])]
        assert [event["invoice"]["number"] for event in got] == ["INV-1", "INV-2", "INV-3"]
        assert got[0]["invoice"]["status"] == "PARTIALLY_PAID"
        assert got[0]["invoice"]["previousStatus"] == "OPEN"
        assert got[0]["invoice"]["amountRemaining"] == {"amount": "0.00", "currency": "USD"}
        assert got[0]["legalEntity"] == "US01" and got[0]["accountId"] == "acct-1"
        ws.send_json({"id": "1", "type": "complete"})


def test_events_of_other_legal_entities_are_never_sent(client: TestClient, settings: Settings) -> None:
    with connect(client, None) as ws:
        acked(ws, token(settings, ["US01"]))
        ws.send_json(subscribe("1", INVOICES))  # no filter: everything the caller may see
        ws.send_json(subscribe("2", INVOICES, entity="EU01"))  # asking for EU01 does not widen the scope
        started(ws)
        _eu, _no_entity, us = emit(
            settings.database_url,
            billing_payload(entity="EU01", account="acct-eu", number="INV-EU"),
            billing_payload(entity=None, account="acct-new", number="INV-UNLINKED"),
            billing_payload(entity="US01", account="acct-us", number="INV-US"),
        )
        first = next_payload(ws, "1")["invoiceStatusChanged"]
        assert first["eventId"] == str(us) and first["invoice"]["number"] == "INV-US"
        # Nothing for "2" came before the US01 event, and nothing else is on the wire.
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}


def test_payment_events_and_topic_separation(client: TestClient, settings: Settings) -> None:
    payment = billing_payload(entity="US01", account="acct-1", number="INV-9")
    payment["payment"] = {
        "id": "pay-1",
        "erpId": "901",
        "kind": "PAYMENT",
        "number": None,
        "date": "2026-12-02",
        "amount": {"amount": "365.00", "currency": "EUR"},
        "applied": {"amount": "400.00", "currency": "USD"},
    }
    query = """subscription {
      paymentReceived(accountId: "acct-1") { eventId payment { kind date amount { amount } } }
    }"""
    with connect(client, None) as ws:
        acked(ws, all_entities_token(settings))
        ws.send_json(subscribe("p", query))
        started(ws)
        emit(settings.database_url, billing_payload(entity="US01", account="acct-1", number="INV-8"))
        (paid,) = emit(settings.database_url, payment, topic=PAYMENT_RECEIVED)
        got = next_payload(ws, "p")["paymentReceived"]
        assert got == {
            "eventId": str(paid),
            "payment": {"kind": "PAYMENT", "date": "2026-12-02", "amount": {"amount": "365.00"}},
        }


def test_integration_events_are_for_operators(client: TestClient, settings: Settings) -> None:
    query = 'subscription { integrationEvents(flow: "billing") { eventId flow kind } }'
    with connect(client, None) as ws:
        acked(ws, token(settings, ["US01"], roles=(Role.SALES,)))
        ws.send_json(subscribe("1", query))
        message = ws.receive_json()
        assert message["type"] == "next"
        assert message["payload"]["errors"][0]["extensions"]["code"] == "FORBIDDEN"


# --- authentication --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        {"Authorization": "Bearer not-a-token"},
        {"token": "not-a-token"},
        {},  # no token at all, and none in the handshake either
    ],
)
def test_bad_token_is_refused_at_connection_init(client: TestClient, payload: dict[str, Any]) -> None:
    with connect(client, None) as ws:
        ws.send_json({"type": "connection_init", "payload": payload})
        with pytest.raises(WebSocketDisconnect) as refused:
            ws.receive_json()
    assert refused.value.code == 4403


def test_subscribe_before_connection_init_is_refused(client: TestClient) -> None:
    with connect(client, None) as ws:
        ws.send_json(subscribe("1", INVOICES))
        with pytest.raises(WebSocketDisconnect) as refused:
            ws.receive_json()
    assert refused.value.code == 4401


def test_token_field_and_handshake_header_are_accepted(client: TestClient, settings: Settings) -> None:
    with connect(client, None) as ws:
        acked(ws, None, token=all_entities_token(settings))
    header = {"authorization": f"Bearer {all_entities_token(settings)}"}
    with client.websocket_connect("/graphql", subprotocols=[PROTOCOL], headers=header) as ws:
        acked(ws, None)  # connection_init without a token: the handshake's header stands
        ws.send_json(subscribe("1", INVOICES))
        started(ws)
        (event,) = emit(settings.database_url, billing_payload(entity="US01", account="a", number="INV-H"))
        assert next_payload(ws)["invoiceStatusChanged"]["eventId"] == str(event)
    bad = {"authorization": "Bearer x"}
    # A bad header still refuses the handshake itself.
    with (
        pytest.raises(WebSocketDisconnect),
        client.websocket_connect("/graphql", subprotocols=[PROTOCOL], headers=bad),
    ):
        pass


# --- resume ------------------------------------------------------------------------------------------------


def test_resume_with_last_event_id_gets_exactly_the_missed_events(
    client: TestClient, settings: Settings
) -> None:
    url = settings.database_url
    seen, *missed = emit(
        url, *(billing_payload(entity="US01", account="acct-1", number=f"INV-{n}") for n in range(1, 5))
    )
    emit(url, billing_payload(entity="US01", account="acct-1", number="PAY"), topic=PAYMENT_RECEIVED)
    with connect(client, None) as ws:
        acked(ws, token(settings, ["US01"]))
        ws.send_json(subscribe("1", INVOICES, account="acct-1", after=str(seen)))
        replayed = [next_payload(ws)["invoiceStatusChanged"]["eventId"] for _ in missed]
        assert replayed == [str(event) for event in missed]
        (live,) = emit(url, billing_payload(entity="US01", account="acct-1", number="INV-LIVE"))
        after = next_payload(ws)["invoiceStatusChanged"]
        assert after["eventId"] == str(live)  # straight after the replay: no duplicate, no gap


# --- SSE ----------------------------------------------------------------------------------------------


async def sse_events(app: Starlette, path: str, headers: dict[str, str], wanted: int, url: str) -> list[str]:
    """Run one SSE request against the app (no socket), emit events once it is open, collect ``wanted``."""
    chunks: asyncio.Queue[bytes] = asyncio.Queue()
    disconnect = asyncio.Event()
    status: list[int] = []
    query_string = path.partition("?")[2].encode()
    route = path.partition("?")[0]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": route, "raw_path": route.encode(), "query_string": query_string, "root_path": "", "app": app,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()], "server": ("gateway", 80),
        "client": ("test", 1),
    }  # fmt: skip

    async def receive() -> dict[str, Any]:
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
        elif message["type"] == "http.response.body":
            await chunks.put(message.get("body", b""))

    async with app.router.lifespan_context(app):
        app.state.runtime  # noqa: B018 - started
        task = asyncio.create_task(app(scope, receive, send))
        text = (await asyncio.wait_for(chunks.get(), 10)).decode()
        assert status == [200] and text.startswith(": stream open")
        view = next(r.endpoint for r in app.routes if isinstance(r, WebSocketRoute))
        assert isinstance(view, GraphQLView)
        hub = view._hub
        assert hub is not None and hub.member_count == 1  # the stream joined a shared group (gateway.ws)
        await emit_async(url, [("invoice.status_changed", dict(p)) for p in PENDING])
        blocks: list[str] = []
        buffer = ""
        while len(blocks) < wanted:
            buffer += (await asyncio.wait_for(chunks.get(), 10)).decode()
            *done, buffer = buffer.split("\n\n")
            blocks += [block for block in done if block.startswith("id:")]
        disconnect.set()
        await asyncio.wait_for(task, 10)
        assert hub.groups == {}  # the client went away: its group with it
        return blocks


PENDING = [
    billing_payload(entity="EU01", account="acct-1", number="INV-EU"),
    billing_payload(entity="US01", account="acct-1", number="INV-A"),
    billing_payload(entity="US01", account="acct-1", number="INV-B"),
]


async def test_sse_streams_events_and_resumes_from_last_event_id(settings: Settings) -> None:
    query = "subscription { invoiceStatusChanged { eventId invoice { number } } }"
    path = "/graphql/stream?" + "query=" + query.replace(" ", "%20")
    headers = {"Authorization": f"Bearer {token(settings, ['US01'])}"}
    blocks = await sse_events(create_app(settings), path, headers, 2, settings.database_url)
    parsed = [dict(line.split(": ", 1) for line in block.splitlines()) for block in blocks]
    assert [block["event"] for block in parsed] == ["next", "next"]
    data = [json.loads(block["data"])["data"]["invoiceStatusChanged"] for block in parsed]
    assert [event["invoice"]["number"] for event in data] == ["INV-A", "INV-B"]
    assert [block["id"] for block in parsed] == [event["eventId"] for event in data]

    # Reconnecting with Last-Event-ID (what EventSource does) replays what came after it.
    resumed = await sse_events(
        create_app(settings), path, {**headers, "Last-Event-ID": parsed[0]["id"]}, 3, settings.database_url
    )
    numbers = [json.loads(dict(line.split(": ", 1) for line in b.splitlines())["data"]) for b in resumed]
    assert [n["data"]["invoiceStatusChanged"]["invoice"]["number"] for n in numbers] == [
        "INV-B",
        "INV-A",
        "INV-B",
    ]


def test_sse_without_token_is_401(client: TestClient) -> None:
    response = client.get("/graphql/stream", params={"query": INVOICES})
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
