"""Subscription fan-out benchmark: 1,000 WebSocket subscribers across two gateway processes on PostgreSQL.

    .venv/bin/python bench/subscriptions.py [--subscribers 1000] [--events 200] [--rate 10] \\
        [--client-procs 4] [--database-url postgresql+asyncpg://postgres@127.0.0.1:5432/test]

Everything runs as separate processes on 127.0.0.1 (free ports):

- a scratch PostgreSQL database (``CREATE DATABASE p2c_bench_<hex>`` next to ``--database-url``), migrated;
- two gateway processes (uvicorn, one worker each, the gateway app with ``Subscription`` in its schema),
  both on that store, each with its event bus (relay + LISTEN). Subscribers only need the bus, so the
  systems point at an unused port (no sandboxes, no backfill);
- ``--client-procs`` client processes of the ``websockets`` library holding ``--subscribers`` connections,
  half on each gateway: ``connection_init`` with a token, ``subscribe`` to ``invoiceStatusChanged``;
- the producer (this process) commits ``--events`` outbox rows with ``OutboxRepo.add`` at ``--rate`` per
  second, one transaction each, with the billing payload contract of ``mutations.billing.events`` — what
  the ERP poller writes when it picks a change up. Each payload's ``correlation_id`` carries the wall-clock
  time just before its transaction started.

Printed: latency from that moment to delivery at the subscriber (p50/p95/p99/max over every delivered
message), messages lost (expected ``events × subscribers`` minus distinct deliveries) and duplicated,
subscribers dropped, and the gateways' memory: RSS of both processes before the subscribers connected
and with them connected, per 1,000 subscribers. Goal: 0 lost, p99 under 250 ms.

All processes are stopped at the end, on error too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROTOCOL = "graphql-transport-ws"
QUERY = "subscription { invoiceStatusChanged { eventId correlationId } }"
NOWHERE = "http://127.0.0.1:9"


# --- the gateway processes ------------------------------------------------------------------------------


def serve(port: int) -> None:
    """One gateway process (``--serve PORT``); settings from the environment."""
    import uvicorn

    import resolvers.schema
    from resolvers.subscription import Subscription

    kwargs: Callable[[], dict[str, Any]] = getattr(resolvers.schema, "extend_schema_kwargs")  # noqa: B009
    if "subscription" not in kwargs():  # until resolvers.mutation wires it
        setattr(resolvers.schema, "extend_schema_kwargs", lambda: {**kwargs(), "subscription": Subscription})  # noqa: B010
    from gateway.app import create_app
    from gateway.settings import load_settings

    uvicorn.run(create_app(load_settings()), host="127.0.0.1", port=port, log_level="warning")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    import httpx

    async with httpx.AsyncClient() as client:
        for _ in range(600):
            if process.poll() is not None:
                raise RuntimeError(f"gateway on port {port} exited with {process.returncode}")
            try:
                if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError(f"gateway on port {port} did not start")


# --- subscribers --------------------------------------------------------------------------------------------


async def _subscriber(
    port: int, token: str, expected: int, ready: asyncio.Event, done: asyncio.Event, out: dict[str, Any]
) -> None:
    import websockets
    from websockets.typing import Subprotocol

    latencies: list[float] = out["latencies"]
    seen: set[str] = set()
    uri = f"ws://127.0.0.1:{port}/graphql"
    try:
        async with websockets.connect(
            uri, subprotocols=[Subprotocol(PROTOCOL)], ping_interval=None, open_timeout=60, max_queue=None
        ) as ws:
            await ws.send(
                json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
            )
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": QUERY}}))
            await ws.send(json.dumps({"type": "ping"}))
            assert json.loads(await ws.recv())["type"] == "pong"  # subscribed
            ready.set()
            last = time.monotonic()
            while len(seen) < expected:
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout=1.0)
                except TimeoutError:
                    if done.is_set() and time.monotonic() - last > out["quiet_s"]:
                        break  # the producer is done and nothing came for a while: the rest is lost
                    continue
                arrived = time.time()
                last = time.monotonic()
                message = json.loads(raw)
                if message.get("type") != "next":
                    out["errors"] += 1
                    continue
                event = message["payload"]["data"]["invoiceStatusChanged"]
                if event["eventId"] in seen:
                    out["duplicates"] += 1
                    continue
                seen.add(event["eventId"])
                latencies.append(arrived - float(event["correlationId"].removeprefix("bench:")))
    except Exception as exc:  # a dropped subscriber counts as lost messages, and is reported
        out["dropped"] += 1
        out["drop_reasons"].append(f"{type(exc).__name__}: {exc}"[:120])
        ready.set()
    out["delivered"] += len(seen)


async def _clients(ports: list[int], token: str, count: int, expected: int, pipe: Any) -> None:
    out: dict[str, Any] = {
        "latencies": [], "delivered": 0, "duplicates": 0, "errors": 0, "dropped": 0, "drop_reasons": [],
        "quiet_s": 10.0,
    }  # fmt: skip
    done = asyncio.Event()
    readies = [asyncio.Event() for _ in range(count)]
    gate = asyncio.Semaphore(50)

    async def one(index: int) -> None:
        async with gate:
            task = asyncio.create_task(
                _subscriber(ports[index % len(ports)], token, expected, readies[index], done, out)
            )
            await readies[index].wait()
        await task

    tasks = [asyncio.create_task(one(i)) for i in range(count)]
    for ready in readies:
        await ready.wait()
    pipe.send("ready")
    await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # the producer finished
    done.set()
    await asyncio.gather(*tasks)
    pipe.send(out)


def client_process(ports: list[int], token: str, count: int, expected: int, pipe: Any) -> None:
    asyncio.run(_clients(ports, token, count, expected, pipe))


# --- the producer -------------------------------------------------------------------------------------------


def billing_payload(number: int) -> dict[str, Any]:
    money = {"amount": "100.00", "currency": "USD"}
    return {
        "legal_entity": "US01",
        "account_id": f"acct-{number % 50}",
        "invoice": {
            "id": f"inv-{number}", "erpId": str(number), "number": f"INV-{number}", "status": "PAID",
            "previousStatus": "OPEN", "total": money, "amountPaid": money,
            "amountRemaining": {"amount": "0.00", "currency": "USD"}, "tranDate": "2026-11-30",
            "dueDate": "2026-12-30", "daysOverdue": 0,
        },
        "payment": None,
        "kind": None,
        "occurred_at": "2026-12-02T10:15:00.000Z",
        "correlation_id": "",
        "fingerprint": f"fp-{number}",
    }  # fmt: skip


async def produce(url: str, events: int, rate: float) -> None:
    from store.db import make_engine, make_sessionmaker
    from store.repositories import OutboxRepo

    engine = make_engine(url)
    sessionmaker = make_sessionmaker(engine)
    try:
        start = time.monotonic()
        for n in range(events):
            await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
            payload = billing_payload(n)
            payload["correlation_id"] = f"bench:{time.time():.6f}"
            async with sessionmaker.begin() as session:
                await OutboxRepo(session).add(
                    "invoice.status_changed", payload, key=payload["invoice"]["id"], legal_entity="US01"
                )
    finally:
        await engine.dispose()


async def admin(url: str, statement: str) -> None:
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.execute(sa.text(statement))
    finally:
        await engine.dispose()


# --- the run ----------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1] if len(values) > 1 else 0.0
    )


def run(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    from canonical.principal import ALL_ENTITIES, Role
    from gateway.auth import mint_dev_token
    from gateway.settings import load_settings
    from store.migrate import upgrade_to_head

    name = f"p2c_bench_{uuid.uuid4().hex[:12]}"
    url = make_url(args.database_url).set(database=name).render_as_string(hide_password=False)
    asyncio.run(admin(args.database_url, f'CREATE DATABASE "{name}"'))
    processes: list[subprocess.Popen[bytes]] = []
    clients: list[Any] = []
    try:
        upgrade_to_head(url)
        env = {
            **os.environ, "P2C_DATABASE_URL": url, "P2C_LOG_LEVEL": "WARNING",
            "P2C_CRM__BASE_URL": NOWHERE, "P2C_PSA__BASE_URL": NOWHERE, "P2C_ERP__BASE_URL": NOWHERE,
        }  # fmt: skip
        ports = [free_port(), free_port()]
        for port in ports:
            command = [sys.executable, str(Path(__file__).resolve()), "--serve", str(port)]
            processes.append(subprocess.Popen(command, cwd=ROOT, env=env))
        asyncio.run(_ready(ports, processes))
        time.sleep(1.0)
        before = [rss_mb(p.pid) for p in processes]

        settings = load_settings(database_url=url)
        assert settings.jwt_secret is not None
        token = mint_dev_token(
            settings.jwt_secret, "bench", [Role.FINANCE], [ALL_ENTITIES],
            audience=settings.jwt_audience, issuer=settings.jwt_issuer,
        )  # fmt: skip
        context = mp.get_context("spawn")
        shares = [args.subscribers // args.client_procs] * args.client_procs
        shares[0] += args.subscribers - sum(shares)
        began = time.monotonic()
        for share in shares:
            mine, theirs = context.Pipe()
            spawned = context.Process(target=client_process, args=(ports, token, share, args.events, theirs))
            spawned.start()
            clients.append((spawned, mine))
        for _, pipe in clients:
            assert pipe.recv() == "ready"
        connect_s = time.monotonic() - began
        time.sleep(1.0)
        after = [rss_mb(p.pid) for p in processes]
        print(f"{args.subscribers} subscribers connected in {connect_s:.1f} s, {shares} per client process")

        asyncio.run(produce(url, args.events, args.rate))
        for _, pipe in clients:
            pipe.send("done")
        results = [pipe.recv() for _, pipe in clients]
        report(args, results, before, after)
        return 0
    finally:
        for client, _ in clients:
            client.join(timeout=30)
            if client.is_alive():
                client.kill()
        for gateway in processes:
            gateway.terminate()
        for gateway in processes:
            try:
                gateway.wait(timeout=10)
            except subprocess.TimeoutExpired:
                gateway.kill()
        asyncio.run(admin(args.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _ready(ports: list[int], processes: list[subprocess.Popen[bytes]]) -> None:
    await asyncio.gather(*(wait_ready(port, process) for port, process in zip(ports, processes, strict=True)))


def report(
    args: argparse.Namespace, results: list[dict[str, Any]], before: list[float], after: list[float]
) -> None:
    latencies = sorted(ms * 1000 for result in results for ms in result["latencies"])
    expected = args.events * args.subscribers
    delivered = sum(result["delivered"] for result in results)
    print(f"events: {args.events} at {args.rate:g}/s → {expected} expected deliveries, {delivered} delivered")
    if latencies:
        print(
            "latency pick-up → delivery (ms): "
            f"p50 {percentile(latencies, 50):.1f}  p95 {percentile(latencies, 95):.1f}  "
            f"p99 {percentile(latencies, 99):.1f}  max {latencies[-1]:.1f}"
        )
    print(
        f"lost: {expected - delivered}  duplicates: {sum(r['duplicates'] for r in results)}  "
        f"errors: {sum(r['errors'] for r in results)}  "
        f"dropped subscribers: {sum(r['dropped'] for r in results)}"
    )
    for reason in sorted({reason for r in results for reason in r["drop_reasons"]})[:5]:
        print(f"  drop: {reason}")
    grown = sum(after) - sum(before)
    print(
        f"gateway RSS (MB): before {' + '.join(f'{v:.1f}' for v in before)}, "
        f"with subscribers {' + '.join(f'{v:.1f}' for v in after)} → "
        f"{grown / args.subscribers * 1000:.1f} MB per 1,000 subscribers"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0, help="events per second")
    parser.add_argument("--client-procs", type=int, default=4)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("P2C_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
