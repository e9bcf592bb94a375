"""What a batch is enriched and validated against, read in bulk once per batch — never once per entry.

    caches = PostingCaches(ttl_s=60)                 # one per worker process, shared by its batches
    snap = await Snapshot.load(deps, items, caches)  # ~0–6 upstream reads for a whole batch

Sources: the store's cross-references (PSA project → ERP job, one query), the PSA's projects and users
(whole lists, cached ``ttl_s``: Harvest allows 100 requests per 15 s, so nothing per entry goes there), the
ERP's reference data (subsidiaries, items, periods, employees — ``ErpClient``'s own cache), and the jobs,
project tasks and rate cards of the batch's jobs (SuiteQL by id lists, cached per job for ``ttl_s``).
``ttl_s=0`` reads everything fresh for every batch (tests; a firm that closes projects minute by minute).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, TypeVar

from mutations.deps import FlowDeps
from mutations.identity import PROJECT
from mutations.posting.model import PostItem
from store.repositories import CrossReferenceRepo
from subgraphs.erp.refdata import Reference
from subgraphs.erp.wire import Record

K = TypeVar("K")
V = TypeVar("V")


class KeyedCache(Generic[K, V]):
    """Values by key, each kept ``ttl_s``; ``get_many`` loads only the missing or stale keys, in bulk."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._values: dict[K, tuple[float, V]] = {}
        self.loads = 0

    async def get_many(
        self, keys: Iterable[K], load: Callable[[list[K]], Awaitable[Mapping[K, V]]], default: V
    ) -> dict[K, V]:
        now = self.clock()
        wanted = list(dict.fromkeys(keys))
        stale = [k for k in wanted if k not in self._values or now - self._values[k][0] >= self.ttl_s]
        if stale:
            self.loads += 1
            loaded = await load(stale)
            for k in stale:
                self._values[k] = (now, loaded.get(k, default))
        return {k: self._values[k][1] for k in wanted}

    def clear(self) -> None:
        self._values.clear()


class ListCache(Generic[K, V]):
    """A whole list (PSA projects, users) by id, read again after ``ttl_s`` or when an id is missing."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._values: dict[K, V] | None = None
        self._at = 0.0
        self._lock = asyncio.Lock()
        self.loads = 0

    async def get(self, wanted: Iterable[K], load: Callable[[], Awaitable[dict[K, V]]]) -> dict[K, V]:
        async with self._lock:
            fresh = self._values is not None and self.clock() - self._at < self.ttl_s
            if not fresh or any(k not in (self._values or {}) for k in wanted):
                self._values = await load()
                self._at = self.clock()
                self.loads += 1
            return dict(self._values or {})

    def clear(self) -> None:
        self._values = None


@dataclass
class PostingCaches:
    """Per-process caches for posting; ``clear()`` after changing master data by hand."""

    ttl_s: float = 60.0
    psa_projects: ListCache[int, dict[str, Any]] = field(init=False)
    psa_users: ListCache[int, dict[str, Any]] = field(init=False)
    jobs: KeyedCache[str, Record | None] = field(init=False)
    tasks: KeyedCache[str, list[Record]] = field(init=False)
    rates: KeyedCache[str, dict[str, Decimal]] = field(init=False)

    def __post_init__(self) -> None:
        self.psa_projects = ListCache(self.ttl_s)
        self.psa_users = ListCache(self.ttl_s)
        self.jobs = KeyedCache(self.ttl_s)
        self.tasks = KeyedCache(self.ttl_s)
        self.rates = KeyedCache(self.ttl_s)

    def clear(self) -> None:
        for cache in (self.psa_projects, self.psa_users, self.jobs, self.tasks, self.rates):
            cache.clear()


@dataclass(frozen=True)
class Snapshot:
    jobs_by_psa_project: dict[int, str]  # PSA project id → ERP job id (cross-references)
    psa_projects: dict[int, dict[str, Any]]
    psa_users: dict[int, dict[str, Any]]
    reference: Reference
    jobs: dict[str, Record | None]  # ERP job id → SuiteQL row (None: gone)
    tasks: dict[str, list[Record]]  # ERP job id → its project tasks
    rates: dict[str, dict[str, Decimal]]  # ERP job id → labour category → contract bill rate
    employees_by_email: dict[str, str] = field(default_factory=dict)  # lower-case email → ERP employee id

    @classmethod
    async def load(cls, deps: FlowDeps, items: Iterable[PostItem], caches: PostingCaches) -> Snapshot:
        items = list(items)
        psa_ids = sorted({int(i.entry["project"]["id"]) for i in items})
        user_ids = {int(i.entry["user"]["id"]) for i in items}
        async with deps.sessionmaker() as session:
            xrefs = CrossReferenceRepo(session)
            canonical = await xrefs.resolve_many("psa", PROJECT, [str(p) for p in psa_ids])
            erp = await xrefs.system_ids_for("erp", list(canonical.values()))
        by_project = {int(p): erp[c] for p, c in canonical.items() if c in erp}
        job_ids = sorted(set(by_project.values()))

        async def projects() -> dict[int, dict[str, Any]]:
            return {int(p["id"]): dict(p) async for page in deps.psa.projects() for p in page}

        async def users() -> dict[int, dict[str, Any]]:
            return {int(u["id"]): dict(u) for u in await deps.psa.users()}

        async def jobs(ids: list[str]) -> Mapping[str, Record | None]:
            return await deps.erp.jobs_by_ids(ids)

        async def tasks(ids: list[str]) -> Mapping[str, list[Record]]:
            return await deps.erp.project_tasks_by_job_ids(ids)

        async def rates(ids: list[str]) -> Mapping[str, dict[str, Decimal]]:
            return await _rate_cards(deps, ids)

        reference, psa_projects, psa_users, job_rows, task_rows, rate_rows = await asyncio.gather(
            deps.erp.reference_data(),
            caches.psa_projects.get(psa_ids, projects),
            caches.psa_users.get(user_ids, users),
            caches.jobs.get_many(job_ids, jobs, None),
            caches.tasks.get_many(job_ids, tasks, []),
            caches.rates.get_many(job_ids, rates, {}),
        )
        emails = {
            str(e.get("email") or "").lower(): eid for eid, e in reference.employees.items() if e.get("email")
        }
        return cls(by_project, psa_projects, psa_users, reference, job_rows, task_rows, rate_rows, emails)


async def _rate_cards(deps: FlowDeps, job_ids: list[str]) -> dict[str, dict[str, Decimal]]:
    """The contract rate card of each job: its billing schedule's rate lines (two SuiteQL reads)."""
    schedules = await deps.erp.billing_schedules_by_job_ids(job_ids)
    job_of = {str(s["id"]): job for job, rows in schedules.items() for s in rows}
    cards: dict[str, dict[str, Decimal]] = {}
    if not job_of:
        return cards
    for schedule_id, lines in (await deps.erp.rates_by_schedule_ids(list(job_of))).items():
        card = cards.setdefault(job_of[schedule_id], {})
        for line in lines:
            if line.get("labourcategory") and line.get("rate") is not None:
                card[str(line["labourcategory"])] = Decimal(str(line["rate"]))
    return cards
