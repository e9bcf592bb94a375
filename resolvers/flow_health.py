"""``flowHealth(hours, buckets)``: the ops console's overview — each flow's runs and outcomes, queue,
open exceptions and a throughput series over the last ``hours``, and the SLA figures.

    query { flowHealth(hours: 24, buckets: 24) {
      asOf bucketMinutes
      flows { flow status reasons runs succeeded failed successRate queueDepth openExceptions throughput }
      sla { name targetSeconds samples p50Seconds p95Seconds withinTarget met }
    } }

Integration admins, finance and auditors only (``FORBIDDEN`` otherwise), like ``syncStatus``. Runs and
exceptions count only in the caller's legal entities; queue figures are operational and cover every
entity (as in ``syncStatus``).

How a flow's status is decided (most severe wins):

- RED: an open exception older than the resolution target (``RESOLUTION_TARGET``), a success rate under
  ``RED_SUCCESS_RATE``, or a due work item waiting longer than ``RED_WAIT``;
- AMBER: any open exception, a success rate under ``AMBER_SUCCESS_RATE``, or a wait over ``AMBER_WAIT``;
- GREEN otherwise.

Throughput counts the flow's succeeded runs per bucket when it recorded any in the window (provisioning
records one per deal, whether the mutation, the webhook or the poller started it), else its work items
that became DONE (time and expense posting record one run per batch, under another flow name).

SLA figures (p50, p95 and the share within target, over the window):

- ``provisioning_cycle_time``: a provisioning run's first start to its success, replays included
  (closed-won as the gateway saw it → ERP project active); target ``PROVISIONING_TARGET``;
- ``time_posting_latency``: an approved time entry queued → posted (work item DONE); target
  ``POSTING_TARGET``;
- ``exception_time_to_resolution``: raised → resolved or dismissed; target ``RESOLUTION_TARGET``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import strawberry

from canonical.enums import HealthStatus
from canonical.errors import Problem, ValidationFailed
from mutations.posting.model import POST_TIME
from mutations.provisioning.outcomes import FLOW as PROVISION_FLOW
from resolvers.context import Info
from resolvers.operations import now_of
from resolvers.sync import FLOWS, SYNC_READERS
from resolvers.types.flow_health import FlowHealth, FlowHealthReport, SlaFigure
from store.repositories import WorkQueueRepo
from store.repositories.queue import QueueStats
from store.repositories.run_stats import RunSample, RunStatsRepo, WorkSample
from store.repositories.sync_stats import ExceptionGroup, SyncStatsRepo

FLOW_HEALTH = "flowHealth"
MAX_HOURS = 24 * 31
MAX_BUCKETS = 200

PROVISIONING_TARGET = timedelta(minutes=15)
POSTING_TARGET = timedelta(minutes=15)
RESOLUTION_TARGET = timedelta(hours=4)
AMBER_SUCCESS_RATE = 0.95
RED_SUCCESS_RATE = 0.8
AMBER_WAIT = timedelta(minutes=5)
RED_WAIT = timedelta(minutes=15)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q`` percentile (0 < q ≤ 100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def sla_figure(name: str, description: str, target: timedelta, durations: Sequence[float]) -> SlaFigure:
    limit = target.total_seconds()
    p95 = percentile(durations, 95)
    return SlaFigure(
        name=name,
        description=description,
        target_seconds=int(limit),
        samples=len(durations),
        p50_seconds=_round(percentile(durations, 50)),
        p95_seconds=_round(p95),
        within_target=round(sum(d <= limit for d in durations) / len(durations), 4) if durations else None,
        met=None if p95 is None else p95 <= limit,
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


@dataclass(frozen=True)
class Buckets:
    start: datetime
    size: timedelta
    count: int

    def series(self, moments: Iterable[datetime | None]) -> list[int]:
        counts = [0] * self.count
        for moment in moments:
            if moment is None or moment <= self.start:
                continue
            index = min(self.count - 1, int((moment - self.start) / self.size))
            counts[index] += 1
        return counts


def _seconds(age: timedelta | None) -> int | None:
    return None if age is None else max(0, int(age.total_seconds()))


def judge(
    success_rate: float | None, oldest_exception: timedelta | None, waiting: timedelta | None
) -> tuple[HealthStatus, list[str]]:
    red: list[str] = []
    amber: list[str] = []
    if oldest_exception is not None:
        if oldest_exception > RESOLUTION_TARGET:
            red.append(f"an open exception is older than {_human(RESOLUTION_TARGET)}")
        else:
            amber.append("open exceptions")
    if success_rate is not None:
        if success_rate < RED_SUCCESS_RATE:
            red.append(f"success rate {success_rate:.0%} < {RED_SUCCESS_RATE:.0%}")
        elif success_rate < AMBER_SUCCESS_RATE:
            amber.append(f"success rate {success_rate:.0%} < {AMBER_SUCCESS_RATE:.0%}")
    if waiting is not None:
        if waiting > RED_WAIT:
            red.append(f"work waiting longer than {_human(RED_WAIT)}")
        elif waiting > AMBER_WAIT:
            amber.append(f"work waiting longer than {_human(AMBER_WAIT)}")
    if red:
        return HealthStatus.RED, red + amber
    return (HealthStatus.AMBER, amber) if amber else (HealthStatus.GREEN, [])


def _human(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    return f"{minutes // 60} h" if minutes >= 60 and minutes % 60 == 0 else f"{minutes} min"


def flow_health(
    flow: str,
    kind: str | None,
    runs: list[RunSample],
    queue: QueueStats | None,
    done: list[WorkSample],
    groups: list[ExceptionGroup],
    buckets: Buckets,
    now: datetime,
) -> FlowHealth:
    succeeded = [r for r in runs if r.status == "SUCCEEDED"]
    failed = [r for r in runs if r.status == "FAILED"]
    finished = len(succeeded) + len(failed)
    rate = len(succeeded) / finished if finished else None
    durations = [
        (r.finished_at - r.started_at).total_seconds() * 1000 for r in succeeded if r.finished_at is not None
    ]
    mine = [g for g in groups if g.flow == flow]
    oldest = min((g.oldest for g in mine), default=None)
    oldest_age = None if oldest is None else now - oldest
    waiting = None if queue is None else queue.oldest_waiting_age
    status, reasons = judge(rate, oldest_age, waiting)
    p50, p95 = percentile(durations, 50), percentile(durations, 95)
    if runs or kind is None:  # a flow that records runs counts them, whichever trigger started them
        unit, series = "runs", buckets.series(r.finished_at for r in succeeded)
    else:  # time and expense posting record batch runs, not one per item: count the items
        unit, series = "work items", buckets.series(w.finished_at for w in done if w.kind == kind)
    return FlowHealth(
        flow=flow,
        queue_kind=kind,
        status=status,
        reasons=reasons,
        runs=len(runs),
        succeeded=len(succeeded),
        failed=len(failed),
        running=sum(r.status == "RUNNING" for r in runs),
        success_rate=None if rate is None else round(rate, 4),
        p50_duration_ms=None if p50 is None else int(p50),
        p95_duration_ms=None if p95 is None else int(p95),
        queue_depth=None if queue is None else queue.depth,
        oldest_waiting_seconds=_seconds(waiting),
        open_exceptions=sum(g.count for g in mine),
        oldest_open_exception_seconds=_seconds(oldest_age),
        throughput_unit=unit,
        throughput=series,
        failures=buckets.series(r.finished_at for r in failed),
    )


async def flow_health_report(info: Info, hours: int, buckets: int) -> FlowHealthReport:
    ctx = info.context
    ctx.principal.require_role(*SYNC_READERS, action=FLOW_HEALTH)
    problems = []
    if not 1 <= hours <= MAX_HOURS:
        problems.append(Problem("hours", f"must be between 1 and {MAX_HOURS}", "OUT_OF_RANGE"))
    if not 1 <= buckets <= MAX_BUCKETS:
        problems.append(Problem("buckets", f"must be between 1 and {MAX_BUCKETS}", "OUT_OF_RANGE"))
    if problems:
        raise ValidationFailed(problems)
    now = now_of(info)
    window = timedelta(hours=hours)
    since = now - window

    def clock() -> datetime:
        return now

    async with ctx.sessionmaker() as session:
        stats = RunStatsRepo(session, clock=clock)
        queue = WorkQueueRepo(session, clock=clock)
        queues = {kind: await queue.stats(kind) for kind in FLOWS}
        runs = await stats.finished_runs(since)
        done = await stats.work_done(FLOWS, since)
        resolutions = await stats.resolutions(since)
        groups = await SyncStatsRepo(session, clock=clock).active_exceptions()
    principal = ctx.principal
    runs = principal.visible(runs, lambda r: r.legal_entity)
    groups = principal.visible(groups, lambda g: g.legal_entity)
    resolutions = principal.visible(resolutions, lambda r: r.legal_entity)
    grid = Buckets(since, window / buckets, buckets)

    kinds = {flow: kind for kind, flow in FLOWS.items()}
    names = list(kinds) + sorted(({r.flow for r in runs} | {g.flow for g in groups}) - set(kinds))
    flows = [
        flow_health(
            name,
            kinds.get(name),
            [r for r in runs if r.flow == name],
            queues.get(kinds[name]) if name in kinds else None,
            done,
            groups,
            grid,
            now,
        )
        for name in names
    ]
    provisioned = [
        (r.finished_at - r.started_at).total_seconds()
        for r in runs
        if r.flow == PROVISION_FLOW and r.status == "SUCCEEDED" and r.finished_at is not None
    ]
    posted = [(w.finished_at - w.created_at).total_seconds() for w in done if w.kind == POST_TIME]
    resolved = [(r.resolved_at - r.created_at).total_seconds() for r in resolutions]
    return FlowHealthReport(
        as_of=now,
        window_hours=hours,
        bucket_minutes=max(1, int(grid.size.total_seconds() // 60)),
        flows=flows,
        sla=[
            sla_figure(
                "provisioning_cycle_time",
                "closed-won deal to ERP project active: first attempt to success, replays included",
                PROVISIONING_TARGET,
                provisioned,
            ),
            sla_figure(
                "time_posting_latency",
                "approved time entry queued to posted in the ERP",
                POSTING_TARGET,
                posted,
            ),
            sla_figure(
                "exception_time_to_resolution",
                "exception raised to resolved or dismissed",
                RESOLUTION_TARGET,
                resolved,
            ),
        ],
    )


@strawberry.type
class FlowHealthQuery:
    @strawberry.field(
        description="Each flow's runs, outcomes, queue, open exceptions and throughput over the last "
        "`hours` (in `buckets` for a sparkline), and the SLA figures. Integration admins, finance and "
        "auditors only"
    )
    async def flow_health(self, info: Info, hours: int = 24, buckets: int = 24) -> FlowHealthReport:
        return await flow_health_report(info, hours, buckets)


__all__ = [
    "FLOW_HEALTH",
    "Buckets",
    "FlowHealthQuery",
    "flow_health_report",
    "judge",
    "percentile",
    "sla_figure",
]
