"""A SIGKILL during a Tryton time-posting batch → after the restart Tryton holds exactly one timesheet line
per approved entry (issue 9). The batch runs in a child process; it is killed once Tryton has committed some
of its lines and before the gateway recorded any (steps and heads are recorded at the end of a batch). The
run again adopts the lines it finds by their ``psa:<entry>:v<version>`` reference and creates the rest."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

from mutations.identity import PROJECT
from store.db import make_engine, make_sessionmaker
from store.migrate import upgrade_to_head
from store.repositories import CrossReferenceRepo
from store.repositories.postings import PostingRepo
from subgraphs.demo import generate_firm
from tests.subgraphs.erp_tryton.tryton_support import ACCOUNTS, SEED, Server

ROOT = Path(__file__).resolve().parents[2]
ENTRIES = 60
PSA_PROJECT = 990001
CANONICAL = "00000000-0000-4000-8000-00000000c0de"


async def _project(server: Server) -> tuple[int, str]:
    async with server.client() as client:
        (party,) = await client.create(
            "party.party", [{"name": "Crash Test GmbH", "addresses": [["create", [{"street": "1 Weg"}]]]}]
        )
        product = (await client.products())["CONSULT-JR"]["id"]
        (project,) = await client.create(
            "project.work",
            [
                {
                    "name": "Crash test",
                    "type": "project",
                    "party": party,
                    "project_invoice_method": "timesheet",
                    "product": product,
                    "list_price": Decimal("160"),
                    "timesheet_available": True,
                }
            ],
        )
        return project, next(iter(await client.employees()))


async def _lines(server: Server) -> list[str]:
    async with server.client() as client:
        rows = await client.search_read("timesheet.line", [["description", "like", "psa:%"]], ["description"])
    return [str(r["description"]).split(" ", 1)[0] for r in rows]


def test_sigkill_mid_batch_leaves_exactly_one_line_per_entry(tryton: Server, tmp_path: Path) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    upgrade_to_head(database_url)
    project, email = asyncio.run(_project(tryton))

    async def link() -> None:
        engine = make_engine(database_url)
        async with make_sessionmaker(engine).begin() as session:
            xrefs = CrossReferenceRepo(session)
            await xrefs.link(CANONICAL, PROJECT, "psa", str(PSA_PROJECT))
            await xrefs.link(CANONICAL, PROJECT, "tryton", str(project), legal_entity="EU01")
        await engine.dispose()

    asyncio.run(link())
    person = next(e for e in generate_firm(SEED, ACCOUNTS).employees if e.email == email)
    items = [
        {
            "kind": "post_time",
            "version": 1,
            "entry": {
                "id": 800000 + n,
                "spent_date": "2026-11-20",
                "hours": 1.5,
                "notes": "",
                "is_closed": True,
                "billable": True,
                "user": {"id": person.psa_user_id, "name": person.name},
                "project": {"id": PSA_PROJECT, "code": "CRASH", "name": "Crash test"},
                "task": {"id": 1, "name": "x"},
            },
        }
        for n in range(ENTRIES)
    ]
    config = tryton.config()
    job = tmp_path / "job.json"
    job.write_text(
        json.dumps(
            {
                "database_url": database_url,
                "seed": SEED,
                "accounts": ACCOUNTS,
                "items": items,
                "password": config.password.get_secret_value(),
                "tryton": {
                    "base_url": config.base_url,
                    "database": config.database,
                    "company": config.company,
                },
            }
        )
    )
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("P2C_")}, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "tests.mutations.tryton_crash_child", str(job)]

    child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(asyncio.run(_lines(tryton))) < 10 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    killed_with = len(asyncio.run(_lines(tryton)))
    assert child.returncode == -signal.SIGKILL
    assert 0 < killed_with < ENTRIES, "the kill must land mid-batch"

    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    outcomes = json.loads(done.stdout.strip().splitlines()[-1])

    lines = asyncio.run(_lines(tryton))
    assert sorted(lines) == sorted(f"psa:{800000 + n}:v1" for n in range(ENTRIES))  # one each, none missing
    assert set(outcomes.values()) == {"POSTED"}

    async def heads() -> dict[str, object]:
        engine = make_engine(database_url)
        async with make_sessionmaker(engine)() as session:
            found = await PostingRepo(session).heads(f"psa:time:{800000 + n}:head" for n in range(ENTRIES))
        await engine.dispose()
        return found

    recorded = asyncio.run(heads())
    assert all(isinstance(h, dict) and h.get("live") for h in recorded.values()) and len(recorded) == ENTRIES
