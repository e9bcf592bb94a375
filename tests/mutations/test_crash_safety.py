"""Scenario 23: the gateway killed (SIGKILL) at any instant of a provisioning run resumes on restart;
nothing lost, nothing doubled.

The three sandboxes run as their own processes (``p2c sandbox serve`` with a state file), so what the
vendors hold survives the gateway's death; each answers 100 ms late, so every step takes observable time.
Each provisioning runs in a driver process (``open_flow_deps`` from settings, as ``p2c worker`` builds
them). The test watches the store's ``integration_steps`` and SIGKILLs the driver right after step K
committed SUCCEEDED, or while step K is in flight (killed mid-request), one opportunity per kill point,
all kill points at once against the same sandboxes. Then it runs the driver again and checks through the
vendor APIs: exactly one ERP customer, job, contract (sales order) and billing schedule with our external
ids, one PSA project, the CRM opportunity marked provisioned, the run SUCCEEDED.

A claim on a step killed mid-flight stays live for ``CLAIM_TIMEOUT`` (60 s in production); the driver
shortens it to 1 s so the restart takes the dead claim over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from mutations.identity import account_canonical_id, provisioned_project_canonical_id
from store.db import make_engine, make_sessionmaker
from subgraphs.demo import generate_firm
from tests.mutations.process_support import serve_sandboxes, spawn

pytestmark = pytest.mark.slow

SEED, ACCOUNTS = 7, 30
LATENCY_MS = 250  # wide enough that a loaded machine still sees each step in flight

DRIVER = """
import asyncio, json, sys
from datetime import timedelta

from canonical.principal import Principal
from gateway.settings import Settings
from gateway.worker import open_flow_deps
import mutations.governance as governance
from mutations.provision import provision_engagement

governance.CLAIM_TIMEOUT = timedelta(seconds=1)


async def main(command: str, opportunities: list[str]) -> None:
    async with open_flow_deps(Settings()) as deps:
        for opportunity in opportunities:
            if command == "win":
                await deps.crm.update("Opportunity", opportunity, {"StageName": "Closed Won"})
                continue
            result = await provision_engagement(
                deps, opportunity, principal=Principal.system("crash-test"), correlation_id="crash"
            )
            print(json.dumps(result.to_json()), flush=True)


