"""The ops console's overview types: each flow's health over a window (runs, outcomes, queue, open
exceptions, a throughput series for a sparkline) and the SLA figures."""

from __future__ import annotations

from datetime import datetime

import strawberry

from canonical.enums import HealthStatus
from resolvers.types import account as _account  # noqa: F401  (registers HealthStatus as a GraphQL enum)


@strawberry.type(description="One flow over the window: its runs, queue, open exceptions and throughput")
class FlowHealth:
    flow: str = strawberry.field(description="the flow name runs and exceptions carry")
    queue_kind: str | None = strawberry.field(description="its work item kind; null when it has no queue")
    status: HealthStatus
    reasons: list[str] = strawberry.field(description="why it is not GREEN; empty when it is")
    runs: int = strawberry.field(description="runs finished in the window, plus those still running")
    succeeded: int
    failed: int
    running: int
    success_rate: float | None = strawberry.field(description="succeeded / finished; null when none")
    p50_duration_ms: int | None = strawberry.field(description="run duration, first start to finish")
    p95_duration_ms: int | None
    queue_depth: int | None = strawberry.field(description="waiting work items; null without a queue")
    oldest_waiting_seconds: int | None
    open_exceptions: int = strawberry.field(description="OPEN or REPLAYING, in your legal entities")
    oldest_open_exception_seconds: int | None
    throughput_unit: str = strawberry.field(description="what `throughput` counts: work items or runs")
    throughput: list[int] = strawberry.field(
        description="completed per bucket of `bucketMinutes`, oldest first (a sparkline)"
    )
    failures: list[int] = strawberry.field(description="failed runs per bucket, oldest first")


@strawberry.type(description="A service-level figure over the window against its target")
class SlaFigure:
    name: str
    description: str
    target_seconds: int
    samples: int
    p50_seconds: float | None
    p95_seconds: float | None
    within_target: float | None = strawberry.field(description="share of samples within the target, 0..1")
    met: bool | None = strawberry.field(description="p95 within target; null without samples")


@strawberry.type
class FlowHealthReport:
    as_of: datetime
    window_hours: int
    bucket_minutes: int
    flows: list[FlowHealth]
    sla: list[SlaFigure]


__all__ = ["FlowHealth", "FlowHealthReport", "SlaFigure"]
