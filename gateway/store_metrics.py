"""Store-derived metrics: read from the store when ``/metrics`` is scraped, then rendered with the rest.

    store_metrics = StoreMetrics(metrics)          # registers its collector and histograms
    await store_metrics.refresh(sessionmaker)      # what the /metrics endpoint does before rendering

The queue, the runs and the exceptions live in the store, shared by every gateway and worker process, so
their figures are read from it rather than counted in one process: any gateway reports the whole system's
figure (aggregate across instances with ``max``, not ``sum``). Gauges, snapshot at each refresh:

    p2c_queue_depth{kind,status}             work items QUEUED, CLAIMED or FAILED (dead letter)
    p2c_queue_oldest_age_seconds{kind}       how long the oldest due QUEUED item has waited
    p2c_flow_runs{flow,status}               integration runs by status (PENDING, RUNNING, SUCCEEDED, FAILED)
    p2c_exceptions{flow,reason,status}       exceptions by reason code and status (OPEN, REPLAYING, ...)

Histograms, fed incrementally (each refresh reads only what finished after the last one it saw; they start
empty when the process starts, like any counter):

    p2c_exception_resolution_seconds{flow}   created → resolved or dismissed
    p2c_provisioning_cycle_seconds           closed-won intake → engagement provisioned (project active)

One refresh runs at a time: a scrape that arrives while one is under way waits for it and serves its
figures, so a burst of scrapes costs the store one read (``min_interval_s`` can space refreshes further).
A failing store read is counted in ``p2c_store_metrics_errors_total`` and the last snapshot is served.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import datetime

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request

from gateway.logs import get_logger
from gateway.metrics import Metrics, Scrape
from store.models import utcnow
from store.repositories._base import Clock
from store.repositories.ops_metrics import OpsMetricsRepo

log = get_logger("gateway.metrics")

PROVISION_FLOW = "provision_engagement"  # mutations.provisioning.outcomes.FLOW; gateway may not import it
# From seconds (a webhook, no fault) to days (an exception waiting for a person, a month-end backlog).
_SLOW_BUCKETS = (1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0, 259200.0, 604800.0)


class _Snapshot(Collector):
    """The gauges of the last refresh, swapped in whole, so a scrape never sees half of one."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterator[Metric]:
        yield from self.families

    def describe(self) -> Iterator[Metric]:
        return iter(())


class StoreMetrics:
    def __init__(self, metrics: Metrics, *, min_interval_s: float = 0.0, clock: Clock = utcnow) -> None:
        registry = metrics.registry
        self.clock = clock
        self.min_interval_s = min_interval_s
        self.snapshot = _Snapshot()
        registry.register(self.snapshot)
        self.resolution = Histogram(
            "p2c_exception_resolution_seconds",
            "Time from an exception being opened to its resolution or dismissal, by flow.",
            ["flow"],
            buckets=_SLOW_BUCKETS,
            registry=registry,
        )
        self.provisioning_cycle = Histogram(
            "p2c_provisioning_cycle_seconds",
            "Time from a closed-won deal's intake to its engagement provisioned (project active), "
            "exception queue time included.",
            buckets=_SLOW_BUCKETS,
            registry=registry,
        )
        self.errors = Counter(
            "p2c_store_metrics_errors_total",
            "Refreshes of the store-derived metrics that failed (the previous figures were served).",
            registry=registry,
        )
        self.refresh_seconds = Gauge(
            "p2c_store_metrics_refresh_seconds",
            "How long the last refresh of the store-derived metrics took.",
            registry=registry,
        )
        # Count what finishes from now on: a counter starts at zero with its process.
        started = clock()
        self._resolved_mark: datetime = started
        self._provisioned_mark: datetime = started
        self._last = float("-inf")
        self._lock = asyncio.Lock()

    async def refresh(self, sessionmaker: async_sessionmaker[AsyncSession], *, force: bool = False) -> None:
        arrived = time.monotonic()
        async with self._lock:
            if not force and (self._last >= arrived or arrived - self._last < self.min_interval_s):
                return  # a refresh finished while we waited for the lock, or one is recent enough
            started = time.perf_counter()
            try:
                async with sessionmaker() as session:
                    await self._read(OpsMetricsRepo(session, clock=self.clock))
            except Exception as exc:  # a scrape must still answer: serve the last figures
                self.errors.inc()
                log.warning("gateway.metrics.store_failed", error=f"{type(exc).__name__}: {exc}")
            finally:
                self._last = time.monotonic()
                self.refresh_seconds.set(time.perf_counter() - started)

    async def _read(self, repo: OpsMetricsRepo) -> None:
        now = self.clock()
        depth = GaugeMetricFamily(
            "p2c_queue_depth",
            "Work items waiting (QUEUED), claimed (CLAIMED) or failed for good (FAILED).",
            labels=["kind", "status"],
        )
        age = GaugeMetricFamily(
            "p2c_queue_oldest_age_seconds",
            "Seconds the oldest due QUEUED work item has waited, by kind.",
            labels=["kind"],
        )
        for group in await repo.queue():
            depth.add_metric([group.kind, group.status], group.count)
            if group.oldest_due is not None:
                age.add_metric([group.kind], max(0.0, (now - group.oldest_due).total_seconds()))
        runs = GaugeMetricFamily(
            "p2c_flow_runs", "Integration runs in the store, by flow and status.", labels=["flow", "status"]
        )
        for (flow, status), n in sorted((await repo.runs()).items()):
            runs.add_metric([flow, status], n)
        exceptions = GaugeMetricFamily(
            "p2c_exceptions",
            "Exceptions in the store, by flow, reason code and status (OPEN, REPLAYING, RESOLVED, ...).",
            labels=["flow", "reason", "status"],
        )
        for (flow, reason, status), n in sorted((await repo.exceptions()).items()):
            exceptions.add_metric([flow, reason, status], n)

        for done in await repo.resolved_since(self._resolved_mark):
            self.resolution.labels(done.flow).observe(max(0.0, (done.ended - done.began).total_seconds()))
            self._resolved_mark = max(self._resolved_mark, done.ended)
        for done in await repo.provisioned_since(self._provisioned_mark, flow=PROVISION_FLOW):
            self.provisioning_cycle.observe(max(0.0, (done.ended - done.began).total_seconds()))
            self._provisioned_mark = max(self._provisioned_mark, done.ended)
        self.snapshot.families = [depth, age, runs, exceptions]


def refresh_before_scrape(store_metrics: StoreMetrics) -> Scrape:
    """``Metrics.before_scrape`` for an app: refresh from the store of the app's running runtime."""

    async def before(request: Request) -> None:
        runtime = getattr(request.app.state, "runtime", None)
        sessionmaker = getattr(runtime, "sessionmaker", None)
        if isinstance(sessionmaker, async_sessionmaker):
            await store_metrics.refresh(sessionmaker)

    return before
