"""Fan-out across gateway processes on PostgreSQL, and the bus's backpressure.

Two uvicorn processes share one store. A subscriber holds a WebSocket on process A, whose bus only
listens (no relay, no safety poll worth the name); an event committed to the outbox by a third process is
relayed by process B (``NOTIFY p2c_events``) and must reach the subscriber on A — nothing but
LISTEN/NOTIFY connects them.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
import websockets

from gateway.bus import EventBus, SubscriberTooSlow
from gateway.settings import load_settings
from resolvers.types.events import BusEvent
from store.db import make_engine, make_sessionmaker
from store.migrate import upgrade_to_head
from tests.gateway.test_subscriptions_support import (
    INVOICES,
    PROTOCOL,
    all_entities_token,
    billing_payload,
    emit_async,
    init,
    subscribe,
)

ROOT = Path(__file__).resolve().parents[2]

# The gateway app with Subscription in its schema; "listen-only" turns this process's relay off.
LAUNCH = """
import functools, sys
import uvicorn
import resolvers.schema
from resolvers.subscription import Subscription
kwargs = resolvers.schema.extend_schema_kwargs
if "subscription" not in kwargs():
    resolvers.schema.extend_schema_kwargs = lambda: {**kwargs(), "subscription": Subscription}
import gateway.runtime
if sys.argv[2] == "listen-only":
    gateway.runtime.EventBus = functools.partial(gateway.runtime.EventBus, relay=False, safety_poll_s=3600)
from gateway.app import create_app
from gateway.settings import load_settings
uvicorn.run(create_app(load_settings()), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            if process.poll() is not None:
                raise RuntimeError(f"gateway on port {port} exited with {process.returncode}")
            try:
                if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError(f"gateway on port {port} did not start")


@pytest.fixture
def pg_store(pg_scratch_url: str) -> str:
    upgrade_to_head(pg_scratch_url)
    return pg_scratch_url


@pytest.fixture
async def gateways(pg_store: str) -> AsyncIterator[Callable[[str], tuple[int, subprocess.Popen[bytes]]]]:
    """``start(mode) → (port, process)``: a gateway process on the shared store; all stopped afterwards."""
    processes: list[subprocess.Popen[bytes]] = []
    nowhere = "http://127.0.0.1:9"
    env = {
        **os.environ,
        "P2C_DATABASE_URL": pg_store,
        "P2C_CRM__BASE_URL": nowhere,
        "P2C_PSA__BASE_URL": nowhere,
        "P2C_ERP__BASE_URL": nowhere,
        "PYTHONPATH": str(ROOT),
    }

    def start(mode: str) -> tuple[int, subprocess.Popen[bytes]]:
        port = free_port()
        process = subprocess.Popen([sys.executable, "-c", LAUNCH, str(port), mode], cwd=ROOT, env=env)
        processes.append(process)
        return port, process

    try:
        yield start
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.mark.postgres
@pytest.mark.slow
async def test_a_subscriber_on_process_a_gets_an_event_relayed_by_process_b(
    pg_store: str, gateways: Callable[[str], tuple[int, subprocess.Popen[bytes]]]
) -> None:
    (port_a, process_a), (port_b, process_b) = gateways("listen-only"), gateways("relay")
    await asyncio.gather(wait_ready(port_a, process_a), wait_ready(port_b, process_b))
    settings = load_settings(database_url=pg_store)
    async with websockets.connect(f"ws://127.0.0.1:{port_a}/graphql", subprotocols=[PROTOCOL]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps(init(all_entities_token(settings))))
        assert json.loads(await ws.recv()) == {"type": "connection_ack"}
        await ws.send(json.dumps(subscribe("1", INVOICES)))
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv()) == {"type": "pong"}

        payload = billing_payload(entity="US01", account="acct-1", number="INV-XPROC")
        began = time.monotonic()
        (event_id,) = await emit_async(pg_store, [("invoice.status_changed", dict(payload))])
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        elapsed = time.monotonic() - began
    assert message["type"] == "next"
    event = message["payload"]["data"]["invoiceStatusChanged"]
    assert event["eventId"] == str(event_id) and event["invoice"]["number"] == "INV-XPROC"
    assert elapsed < 3, f"{elapsed:.2f} s: not delivered by NOTIFY (process A polls once an hour)"


# --- backpressure ------------------------------------------------------------------------------------------


async def test_a_subscriber_too_slow_is_dropped_with_bounded_memory(scratch_database_url: str) -> None:
    engine = make_engine(scratch_database_url)
    bus = EventBus(make_sessionmaker(engine), scratch_database_url, queue_size=3, relay=False)
    await bus.start()
    overflowed: list[bool] = []
    try:
        slow = bus.subscribe(
            topics=frozenset({"invoice.status_changed"}),
            accept=lambda _: True,
            on_overflow=lambda: overflowed.append(True),
        )
        first = asyncio.ensure_future(anext(slow))  # registers the subscriber, then waits for an event
        await asyncio.sleep(0)
        payloads = [billing_payload(entity="US01", account="a", number=f"INV-{n}") for n in range(6)]
        await emit_async(scratch_database_url, [("invoice.status_changed", dict(p)) for p in payloads])
        await bus.drain()
        event: BusEvent = await first
        assert event.payload["invoice"]["number"] == "INV-0"
        assert overflowed == [True] and bus.subscriber_count == 0 and bus.stats.dropped_subscribers == 1
        with pytest.raises(SubscriberTooSlow):
            await anext(slow)
    finally:
        await bus.close()
        await engine.dispose()
