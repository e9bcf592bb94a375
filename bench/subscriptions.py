"""Subscription fan-out benchmark: 1,000 WebSocket subscribers across two gateway processes on PostgreSQL.

    .venv/bin/python bench/subscriptions.py [--subscribers 1000] [--rate 5] [--events 300] \\
        [--client-procs 8] [--no-baseline] [--compression] \\
        [--database-url postgresql+asyncpg://postgres@127.0.0.1:5432/test]

Everything runs as separate processes on 127.0.0.1 (free ports):

- a scratch PostgreSQL database (``CREATE DATABASE p2c_bench_<hex>`` next to ``--database-url``), migrated;
- two gateway processes (uvicorn, one worker each, the gateway app with ``Subscription`` in its schema),
  both on that store, each with its event bus (relay + LISTEN). Subscribers only need the bus, so the
  systems point at an unused port (no sandboxes, no backfill);
- ``--client-procs`` client processes of the ``websockets`` library holding ``--subscribers`` connections
  (8 by default: with 250 or 500 connections a process, its own event loop was the bottleneck),
  half on each gateway: ``connection_init`` with a token, ``subscribe`` to ``invoiceStatusChanged``;
- the producer (this process) commits ``--events`` outbox rows with ``OutboxRepo.add`` at ``--rate`` per
  second, one transaction each, with the billing payload contract of ``mutations.billing.events`` — what
  the ERP poller writes when it picks a change up. Each payload's ``correlation_id`` carries the wall-clock
  time just before its transaction started.

The default rate, 5 events/s, is a busy month-end: the 10,000-account firm of ``bench/backfill.py`` has
about 7,700 invoices a month; its bulk invoicing run plus the lockbox import of payments and the credit
memos is about 18,000 invoice and payment changes within an hour, i.e. 5 a second sustained, every one
of them pushed to every subscriber (the bench's subscribers all see every event: the worst case for
fan-out).

Two passes over the same setup (fresh database and gateways each): **shared** (the gateway as shipped:
one execution per subscription group per event, ``gateway.ws``) and, unless ``--no-baseline``, the
**per-subscriber** baseline (strawberry's own path: one execution per subscriber per event).

Printed per pass: the event rate; latency from that moment to delivery at the subscriber (p50/p95/p99/max
over every delivered message); messages lost (expected ``events × subscribers`` minus distinct
deliveries; the subscribers stop waiting once the producer is done and 10 s pass without a message),
duplicated, subscribers dropped; whether delivery keeps up (p50 of the first and the last tenth of the
events); the gateways' memory (RSS of both processes before the
subscribers connected and with them connected, per 1,000 subscribers) and their CPU time while the events
flowed, per delivery and per event per 1,000 subscribers (figures that contention on a shared machine does
not inflate the way it inflates latency); the subscriber processes' CPU per delivery (they run on the same
machine and compete with the gateways). Then the CPU ratio baseline/shared, per delivery (a baseline that
falls behind stops being measured when its subscribers give up, so per delivery is the fair unit).
Goal: 0 lost, p99 under 250 ms.

Subscribers do not negotiate permessage-deflate unless ``--compression`` (browsers do): compressing and
decompressing every small frame costs both sides CPU and each connection a zlib state. With
``P2C_BENCH_PROFILE=<dir>`` each gateway writes a cProfile of its run there.

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


def serve(port: int, shared: bool) -> None:
    """One gateway process (``--serve PORT``); settings from the environment."""
    import logging

    import uvicorn

    from gateway.graphql import GraphQLView

    GraphQLView.share_subscriptions = shared
    # Strawberry's own path logs a traceback for every subscriber that leaves mid-send (the baseline's
    # subscribers give up when it falls far behind): thousands of lines that say nothing new.
    logging.getLogger("strawberry.ws.task").setLevel(logging.CRITICAL)

    import resolvers.schema
    from resolvers.subscription import Subscription

    kwargs: Callable[[], dict[str, Any]] = getattr(resolvers.schema, "extend_schema_kwargs")  # noqa: B009
    if "subscription" not in kwargs():  # until resolvers.mutation wires it
        setattr(resolvers.schema, "extend_schema_kwargs", lambda: {**kwargs(), "subscription": Subscription})  # noqa: B010
    from gateway.app import create_app
    from gateway.settings import load_settings

    app = create_app(load_settings())
    profile = os.environ.get("P2C_BENCH_PROFILE")  # a directory: cProfile each gateway into it
    if not profile:
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
        return
    import cProfile
    import signal

    profiler = cProfile.Profile()

    def dump(*_: object) -> None:  # uvicorn re-raises SIGTERM once it has shut down
        profiler.disable()
        profiler.dump_stats(str(Path(profile) / f"gateway-{port}.prof"))
        os._exit(0)

    signal.signal(signal.SIGTERM, dump)
    profiler.runcall(uvicorn.run, app, host="127.0.0.1", port=port, log_level="warning")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_s(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    port: int, token: str, expected: int, ready: asyncio.Event, out: dict[str, Any]
) -> None:
    import websockets
    from websockets.typing import Subprotocol

    latencies: list[float] = out["latencies"]
    seen: set[str] = set()
    uri = f"ws://127.0.0.1:{port}/graphql"
    try:
        async with websockets.connect(
            uri,
            subprotocols=[Subprotocol(PROTOCOL)],
            ping_interval=None,
            open_timeout=60,
            max_queue=None,
            compression="deflate" if out["compression"] else None,
        ) as ws:
            await ws.send(
                json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
            )
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": QUERY}}))
            await ws.send(json.dumps({"type": "ping"}))
            assert json.loads(await ws.recv())["type"] == "pong"  # subscribed
            ready.set()
            while len(seen) < expected:
                # No timeout here (``wait_for`` costs a task per message): ``_clients`` cancels whoever
                # still waits once the producer is done and nothing came for ``quiet_s``.
                raw = await ws.recv()
                arrived = time.time()
                out["last"] = time.monotonic()
                message = json.loads(raw)
                if message.get("type") != "next":
                    out["errors"] += 1
                    continue
                event = message["payload"]["data"]["invoiceStatusChanged"]
                if event["eventId"] in seen:
                    out["duplicates"] += 1
                    continue
                seen.add(event["eventId"])
                latency = arrived - float(event["correlationId"].removeprefix("bench:"))
                latencies.append(latency)
                out["by_event"].setdefault(int(event["eventId"]), []).append(latency)
    except Exception as exc:  # a dropped subscriber counts as lost messages, and is reported
        out["dropped"] += 1
        out["drop_reasons"].append(f"{type(exc).__name__}: {exc}"[:120])
        ready.set()
    finally:  # also when cancelled for quiet: what did not come is lost
        out["delivered"] += len(seen)


async def _clients(
    ports: list[int], token: str, count: int, expected: int, compression: bool, pipe: Any
) -> None:
    out: dict[str, Any] = {
        "latencies": [], "delivered": 0, "duplicates": 0, "errors": 0, "dropped": 0, "drop_reasons": [],
        "quiet_s": 10.0, "compression": compression, "by_event": {}, "last": time.monotonic(),
    }  # fmt: skip
    readies = [asyncio.Event() for _ in range(count)]
    gate = asyncio.Semaphore(50)

    async def one(index: int) -> None:
        async with gate:
            task = asyncio.create_task(
                _subscriber(ports[index % len(ports)], token, expected, readies[index], out)
            )
            await readies[index].wait()
        await task

    tasks = [asyncio.create_task(one(i)) for i in range(count)]
    for ready in readies:
        await ready.wait()
    pipe.send("ready")
    await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # the producer finished
    out["last"] = max(out["last"], time.monotonic())
    while not all(task.done() for task in tasks):
        if time.monotonic() - out["last"] > out["quiet_s"]:
            for task in tasks:
                task.cancel()  # nothing came for a while: the rest is lost
            break
        await asyncio.sleep(0.5)
    await asyncio.gather(*tasks, return_exceptions=True)
    pipe.send(out)


def client_process(
    ports: list[int], token: str, count: int, expected: int, compression: bool, pipe: Any
) -> None:
    import uvloop  # the clients share the machine with the gateways: the cheapest loop there is

    uvloop.run(_clients(ports, token, count, expected, compression, pipe))


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
    passes = [True] if args.no_baseline else [True, False]
    cpu: dict[bool, float] = {}
    for shared in passes:
        cpu[shared] = run_pass(args, shared)
    if len(cpu) == 2 and cpu[True] > 0:
        print(
            "\ngateway CPU per delivery, per-subscriber baseline / shared: "
            f"{cpu[False]:.0f} / {cpu[True]:.0f} µs → {cpu[False] / cpu[True]:.1f}× less CPU shared"
        )
    return 0


def run_pass(args: argparse.Namespace, shared: bool) -> float:
    """One pass (fresh database, gateways and clients); the gateways' CPU µs per delivery."""
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
            command += [] if shared else ["--per-subscriber"]
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
            spawned = context.Process(
                target=client_process, args=(ports, token, share, args.events, args.compression, theirs)
            )
            spawned.start()
            clients.append((spawned, mine))
        for _, pipe in clients:
            assert pipe.recv() == "ready"
        connect_s = time.monotonic() - began
        time.sleep(1.0)
        after = [rss_mb(p.pid) for p in processes]
        print(f"\n== {'shared (one execution per group)' if shared else 'per-subscriber baseline'} ==")
        print(f"{args.subscribers} subscribers connected in {connect_s:.1f} s, {shares} per client process")

        client_pids = [client.pid for client, _ in clients if client.pid is not None]
        cpu_before = sum(cpu_s(p.pid) for p in processes)
        client_cpu_before = sum(cpu_s(pid) for pid in client_pids)
        asyncio.run(produce(url, args.events, args.rate))
        for _, pipe in clients:
            pipe.send("done")
        results = [pipe.recv() for _, pipe in clients]
        cpu_ms = (sum(cpu_s(p.pid) for p in processes) - cpu_before) * 1000
        client_ms = (sum(cpu_s(pid) for pid in client_pids) - client_cpu_before) * 1000
        return report(args, results, before, after, cpu_ms, client_ms)
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
    args: argparse.Namespace,
    results: list[dict[str, Any]],
    before: list[float],
    after: list[float],
    cpu_ms: float,
    client_ms: float,
) -> float:
    latencies = sorted(ms * 1000 for result in results for ms in result["latencies"])
    expected = args.events * args.subscribers
    delivered = sum(result["delivered"] for result in results)
    print(f"event rate: {args.rate:g}/s ({args.events} events; 5/s is a busy month-end, see --help)")
    print(f"deliveries: {expected} expected, {delivered} delivered")
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
    by_event: dict[int, list[float]] = {}
    for result in results:
        for event_id, values in result["by_event"].items():
            by_event.setdefault(event_id, []).extend(values)
    if len(by_event) >= 10:
        order = sorted(by_event)
        tenth = max(1, len(order) // 10)
        first = sorted(v * 1000 for e in order[:tenth] for v in by_event[e])
        last = sorted(v * 1000 for e in order[-tenth:] for v in by_event[e])
        print(
            f"keeping up? p50 latency of the first tenth of events {percentile(first, 50):.1f} ms, "
            f"of the last tenth {percentile(last, 50):.1f} ms"
        )
    for reason in sorted({reason for r in results for reason in r["drop_reasons"]})[:5]:
        print(f"  drop: {reason}")
    grown = sum(after) - sum(before)
    print(
        f"gateway RSS (MB): before {' + '.join(f'{v:.1f}' for v in before)}, "
        f"with subscribers {' + '.join(f'{v:.1f}' for v in after)} → "
        f"{grown / args.subscribers * 1000:.1f} MB per 1,000 subscribers"
    )
    per_event: float = cpu_ms / args.events * 1000 / args.subscribers
    per_delivery: float = cpu_ms * 1000 / max(delivered, 1)
    print(
        f"gateway CPU while events flowed: {cpu_ms / 1000:.1f} s → {per_delivery:.0f} µs per delivery, "
        f"{per_event:.1f} ms per event per 1,000 subscribers "
        f"({per_event * args.rate / 10:.0f}% of one core at {args.rate:g}/s per 1,000)"
    )
    print(
        f"subscriber processes' CPU (they share the machine): {client_ms / 1000:.1f} s → "
        f"{client_ms * 1000 / max(delivered, 1):.0f} µs per delivery"
        f"{', permessage-deflate on' if args.compression else ''}"
    )
    lost = expected - delivered
    p99 = percentile(latencies, 99) if latencies else float("inf")
    print(f"goal (0 lost, p99 < 250 ms): {'met' if lost == 0 and p99 < 250 else 'NOT met'}")
    return per_delivery


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument(
        "--rate",
        type=float,
        default=5.0,
        help="events per second (default 5: a busy month-end, ~18,000 invoice and payment changes an hour)",
    )
    parser.add_argument(
        "--client-procs",
        type=int,
        default=8,
        help="subscriber processes (default 8, 125 connections each: with 2-4 the subscribers' own event "
        "loops, not the gateways, set the latency)",
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the per-subscriber pass (one execution each)"
    )
    parser.add_argument(
        "--compression",
        action="store_true",
        help="subscribers negotiate permessage-deflate (browsers do; off by default so that the "
        "subscriber processes, which share this machine, cost less)",
    )
    parser.add_argument("--per-subscriber", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("P2C_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, shared=not args.per_subscriber)
        return 0
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
