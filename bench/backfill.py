"""Day-one backfill against the three sandboxes, in-process, on SQLite and (optionally) PostgreSQL.

    python bench/backfill.py [--accounts 10000] [--database-url postgresql+asyncpg://...] [--sample 2000]

Builds the CRM, PSA and ERP sandboxes with the demo firm (served through ``httpx.ASGITransport``, no
sockets) and runs ``backfill`` twice on a fresh store: the first run writes every cross-reference and
exception, the second finds everything in place and writes nothing. SQLite always (a file in a temporary
directory); PostgreSQL when ``--database-url`` is given: a scratch database ``p2c_bench_<hex>`` is created
next to the one named, migrated to head and dropped at the end.

As the baseline in the same run, the store's cross-references are then emptied and ``--sample`` of the
first run's links (spread over all of them) are written one ``CrossReferenceRepo.link()`` call each, in
transactions of 1,000 like backfill's batches — the path backfill used before ``link_many`` — and the time
is extrapolated to every link of the first run. The same sample written again (every call a no-op) shows
what a second run cost per link. ``link_many`` over the same sample is timed for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from starlette.applications import Starlette

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mutations.backfill import BackfillReport, backfill
from store.db import make_engine, make_sessionmaker
from store.migrate import upgrade_to_head
from store.models import CrossReference
from store.repositories import CrossReferenceRepo
from subgraphs.common.config import RetryConfig
from subgraphs.common.sandbox import SandboxAdmin, SandboxOptions
from subgraphs.crm.client import CrmClient
from subgraphs.crm.config import CrmConfig
from subgraphs.crm.sandbox import create_app as crm_app
from subgraphs.erp.client import ErpClient
from subgraphs.erp.config import ErpConfig
from subgraphs.erp.sandbox import create_app as erp_app
from subgraphs.psa.client import PsaClient
from subgraphs.psa.config import PsaConfig
from subgraphs.psa.sandbox import create_app as psa_app

SEED = 7
RETRY = RetryConfig(attempts=2, backoff_initial_s=0.001, backoff_max_s=0.01, budget_s=30)
LinkRow = tuple[str, str, str, str]  # canonical id, entity type, system, system id


@dataclass
class RunFigures:
    seconds: float
    report: BackfillReport
    requests: int


async def _requests(apps: dict[str, Starlette]) -> int:
    """Upstream requests since the last call (the sandboxes' counters, then reset)."""
    total = 0
    for app in apps.values():
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sandbox")
        admin = SandboxAdmin(client)
        total += int((await admin.counters())["total"])
        await admin.reset_counters()
        await client.aclose()
    return total


async def _backfill(apps: dict[str, Starlette], sessionmaker: async_sessionmaker[AsyncSession]) -> RunFigures:
    def transport(name: str) -> httpx.ASGITransport:
        return httpx.ASGITransport(app=apps[name])

    crm = CrmClient.from_config(CrmConfig(retry=RETRY), transport("crm"))
    psa = PsaClient.from_config(PsaConfig(retry=RETRY), transport("psa"))
    erp = ErpClient.from_config(ErpConfig(retry=RETRY), transport("erp"))
    await _requests(apps)
    try:
        started = time.perf_counter()
        report = await backfill(crm=crm, psa=psa, erp=erp, sessionmaker=sessionmaker)
        seconds = time.perf_counter() - started
    finally:
        for client in (crm, psa, erp):
            await client.aclose()
    return RunFigures(seconds, report, await _requests(apps))


async def _links(sessionmaker: async_sessionmaker[AsyncSession]) -> list[LinkRow]:
    async with sessionmaker() as session:
        rows = await session.execute(
            sa.select(
                CrossReference.canonical_id,
                CrossReference.entity_type,
                CrossReference.system,
                CrossReference.system_id,
            ).order_by(CrossReference.id)
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]


async def _clear_links(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker.begin() as session:
        await session.execute(sa.delete(CrossReference))


async def _per_row(sessionmaker: async_sessionmaker[AsyncSession], sample: Sequence[LinkRow]) -> float:
    started = time.perf_counter()
    for i in range(0, len(sample), 1_000):
        async with sessionmaker.begin() as session:
            repo = CrossReferenceRepo(session)
            for canonical_id, entity_type, system, system_id in sample[i : i + 1_000]:
                await repo.link(canonical_id, entity_type, system, system_id)
    return time.perf_counter() - started


async def _bulk(sessionmaker: async_sessionmaker[AsyncSession], sample: Sequence[LinkRow]) -> float | None:
    repo_type: Any = CrossReferenceRepo
    if not hasattr(repo_type, "link_many"):
        return None
    from store.repositories.xrefs import XrefLink

    started = time.perf_counter()
    for i in range(0, len(sample), 1_000):
        async with sessionmaker.begin() as session:
            await CrossReferenceRepo(session).link_many([XrefLink(*row) for row in sample[i : i + 1_000]])
    return time.perf_counter() - started


async def bench_store(label: str, url: str, accounts: int, sample_size: int) -> None:
    options = SandboxOptions(seed=SEED, accounts=accounts)
    built = time.perf_counter()
    apps = {"crm": crm_app(options), "psa": psa_app(options), "erp": erp_app(options)}
    print(f"[{label}] sandboxes with {accounts:,} accounts built in {time.perf_counter() - built:.1f} s")
    engine = make_engine(url)
    sessionmaker = make_sessionmaker(engine)
    try:
        first = await _backfill(apps, sessionmaker)
        second = await _backfill(apps, sessionmaker)
        for name, run in (("first run", first), ("second run", second)):
            r = run.report
            print(
                f"[{label}] {name:<10} {run.seconds:7.2f} s  xrefs created {r.xrefs_created:>6,}  "
                f"exceptions {r.exceptions:>4} (opened {r.exceptions_opened}, still open "
                f"{r.exceptions_still_open})  ambiguous {r.ambiguous}  missing {r.missing}  "
                f"upstream requests {run.requests}"
            )
            phases = "  ".join(f"{k} {v:.2f} s" for k, v in getattr(r, "phases_s", {}).items())
            if phases:
                print(f"[{label}] {'':<10} phases: {phases}")

        links = await _links(sessionmaker)
        step = max(1, len(links) // sample_size)
        sample = links[::step][:sample_size]
        await _clear_links(sessionmaker)
        fresh = await _per_row(sessionmaker, sample)
        again = await _per_row(sessionmaker, sample)
        per_link = fresh / len(sample)
        print(
            f"[{label}] baseline link() per row: {len(sample):,} new links {fresh:.2f} s "
            f"({per_link * 1e3:.2f} ms each) → {len(links):,} links ≈ {per_link * len(links):.1f} s; "
            f"same {len(sample):,} again (no-ops) {again:.2f} s → ≈ {again / len(sample) * len(links):.1f} s"
        )
        await _clear_links(sessionmaker)
        bulk = await _bulk(sessionmaker, sample)
        if bulk is not None:
            print(f"[{label}] link_many over the same {len(sample):,} links: {bulk:.3f} s")
    finally:
        await engine.dispose()


async def _admin(url: str, statement: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.execute(sa.text(statement))
    finally:
        await engine.dispose()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--database-url", help="PostgreSQL server to bench on too (a scratch database)")
    parser.add_argument("--sample", type=int, default=2_000, help="links written one by one (baseline)")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args(argv)

    if not args.skip_sqlite:
        with tempfile.TemporaryDirectory(prefix="p2c-bench-") as tmp:
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'store.db'}"
            upgrade_to_head(url)
            asyncio.run(bench_store("sqlite", url, args.accounts, args.sample))

    if args.database_url:
        name = f"p2c_bench_{uuid.uuid4().hex[:12]}"
        scratch = make_url(args.database_url).set(database=name).render_as_string(hide_password=False)
        asyncio.run(_admin(args.database_url, f'CREATE DATABASE "{name}"'))
        try:
            upgrade_to_head(scratch)
            asyncio.run(bench_store("postgres", scratch, args.accounts, args.sample))
        finally:
            asyncio.run(_admin(args.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
