"""Scenario 15 + 23 for time posting: ``p2c worker`` processes SIGKILLed mid-batch, again and again, while
a month of approved time drains to the ERP — then the ERP holds every approved PSA entry exactly once.

The sandboxes run as processes with state files (``process_support``); the firm's current month has a few
thousand approved, never-posted entries. The ERP answers 50 ms late, so a batch of 100 takes a visible
while. On PostgreSQL two workers claim side by side (``SKIP LOCKED``); SQLite claims in one process at a
time, so there one worker is killed and restarted. The victim is killed ``KILLS`` times while it holds
claimed items whose ERP writes are under way, restarted each time; the survivors' leases (``--lease``)
run out and the items are taken over. The workers share the sandbox's concurrency cap of 15 as
``--erp-slots 15`` divides it (``gateway.worker_share``): each restart is a worker joining, each kill one
whose part stays unused until its leases run out. A kill that finds the victim holding nothing (a batch of
``BUSY`` items is handed back within moments) does not count: it is killed again on its next batch.

A dead batch also leaves its entries' posting heads claimed; ``PostingRepo.claim_heads`` treats that claim
as live for ``CLAIM_TIMEOUT`` (60 s), so the items taken over are ``BUSY`` and retried with backoff until
then — most of this test's minute and a half is that wait.

Checked through SuiteQL against the PSA's approved entries: one approved time bill per entry (external id
``psa:<entry>:v<version>`` of the approved version), none missing, no stray ones, hours equal per entry,
and Σ hours × rate equal to the PSA's approved total (hours × the rate each entry bills at, computed from
the ERP's contract rate cards as the mapping says) to the cent.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical.mapping import demo_mapping
from mutations.identity import PROJECT, project_canonical_id
from mutations.intake import format_stamp
from mutations.posting.intake import TIME_CURSOR
from store.db import make_engine, make_sessionmaker
from store.repositories import CrossReferenceRepo, CursorRepo
from store.repositories.xrefs import XrefLink
from subgraphs.demo import generate_firm
from subgraphs.erp.client import ErpClient
from subgraphs.erp.config import ErpConfig
from subgraphs.psa.client import PsaClient
from subgraphs.psa.config import PsaConfig
from subgraphs.psa.mapping import version_of
from tests.mutations.process_support import CLI, serve_sandboxes, spawn

pytestmark = pytest.mark.slow

SEED, ACCOUNTS = 7, 600  # ~2,070 approved, unposted entries this month
MONTH = datetime(2026, 11, 1, tzinfo=UTC)  # the demo firm's current month: nothing of it is in the ERP yet
LATENCY_MS = 50
CAP = 15  # the ERP sandbox's concurrency cap
BATCH, LEASE_S = 100, 5
KILLS = 3
BUDGET_S = 150  # the drain waits out CLAIM_TIMEOUT (60 s) after the last kill: see the docstring

Sessions = async_sessionmaker[AsyncSession]
CLAIMED = sa.text(
    "SELECT count(*) FROM work_items WHERE kind = 'post_time' AND status = 'CLAIMED' AND claimed_by LIKE :who"
)
OPEN = sa.text("SELECT count(*) FROM work_items WHERE kind = 'post_time' AND status IN ('QUEUED', 'CLAIMED')")
BY_STATUS = sa.text("SELECT status, count(*) FROM work_items WHERE kind = 'post_time' GROUP BY status")


@pytest.fixture
async def store(scratch_database_url: str) -> AsyncIterator[Sessions]:
    engine = make_engine(scratch_database_url)
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


async def _prepare(store: Sessions) -> None:
    """Projects linked PSA ↔ ERP as backfill links them; the time cursor at the start of the month."""
    firm = generate_firm(SEED, ACCOUNTS)
    links: list[XrefLink] = []
    for p in firm.projects:
        canonical = project_canonical_id(p.erp_job_id)
        links += [
            XrefLink(canonical, PROJECT, "erp", str(p.erp_job_id)),
            XrefLink(canonical, PROJECT, "psa", str(p.psa_project_id)),
        ]
    async with store.begin() as session:
        await CrossReferenceRepo(session).link_many(links)
        await CursorRepo(session).set(TIME_CURSOR, format_stamp(MONTH))


async def _count(store: Sessions, query: sa.TextClause, **params: Any) -> int:
    async with store() as session:
        return int((await session.execute(query, params)).scalar_one())


class Workers:
    def __init__(self, urls: dict[str, str], database_url: str, logs: Path, n: int) -> None:
        self.urls, self.database_url, self.logs, self.n = urls, database_url, logs, n
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self, i: int) -> asyncio.subprocess.Process:
        args = ["worker", "--kinds", "post_time", "--batch", str(BATCH), "--lease", str(LEASE_S)]
        args += ["--poll-interval", "600"]
        proc = await spawn(
            self.urls,
            self.database_url,
            "-c",
            CLI,
            *args,
            "--lag",
            "0",
            "--erp-slots",
            str(CAP),
            log=self.logs / f"worker{i}.log",
        )
        if i < len(self.procs):
            self.procs[i] = proc
        else:
            self.procs.append(proc)
        return proc

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _kill_mid_batch(workers: Workers, store: Sessions, deadline: float) -> int:
    """SIGKILL worker 0 once it holds claimed items and their writes are under way; how many it held."""
    proc = workers.procs[0]
    who = f"%:{proc.pid}:%"
    while await _count(store, CLAIMED, who=who) == 0:
        assert proc.returncode is None, "the worker exited on its own"
        assert time.monotonic() < deadline, "the worker never claimed a batch"
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # into the batch's ERP writes (100 entries at 50 ms take ~1 s)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    return await _count(store, CLAIMED, who=who)


async def test_killed_workers_post_every_approved_entry_exactly_once(
    tmp_path: Path, scratch_database_url: str, store: Sessions
) -> None:
    started = time.monotonic()
    deadline = started + BUDGET_S
    n = 2 if scratch_database_url.startswith("postgresql") else 1
    await _prepare(store)
    faults = {"crm": {}, "psa": {}, "erp": {"latency_ms": LATENCY_MS}}
    with serve_sandboxes(tmp_path, seed=SEED, accounts=ACCOUNTS, faults=faults) as urls:
        workers = Workers(urls, scratch_database_url, tmp_path, n)
        try:
            for i in range(n):
                await workers.start(i)
            held: list[int] = []
            while sum(1 for h in held if h > 0) < KILLS:
                held.append(await _kill_mid_batch(workers, store, deadline))
                print(f"killed at {time.monotonic() - started:.1f} s holding {held[-1]} items")
                await workers.start(0)
            assert len(held) <= 2 * KILLS, f"killed while holding no claimed items too often: {held}"
            while await _count(store, OPEN) > 0:
                assert all(p.returncode is None for p in workers.procs), "a worker died on its own"
                assert time.monotonic() < deadline, f"queue not drained in {BUDGET_S} s"
                await asyncio.sleep(0.5)
        finally:
            await workers.stop()
        print(f"drained at {time.monotonic() - started:.1f} s")
        async with store() as session:
            statuses = {str(k): int(v) for k, v in (await session.execute(BY_STATUS)).all()}
        assert set(statuses) == {"DONE"}, statuses
        await _erp_matches_psa(urls)
    assert time.monotonic() - started < BUDGET_S


async def _erp_matches_psa(urls: dict[str, str]) -> None:
    psa = PsaClient.from_config(PsaConfig(base_url=urls["psa"]))
    erp = ErpClient.from_config(ErpConfig(base_url=urls["erp"]))
    try:
        entries = [e async for page in psa.time_entries(updated_since=MONTH) for e in page]
        approved = {int(e["id"]): e for e in entries if e.get("is_closed")}
        assert len(approved) > 1500, len(approved)
        bills = await erp.suiteql(
            "SELECT id, externalid, hours, rate, customer FROM timebill "
            "WHERE externalid LIKE 'psa:%' AND approvalstatus = 'approved' ORDER BY id"
        )
        cards = await _rate_cards(erp, {str(b["customer"]) for b in bills})
    finally:
        await psa.aclose()
        await erp.aclose()
    by_entry: dict[int, list[dict[str, Any]]] = {}
    for bill in bills:
        entry_no = int(str(bill["externalid"]).split(":")[1])
        by_entry.setdefault(entry_no, []).append(bill)
    doubled = {e: [b["externalid"] for b in bs] for e, bs in by_entry.items() if len(bs) > 1}
    assert not doubled, f"{len(doubled)} entries posted more than once, e.g. {list(doubled.items())[:3]}"
    missing = sorted(set(approved) - set(by_entry))
    assert not missing, f"{len(missing)} approved entries not in the ERP, e.g. {missing[:5]}"
    stray = sorted(set(by_entry) - set(approved))
    assert not stray, f"{len(stray)} time bills for entries that are not approved, e.g. {stray[:5]}"
    mapping = demo_mapping()
    psa_total = erp_total = Decimal(0)
    for entry_id, entry in approved.items():
        (bill,) = by_entry[entry_id]
        assert bill["externalid"] == f"psa:{entry_id}:v{version_of(str(entry['updated_at']))}"
        hours = Decimal(str(entry["hours"]))
        assert Decimal(str(bill["hours"])) == hours, (entry_id, bill, entry["hours"])
        category = mapping.labour_category(str(entry["task"]["name"]))
        rate = cards.get(str(bill["customer"]), {}).get(category, Decimal(str(entry["billable_rate"])))
        psa_total += (hours * rate).quantize(Decimal("0.01"))
        erp_total += (Decimal(str(bill["hours"])) * Decimal(str(bill["rate"]))).quantize(Decimal("0.01"))
    assert erp_total == psa_total, (erp_total, psa_total)


async def _rate_cards(erp: ErpClient, jobs: set[str]) -> dict[str, dict[str, Decimal]]:
    """Each job's contract rate card (labour category → bill rate) as the ERP holds it."""
    schedules = await erp.billing_schedules_by_job_ids(sorted(jobs))
    job_of = {str(s["id"]): job for job, rows in schedules.items() for s in rows}
    cards: dict[str, dict[str, Decimal]] = {}
    for schedule_id, lines in (await erp.rates_by_schedule_ids(list(job_of))).items():
        card = cards.setdefault(job_of[schedule_id], {})
        for line in lines:
            if line.get("labourcategory") and line.get("rate") is not None:
                card[str(line["labourcategory"])] = Decimal(str(line["rate"]))
    return cards