asyncio.run(main(sys.argv[1], sys.argv[2:]))
"""


@dataclass(frozen=True)
class KillPoint:
    opportunity: str
    step: str
    in_flight: bool  # kill while the step runs (mid-request), else right after it committed SUCCEEDED

    def __str__(self) -> str:
        return f"{'during' if self.in_flight else 'after'} {self.step} ({self.opportunity})"


KILL_POINTS = [
    KillPoint("006000000000057AAA", "customer", in_flight=False),  # new customer, fixed fee
    KillPoint("006000000000030AAA", "job", in_flight=True),  # T&M
    KillPoint("006000000000044AAA", "contract", in_flight=False),  # existing customer, fixed fee
    KillPoint("006000000000033AAA", "schedule", in_flight=True),  # milestone, EUR
    KillPoint("006000000000051AAA", "tasks", in_flight=False),  # retainer
    KillPoint("006000000000072AAA", "psa_project", in_flight=True),  # PSA has no upsert
    KillPoint("006000000000069AAA", "psa_tasks", in_flight=False),  # subscription
    KillPoint("006000000000075AAA", "crm_opportunity", in_flight=True),  # customer matched by tax id
]


@pytest.fixture
def sandboxes(tmp_path: Path) -> Iterator[dict[str, str]]:
    with serve_sandboxes(tmp_path, seed=SEED, accounts=ACCOUNTS, faults={"latency_ms": LATENCY_MS}) as urls:
        yield urls


@pytest.fixture
async def store(scratch_database_url: str) -> AsyncIterator[Any]:
    engine = make_engine(scratch_database_url)
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


async def _driver(urls: dict[str, str], database_url: str, *args: str) -> asyncio.subprocess.Process:
    return await spawn(urls, database_url, "-c", DRIVER, *args)


STEPS = sa.text(
    "SELECT s.name, s.status FROM integration_steps s JOIN integration_runs r ON r.id = s.run_id "
    "WHERE r.subject = :subject"
)


async def _kill_at(point: KillPoint, urls: dict[str, str], database_url: str, store: Any) -> dict[str, Any]:
    """Provision ``point.opportunity``, SIGKILL the driver at the kill point, provision again → result."""
    proc = await _driver(urls, database_url, "provision", point.opportunity)
    wanted = "RUNNING" if point.in_flight else "SUCCEEDED"
    killed = False
    while proc.returncode is None:
        async with store() as session:
            rows = (await session.execute(STEPS, {"subject": point.opportunity})).all()
        statuses = {str(name): str(status) for name, status in rows}
        if statuses.get(point.step) == wanted:
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 0.02)
    await proc.wait()
    assert killed, f"{point}: the run finished before the kill point ({proc.returncode})"
    assert proc.returncode == -signal.SIGKILL

    restarted = await _driver(urls, database_url, "provision", point.opportunity)
    out, err = await restarted.communicate()
    assert restarted.returncode == 0, f"{point}: restart failed\n{err.decode()[-3000:]}"
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def test_killed_at_each_step_resumes_and_writes_everything_once(
    sandboxes: dict[str, str], scratch_database_url: str, store: Any
) -> None:
    started = time.monotonic()
    win = await _driver(sandboxes, scratch_database_url, "win", *(p.opportunity for p in KILL_POINTS))
    _, err = await win.communicate()
    assert win.returncode == 0, err.decode()[-3000:]

    results = await asyncio.gather(
        *(_kill_at(p, sandboxes, scratch_database_url, store) for p in KILL_POINTS)
    )

    firm = generate_firm(SEED, ACCOUNTS)
    async with httpx.AsyncClient() as http:
        for point, result in zip(KILL_POINTS, results, strict=True):
            assert result["status"] == "PROVISIONED", (str(point), result)
            await _exactly_one_of_everything(http, sandboxes, firm, point, result)
    async with store() as session:
        runs = (
            await session.execute(
                sa.text("SELECT subject, status FROM integration_runs WHERE flow = 'provision_engagement'")
            )
        ).all()
    by_subject: dict[str, list[str]] = {}
    for subject, status in runs:
        by_subject.setdefault(subject, []).append(status)
    for point in KILL_POINTS:  # resumed, not restarted from scratch: one run, finished
        assert by_subject[point.opportunity] == ["SUCCEEDED"], (str(point), by_subject[point.opportunity])
    assert time.monotonic() - started < 90


async def _exactly_one_of_everything(
    http: httpx.AsyncClient, urls: dict[str, str], firm: Any, point: KillPoint, result: dict[str, Any]
) -> None:
    from subgraphs.crm.client import CrmClient
    from subgraphs.crm.config import CrmConfig
    from subgraphs.erp.client import ErpClient
    from subgraphs.erp.config import ErpConfig
    from subgraphs.psa.client import PsaClient
    from subgraphs.psa.config import PsaConfig

    erp = ErpClient.from_config(ErpConfig(base_url=urls["erp"]))
    psa = PsaClient.from_config(PsaConfig(base_url=urls["psa"]))
    crm = CrmClient.from_config(CrmConfig(base_url=urls["crm"]))
    try:

        async def count(table: str, where: str) -> int:
            return int((await erp.suiteql(f"SELECT COUNT(*) AS n FROM {table} WHERE {where}"))[0]["n"])

        opportunity = await crm.get("Opportunity", point.opportunity)
        account = str(opportunity["AccountId"])
        assert result["account_id"] == account_canonical_id(account)
        assert result["engagement_id"] == provisioned_project_canonical_id(point.opportunity)
        where = f"{point}"
        assert await count("customer", f"externalid = '{result['account_id']}'") == 1, where
        assert await count("job", f"externalid = '{result['engagement_id']}'") == 1, where
        assert await count("transaction", f"externalid = '{result['contract_id']}'") == 1, where
        assert await count("billingschedule", f"job = {result['erp_job_id']}") == 1, where
        client = next(a for a in firm.accounts if a.crm_id == account).psa_client_id
        projects = [p async for page in psa.projects(client_id=client) for p in page]
        assert [p["code"] for p in projects].count(result["project_code"]) == 1, where
        assert opportunity["Provisioning_Status__c"] == "Provisioned", where
        assert str(opportunity["ERP_Project_Id__c"]) == result["erp_job_id"], where
    finally:
        for client_ in (erp, psa, crm):
            await client_.aclose()
