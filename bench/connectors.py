"""Connector throughput against the sandboxes over real HTTP.

    python bench/connectors.py [--accounts 10000] [--sample 300]

Builds each sandbox with the demo firm, serves it on uvicorn (127.0.0.1, a free port, a background thread)
and reads through the connector; as the naive baseline in the same run it reads ``--sample`` records one
by one and extrapolates to all of them.

- PSA: every time entry through ``PsaClient`` (cursor paging, 2000 per page) against
  ``GET /v2/time_entries/{id}``. Harvest's rate limit (100 / 15 s) is lifted in the sandbox for the run —
  with it, the naive read of 130k entries alone would take 5.5 hours.
- ERP: every invoice through ``ErpClient.suiteql_pages`` (offset paging, 1000 rows per page) against
  ``GET /record/v1/invoice/{id}``. NetSuite's limits stay on (the sandbox's concurrency cap of 15, the
  connector's own of 10); the token is fetched before the clock starts, so requests count data calls only.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from subgraphs.common.sandbox import Limits, SandboxOptions
from subgraphs.erp import sandbox as erp_sandbox
from subgraphs.erp.client import ErpClient
from subgraphs.erp.config import ErpConfig
from subgraphs.erp.queries import INVOICE_COLUMNS
from subgraphs.psa import sandbox as psa_sandbox
from subgraphs.psa.client import PsaClient
from subgraphs.psa.config import PsaConfig

Row = tuple[str, int, float, int]  # run, records, seconds, requests


@contextmanager
def serve(app: Any) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


async def _requests(base_url: str) -> int:
    async with httpx.AsyncClient(base_url=base_url) as admin:
        total = (await admin.get("/__sandbox/counters")).json()["total"]
        await admin.delete("/__sandbox/counters")
        return int(total)


async def naive(
    system: str, base_url: str, ids: Sequence[object], sample: int, fetch: Callable[[Any], Awaitable[object]]
) -> list[Row]:
    """``sample`` records spread over ``ids``, read one request each, in turn; then extrapolated."""
    step = max(1, len(ids) // sample)
    picked = ids[::step][:sample]
    started = time.perf_counter()
    for record_id in picked:
        await fetch(record_id)
    elapsed = time.perf_counter() - started
    requests = await _requests(base_url)
    per_record = elapsed / max(1, len(picked))
    return [
        (f"{system} naive one-by-one (sample {len(picked)})", len(picked), elapsed, requests),
        (f"{system} naive, extrapolated", len(ids), per_record * len(ids), len(ids)),
    ]


async def bench_psa(accounts: int, sample: int) -> list[Row]:
    started = time.perf_counter()
    app = psa_sandbox.create_app(SandboxOptions(accounts=accounts, limits=Limits()))
    print(f"psa sandbox: {accounts} accounts seeded in {time.perf_counter() - started:.1f}s")
    with serve(app) as base_url:
        config = PsaConfig(base_url=base_url, rate_limit_requests=0)  # limits lifted on both sides
        async with PsaClient.from_config(config) as client:
            await _requests(base_url)
            started = time.perf_counter()
            ids = [e["id"] async for page in client.time_entries() for e in page]
            elapsed = time.perf_counter() - started
            rows = [("psa connector (paged 2000)", len(ids), elapsed, await _requests(base_url))]
            return rows + await naive("psa", base_url, ids, sample, client.time_entry)


async def bench_erp(accounts: int, sample: int) -> list[Row]:
    started = time.perf_counter()
    app = erp_sandbox.create_app(SandboxOptions(seed=7, accounts=accounts))
    print(f"erp sandbox: {accounts} accounts seeded in {time.perf_counter() - started:.1f}s")
    with serve(app) as base_url:
        config = ErpConfig(base_url=base_url)
        async with ErpClient.from_config(config) as client:
            await client.ping()  # fetches the token outside the timed runs
            await _requests(base_url)
            query = f"SELECT {INVOICE_COLUMNS} FROM transaction WHERE type = 'CustInvc' ORDER BY id"
            started = time.perf_counter()
            ids = [row["id"] async for page in client.suiteql_pages(query) for row in page.items]
            elapsed = time.perf_counter() - started
            page_size = config.page_size
            rows = [(f"erp connector (suiteql {page_size})", len(ids), elapsed, await _requests(base_url))]

            async def invoice(invoice_id: object) -> object:
                return await client.get("invoice", str(invoice_id))

            return rows + await naive("erp", base_url, ids, sample, invoice)


def ratio(system: str, rows: Sequence[Row]) -> str:
    connector, _, baseline = rows
    return (
        f"{system} connector vs naive: {baseline[2] / connector[2]:.0f}x faster, "
        f"{baseline[3] / max(1, connector[3]):.0f}x fewer requests"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--sample", type=int, default=300)
    args = parser.parse_args()
    started = time.perf_counter()
    psa = asyncio.run(bench_psa(args.accounts, args.sample))
    erp = asyncio.run(bench_erp(args.accounts, args.sample))
    print(f"\n{'run':<40} {'records':>9} {'seconds':>9} {'records/s':>11} {'requests':>9}")
    for name, records, seconds, requests in psa + erp:
        print(f"{name:<40} {records:>9} {seconds:>9.2f} {records / seconds:>11.0f} {requests:>9}")
    print(f"\n{ratio('psa', psa)}\n{ratio('erp', erp)}")
    print(f"bench: {time.perf_counter() - started:.0f}s in all")


if __name__ == "__main__":
    main()
