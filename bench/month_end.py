"""Month-end spike: tens of thousands of approved PSA entries posted to the ERP by worker processes.

    python bench/month_end.py --entries 50000 --workers 2 [--database-url postgresql+asyncpg://...]

- Sandboxes: the three vendors as processes (``p2c sandbox serve``, state files in a temp directory),
  seeded with a demo firm generated large enough that its current month (November 2026, nothing of it in
  the ERP yet) holds at least ``--entries`` approved entries (3.44 per account: 50,000 → 14,600
  accounts). Seeding the firm is the fastest honest way to get them: they are ordinary PSA entries,
  approved the way the PSA approves them. Harvest's rate limit (100 requests / 15 s) is lifted on the
  PSA sandbox and in the connector for the run. The ERP keeps NetSuite's concurrency cap of 15 and
  answers each request 50 ms late: a ceiling of cap / latency = 300 requests/s.
- Store: PostgreSQL with ``--database-url``, else a SQLite file — and then one worker only, since SQLite
  claims from one process at a time. Projects are linked PSA ↔ ERP as backfill links them; the time
  cursor starts at the first of the month.
- One poller process reads the month from the PSA and queues every approved entry with the poller's own
  ``enqueue_entries`` (in chunks: see ``role_poll`` for why not ``TimeEntryPoller.poll`` itself).
  Then ``--workers`` processes run ``gateway.worker.Worker`` with the gateway's own handlers on
  ``post_time`` items (``--batch`` per claim, ``--lanes`` batches in hand at once) until the queue is
  empty. The cap is account-wide, so the workers share it as ``p2c worker --erp-slots 15`` does
  (``gateway.worker_share``): the workers holding posting claims split the 15 slots (8 + 7), re-divided
  at every claim.
- Measured: entries/s from the first claim to the last batch recorded, ERP requests (the sandbox's
  counters), duplicates and missing entries (SuiteQL over the time bills vs the PSA's approved set),
  peak RSS of each worker (``VmHWM``). Beside it, in the same run, a naive sequential poster: one entry
  at a time, one ERP request each (``--sample`` entries, extrapolated) — it only writes, with every
  lookup done for it, so it is a generous baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MONTH = datetime(2026, 11, 1, tzinfo=UTC)
SEED = 7
PER_ACCOUNT = 3.44  # approved current-month entries per account in the demo firm
CAP, LATENCY_MS = 15, 50
MEMORY_LIMIT_MB = 500
CLI = "from gateway.cli import app; app()"


# -- processes --------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2C_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


PIDS: dict[str, int] = {}  # sandbox process ids by system, for their CPU time


@contextmanager
def sandboxes(state: Path, accounts: int) -> Iterator[dict[str, str]]:
    procs: list[subprocess.Popen[bytes]] = []
    urls: dict[str, str] = {}
    faults: dict[str, dict[str, Any]] = {
        "crm": {},
        "psa": {"limits": {"rate_limit_requests": None}},  # Harvest's limit lifted for the bench
        "erp": {"latency_ms": LATENCY_MS, "limits": {"concurrency_cap": CAP}},
    }
    try:
        for system in faults:
            port = _free_port()
            args = ["sandbox", "serve", system, "--port", str(port), "--db", str(state / f"{system}.db")]
            args += ["--seed", str(SEED), "--accounts", str(accounts)]
            log = open(state / f"{system}.log", "wb")  # noqa: SIM115 — closed with the process
            procs.append(
                subprocess.Popen([sys.executable, "-c", CLI, *args], env=_env(), stdout=log, stderr=log)
            )
            urls[system] = f"http://127.0.0.1:{port}"
            PIDS[system] = procs[-1].pid
        deadline = time.monotonic() + 300
        for system, url in urls.items():
            while True:
                try:
                    httpx.put(f"{url}/__sandbox/faults", json=faults[system]).raise_for_status()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                        raise
                    time.sleep(0.2)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def gateway_env(urls: dict[str, str], database_url: str, **extra: str) -> dict[str, str]:
    return _env(
        P2C_DATABASE_URL=database_url,
        P2C_CRM__BASE_URL=urls["crm"],
        P2C_PSA__BASE_URL=urls["psa"],
        P2C_ERP__BASE_URL=urls["erp"],
        P2C_PSA__RATE_LIMIT_REQUESTS="0",
        P2C_LOG_LEVEL="WARNING",
        **extra,
    )


# -- the roles run in child processes ---------------------------------------------------------------------
def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def role_poll() -> dict[str, Any]:
    """What ``TimeEntryPoller.poll`` does, with its own ``enqueue_entries``, in chunks of 10,000 entries:
    the poller itself passes every unapproved entry of the window to one ``IN (...)`` query
    (``PostingRepo.heads``), which PostgreSQL refuses past 32,767 parameters — a month of a firm this
    size has ~34,000 unapproved entries."""
    from gateway.settings import Settings
    from gateway.worker import open_flow_deps
    from mutations.posting.intake import enqueue_entries
    from mutations.posting.model import TIME

    started = time.perf_counter()
    queued = 0
    async with open_flow_deps(Settings()) as deps:
        records = [dict(r) async for page in deps.psa.time_entries(updated_since=MONTH) for r in page]
        for at in range(0, len(records), 10_000):
            async with deps.sessionmaker.begin() as session:
                queued += len(
                    await enqueue_entries(
                        session,
                        TIME,
                        records[at : at + 10_000],
                        clock=deps.clock,
                        trigger={"trigger": "bench"},
                    )
                )
    return {
        "read": len(records),
        "queued": queued,
        "seconds": time.perf_counter() - started,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _percentiles(lags: list[float]) -> dict[str, float]:
    ordered = sorted(lags) or [float("nan")]
    return {
        "mean": sum(ordered) / len(ordered) * 1000,
        "p50": ordered[len(ordered) // 2] * 1000,
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
    }


async def role_work(batch: int, lanes: int) -> dict[str, Any]:
    import sqlalchemy as sa

    from gateway.settings import Settings
    from gateway.worker import Worker, default_handlers, erp_share, open_flow_deps
    from mutations.time_posting import POST_TIME, PostingCaches

    async with open_flow_deps(Settings()) as deps:
        handlers = {POST_TIME: default_handlers(deps, caches=PostingCaches())[POST_TIME]}
        worker = Worker(deps.sessionmaker, handlers, batch=batch, shared=[erp_share(deps, CAP)])
        cpu_at_start = time.process_time()
        first: float | None = None
        last = time.time()
        open_items = sa.text(
            "SELECT count(*) FROM work_items WHERE kind = 'post_time' AND status IN ('QUEUED', 'CLAIMED')"
        )

        async def lane() -> None:  # what ``Worker.run`` does per lane, until the queue is empty
            nonlocal first, last
            while True:
                claimed_at = time.time()
                if await worker.process_batch():
                    first = claimed_at if first is None else min(first, claimed_at)
                    last = time.time()
                    continue
                async with deps.sessionmaker() as session:
                    if not (await session.execute(open_items)).scalar_one():
                        return
                await asyncio.sleep(0.2)  # items held by another worker, or retries not yet due

        share = worker.shared[0]
        samples: list[tuple[int, int]] = []  # (requests in flight, this worker's slots) every 10 ms
        lags: list[float] = []  # how late each 10 ms sleep woke: the event loop's lag behind its I/O

        async def sample() -> None:
            while True:
                if first is not None:
                    samples.append((share.limit.stats.in_flight, share.limit.limit))
                asleep = time.perf_counter()
                await asyncio.sleep(0.01)
                if first is not None:
                    lags.append(time.perf_counter() - asleep - 0.01)

        sampling = asyncio.create_task(sample())
        requests_before = share.limit.stats.requests
        await asyncio.gather(*(lane() for _ in range(lanes)))
        sampling.cancel()
        requests = share.limit.stats.requests - requests_before
    report = worker.report
    in_flight = sum(n for n, _ in samples) / max(len(samples), 1)
    return {
        # Little's law: mean in flight = request rate × time a request holds its slot
        "in_flight": in_flight,
        "slots": sum(n for _, n in samples) / max(len(samples), 1),
        "lag_ms": _percentiles(lags),
        "slot_ms": in_flight / (requests / (last - first)) * 1000 if first and requests else float("nan"),
        "first": first,
        "last": last,
        "done": report.done,
        "retried": report.retried,
        "failed": report.failed,
        "lost": report.lost,
        "peak_rss_mb": _peak_rss_mb(),
        "cpu_s": time.process_time(),
        "work_cpu_s": time.process_time() - cpu_at_start,
    }


# -- the bench --------------------------------------------------------------------------------------------
async def _prepare_store(database_url: str, accounts: int) -> None:
    from mutations.identity import PROJECT, project_canonical_id
    from mutations.intake import format_stamp
    from mutations.posting.intake import TIME_CURSOR
    from store.db import make_engine, make_sessionmaker
    from store.migrate import upgrade_to_head
    from store.repositories import CrossReferenceRepo, CursorRepo
    from store.repositories.xrefs import XrefLink
    from subgraphs.demo import generate_firm

    await asyncio.to_thread(upgrade_to_head, database_url)
    firm = await asyncio.to_thread(generate_firm, SEED, accounts)
    links: list[XrefLink] = []
    for p in firm.projects:
        canonical = project_canonical_id(p.erp_job_id)
        links += [
            XrefLink(canonical, PROJECT, "erp", str(p.erp_job_id)),
            XrefLink(canonical, PROJECT, "psa", str(p.psa_project_id)),
        ]
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine).begin() as session:
            await CrossReferenceRepo(session).link_many(links)
            await CursorRepo(session).set(TIME_CURSOR, format_stamp(MONTH))
    finally:
        await engine.dispose()


async def _child(urls: dict[str, str], database_url: str, *args: str, **env: str) -> Any:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        *args,
        env=gateway_env(urls, database_url, **env),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{args[0]} exited {proc.returncode}:\n{err.decode()[-3000:]}")
    return json.loads(out.decode().strip().splitlines()[-1])


async def _counters(url: str, reset: bool = False) -> int:
    async with httpx.AsyncClient(base_url=url) as admin:
        total = int((await admin.get("/__sandbox/counters")).json()["total"])
        if reset:
            await admin.delete("/__sandbox/counters")
        return total


async def _over_cap(url: str) -> int:
    """Requests the sandbox refused with 429 for being over its concurrency cap."""
    async with httpx.AsyncClient(base_url=url) as admin:
        return int((await admin.get("/__sandbox/counters")).json()["rejected"].get("cap", 0))


async def _check(urls: dict[str, str]) -> dict[str, Any]:
    """Duplicates and missing: the ERP's approved time bills of external id psa:* vs the PSA's approved
    entries of the month (each entry's approved version)."""
    from subgraphs.erp.client import ErpClient
    from subgraphs.erp.config import ErpConfig
    from subgraphs.psa.client import PsaClient
    from subgraphs.psa.config import PsaConfig
    from subgraphs.psa.mapping import version_of

    psa = PsaClient.from_config(PsaConfig(base_url=urls["psa"], rate_limit_requests=0))
    erp = ErpClient.from_config(ErpConfig(base_url=urls["erp"], max_concurrency=CAP))
    try:
        approved = {
            f"psa:{e['id']}:v{version_of(str(e['updated_at']))}"
            async for page in psa.time_entries(updated_since=MONTH)
            for e in page
            if e.get("is_closed")
        }
        rows = await erp.suiteql(
            "SELECT id, externalid, hours, rate FROM timebill "
            "WHERE externalid LIKE 'psa:%' AND approvalstatus = 'approved' ORDER BY id"
        )
        sample = rows[:: max(1, len(rows) // 1000)]
    finally:
        await psa.aclose()
        await erp.aclose()
    posted: dict[str, int] = {}
    for row in rows:
        posted[str(row["externalid"])] = posted.get(str(row["externalid"]), 0) + 1
    return {
        "approved": len(approved),
        "posted": len(rows),
        "duplicates": sum(n - 1 for n in posted.values()),
        "missing": len(approved - set(posted)),
        "stray": len(set(posted) - approved),
        "sample": sample,
    }


async def _naive(urls: dict[str, str], rows: list[dict[str, Any]], sample: int) -> tuple[int, float, int]:
    """One entry at a time, one ERP request each: re-post ``sample`` of the gateway's time bills under
    their own external ids (``naive:<entry>``), sequentially."""
    from subgraphs.erp.client import ErpClient
    from subgraphs.erp.config import ErpConfig

    erp = ErpClient.from_config(ErpConfig(base_url=urls["erp"], max_concurrency=1))
    try:
        full = await erp.suiteql(
            "SELECT id, employee, customer, item, trandate, hours, rate FROM timebill "
            f"WHERE id IN ({', '.join(str(r['id']) for r in rows[:sample])}) ORDER BY id"
        )
        await erp.ping()  # the token outside the clock
        await _counters(urls["erp"], reset=True)
        started = time.perf_counter()
        for row in full:
            body = {
                "employee": {"id": str(row["employee"])},
                "customer": {"id": str(row["customer"])},
                "item": {"id": str(row["item"])},
                "tranDate": str(row["trandate"]),
                "hours": float(row["hours"]),
                "rate": float(row["rate"]),
                "approvalStatus": "approved",
            }
            await erp.upsert("timeBill", f"naive:{row['id']}", body)
        elapsed = time.perf_counter() - started
    finally:
        await erp.aclose()
    return len(full), elapsed, await _counters(urls["erp"])


async def bench(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    workers = args.workers
    accounts = args.accounts or math.ceil(args.entries / PER_ACCOUNT * 1.01)
    state = Path(tempfile.mkdtemp(prefix="p2c-month-end-"))
    database_url = args.database_url or f"sqlite+aiosqlite:///{state / 'store.db'}"
    if args.database_url is None and workers != 1:
        print(f"store: SQLite claims from one process at a time — 1 worker, not {workers}")
        workers = 1
    store_kind = "PostgreSQL" if database_url.startswith("postgresql") else "SQLite"
    print(
        f"firm: {accounts} accounts (seed {SEED}); store: {store_kind}; workers: {workers}; "
        f"batch: {args.batch}; ERP: latency {LATENCY_MS} ms, cap {CAP} "
        f"→ ceiling {CAP * 1000 // LATENCY_MS}/s; "
        f"ERP slots shared by the busy workers: {CAP} "
        f"({' + '.join(str(CAP // workers + (i < CAP % workers)) for i in range(workers))})"
    )
    try:
        prepared = asyncio.create_task(_prepare_store(database_url, accounts))
        with sandboxes(state, accounts) as urls:
            await prepared
            print(f"setup: sandboxes seeded and store prepared in {time.perf_counter() - started:.0f} s")
            poll = await _child(urls, database_url, "--role", "poll")
            print(
                f"poll: {poll['read']} entries read, {poll['queued']} queued in {poll['seconds']:.1f} s "
                f"(peak RSS {poll['peak_rss_mb']:.0f} MB)"
            )
            await _counters(urls["erp"], reset=True)
            erp_cpu = _cpu_s(PIDS["erp"])
            env = {"P2C_ERP__MAX_CONCURRENCY": str(CAP)}  # each worker's share: see role_work
            role = ["--role", "work", "--batch", str(args.batch), "--lanes", str(args.lanes)]
            results = await asyncio.gather(
                *(_child(urls, database_url, *role, **env) for _ in range(workers))
            )
            requests = await _counters(urls["erp"])
            over_cap = await _over_cap(urls["erp"])
            erp_cpu = _cpu_s(PIDS["erp"]) - erp_cpu
            check = await _check(urls)
            naive_n, naive_s, naive_requests = await _naive(urls, check["sample"], args.sample)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    firsts = [r["first"] for r in results if r["first"] is not None]
    seconds = max(r["last"] for r in results) - min(firsts) if firsts else float("nan")
    done = sum(r["done"] for r in results)
    rate = done / seconds
    ceiling = CAP * 1000 / LATENCY_MS
    naive_rate = naive_n / naive_s
    peak = max(r["peak_rss_mb"] for r in results)
    print(f"\n{'run':<44} {'entries':>8} {'seconds':>9} {'entries/s':>10} {'ERP requests':>13}")
    print(
        f"{'gateway workers (' + str(workers) + ' × batch ' + str(args.batch) + ')':<44} "
        f"{done:>8} {seconds:>9.1f} {rate:>10.1f} {requests:>13}"
    )
    print(
        f"{'naive sequential (sample ' + str(naive_n) + ')':<44} {naive_n:>8} {naive_s:>9.1f} "
        f"{naive_rate:>10.1f} {naive_requests:>13}"
    )
    print(f"{'naive, extrapolated':<44} {done:>8} {done / naive_rate:>9.0f} {naive_rate:>10.1f} {done:>13}")
    for i, r in enumerate(results):
        print(
            f"worker {i}: {r['done']} done, {r['retried']} retried, {r['failed']} failed, {r['lost']} lost, "
            f"peak RSS {r['peak_rss_mb']:.0f} MB, CPU {r['cpu_s']:.1f} s; ERP slots {r['slots']:.1f}, "
            f"{r['in_flight']:.1f} in flight on average, {r['slot_ms']:.1f} ms per request in its slot; "
            f"event-loop lag mean {r['lag_ms']['mean']:.1f} ms, p99 {r['lag_ms']['p99']:.1f} ms"
        )
    print(
        f"ERP: {requests} requests for {done} entries ({requests / max(done, 1):.3f} per entry), "
        f"{over_cap} refused over the cap (429)"
    )
    worker_cpu = sum(r["work_cpu_s"] for r in results)
    print(
        f"CPU per entry: workers {worker_cpu * 1000 / max(done, 1):.2f} ms (after start-up), "
        f"ERP sandbox {erp_cpu * 1000 / max(requests, 1):.2f} ms per request"
    )
    print(
        f"PSA approved {check['approved']}, ERP approved time bills {check['posted']}: "
        f"duplicates {check['duplicates']}, missing {check['missing']}, stray {check['stray']}"
    )
    ratio = rate / ceiling
    print(
        f"ratio to the ERP's ceiling (cap {CAP} / {LATENCY_MS} ms = {ceiling:.0f}/s): {ratio:.2f}; "
        f"{rate / naive_rate:.0f}x the naive poster"
    )
    goals = [
        (f"throughput >= 0.8 of the ceiling ({ratio:.2f})", ratio >= 0.8),
        (f"0 duplicates ({check['duplicates']})", check["duplicates"] == 0),
        (f"0 missing ({check['missing']})", check["missing"] == 0 and check["approved"] >= args.entries),
        (
            f"peak RSS < {MEMORY_LIMIT_MB} MB per process "
            f"({peak:.0f} MB, poller {poll['peak_rss_mb']:.0f} MB)",
            peak < MEMORY_LIMIT_MB and poll["peak_rss_mb"] < MEMORY_LIMIT_MB,
        ),
    ]
    for name, ok in goals:
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    print(f"bench: {time.perf_counter() - started:.0f} s in all")
    return 0 if all(ok for _, ok in goals) else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--lanes", type=int, default=2, help="batches in hand per worker at once")
    parser.add_argument("--sample", type=int, default=200, help="entries the naive poster posts")
    parser.add_argument("--accounts", type=int, default=None, help="firm size (default: from --entries)")
    parser.add_argument("--database-url", default=None, help="PostgreSQL store (default: a SQLite file)")
    parser.add_argument("--role", choices=("poll", "work"), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "poll":
        print(json.dumps(asyncio.run(role_poll())))
    elif args.role == "work":
        from gateway.runtime.loop import run  # the loop `p2c worker` runs on

        print(json.dumps(run(role_work(args.batch, args.lanes))))
    else:
        sys.exit(asyncio.run(bench(args)))


if __name__ == "__main__":
    main()
