"""Helpers for the time-posting tests: the demo firm's projects linked PSA ↔ ERP (as backfill links them),
entries created and approved through the PSA sandbox, and one worker round (pollers + queue drained)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from canonical.mapping import MappingSet, load_mapping_text
from gateway.worker import Worker, WorkerReport, default_handlers
from mutations.deps import FlowDeps
from mutations.identity import PROJECT, project_canonical_id
from mutations.time_posting import PostingCaches, TimeEntryPoller
from store.repositories import CrossReferenceRepo
from store.repositories.xrefs import XrefLink
from subgraphs.demo import Project
from tests.mutations.conftest import Flow


@dataclass
class Posting:
    flow: Flow
    caches: PostingCaches

    @property
    def deps(self) -> FlowDeps:
        return self.flow.deps

    async def admin(self, system: str, method: str, path: str, body: Any = None) -> Any:
        transport = httpx.ASGITransport(app=self.flow.apps[system])
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{system}.sandbox") as client:
            response = await client.request(method, path, json=body)
            response.raise_for_status()
            return response.json() if response.content else None

    async def psa_now(self) -> datetime:
        now = (await self.admin("psa", "GET", "/__sandbox/psa/clock"))["now"]
        return datetime.fromisoformat(str(now).replace("Z", "+00:00"))

    def project(self, *, entity: str = "US01", method: str = "TIME_AND_MATERIALS", n: int = 0) -> Project:
        firm = self.flow.firm
        found = [
            p
            for p in firm.projects
            if p.is_active
            and p.billing_method == method
            and firm.accounts[p.account_index].legal_entity == entity
        ]
        return found[n]

    async def entry(
        self, project: Project, *, hours: float = 2.5, on: date | None = None, task: int | None = None
    ) -> dict[str, Any]:
        body = {
            "project_id": project.psa_project_id,
            "task_id": task if task is not None else project.tasks[0].psa_task_id,
            "user_id": self.flow.firm.employees[project.staff[0]].psa_user_id,
            "spent_date": (on or date(2026, 11, 24)).isoformat(),
            "hours": hours,
            "notes": "posting test",
        }
        return dict(await self.deps.psa.create_time_entry(body))

    async def approve(self, entry_id: int, action: str = "approve") -> None:
        await self.admin("psa", "POST", f"/__sandbox/psa/time_entries/{entry_id}/{action}")

    async def edit(self, entry_id: int, **changes: Any) -> None:
        await self.approve(entry_id, "reopen")
        await self.deps.psa.update_time_entry(entry_id, changes)
        await self.approve(entry_id)

    def worker(
        self, deps: FlowDeps | None = None, *, start: datetime, lag: timedelta = timedelta(0)
    ) -> Worker:
        deps = deps or self.deps
        poller = TimeEntryPoller(deps, start=start, lag=lag)
        handlers = default_handlers(deps, caches=self.caches)
        return Worker(deps.sessionmaker, handlers, pollers=[poller], batch=50, clock=deps.clock)

    async def round(self, start: datetime, deps: FlowDeps | None = None) -> WorkerReport:
        return await self.worker(deps, start=start).drain()

    async def time_bills(self, entry_id: int) -> list[dict[str, Any]]:
        return await self.deps.erp.suiteql(
            "SELECT id, externalid, hours, rate, approvalstatus, trandate, billed, memo FROM timebill "
            f"WHERE externalid LIKE 'psa:{entry_id}:v%' ORDER BY id"
        )

    async def approved_total(self, entry_ids: list[int]) -> Decimal:
        total = Decimal(0)
        for entry_id in entry_ids:
            for row in await self.time_bills(entry_id):
                if row["approvalstatus"] == "approved":
                    amount = Decimal(str(row["hours"])) * Decimal(str(row["rate"]))
                    total += amount.quantize(Decimal("0.01"))
        return total


async def link_projects(flow: Flow) -> None:
    links: list[XrefLink] = []
    for p in flow.firm.projects:
        canonical = project_canonical_id(p.erp_job_id)
        links += [
            XrefLink(canonical, PROJECT, "erp", str(p.erp_job_id)),
            XrefLink(canonical, PROJECT, "psa", str(p.psa_project_id)),
        ]
    async with flow.deps.sessionmaker.begin() as session:
        await CrossReferenceRepo(session, clock=flow.deps.clock).link_many(links)


def with_mapping(deps: FlowDeps, mapping: MappingSet) -> FlowDeps:
    return dataclasses.replace(deps, mapping=mapping)


def mapping_with(extra_task: str | None = None, *, drop_line: str | None = None) -> MappingSet:
    from importlib import resources

    text = resources.files("canonical").joinpath("demo_mapping.yaml").read_text(encoding="utf-8")
    if extra_task is not None:
        text = text.replace("tasks:\n", f"tasks:\n  {extra_task}: {{labour_category: Consultant}}\n", 1)
    if drop_line is not None:
        text = "\n".join(ln for ln in text.splitlines() if not ln.startswith(f"  {drop_line}:"))
    return load_mapping_text(text, source="test")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)
