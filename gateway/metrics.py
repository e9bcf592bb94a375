"""Prometheus metrics of one app instance (or one worker process).

Each app owns its ``CollectorRegistry`` (never the process-global one), so tests and embedded tools can
build several apps in one process. What is measured, and where:

    p2c_http_requests_total / p2c_http_request_duration_seconds    route template, method, status
    p2c_graphql_operation_duration_seconds                          operation name, type, outcome
    p2c_subscription_connections                                    transport (websocket, sse)
    p2c_upstream_requests_total / p2c_upstream_request_duration_seconds
                                                                    system, endpoint template, status
    p2c_upstream_retries_total                                      system, endpoint, cause
    p2c_upstream_rate_limit_waits_total / ..._wait_seconds_total    system
    store-derived (gateway only, read at scrape — ``gateway.store_metrics``): queue depth and age, flow
    runs by status, exceptions by reason and status, time to resolution, provisioning cycle time

Upstream figures arrive through ``subgraphs.common.transport``'s observer hook (``Metrics`` is an
``UpstreamObserver``), once per attempt, on the event loop: the label children are cached so an attempt
costs two dictionary hits and two locked additions. Label values are bounded: endpoint templates (never raw
URLs) capped per system, GraphQL operation names capped per app, overflow in one ``other`` label.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response

# Request latencies of a gateway in front of three SaaS APIs: milliseconds to tens of seconds.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

OTHER: Final = "other"
ANONYMOUS: Final = "anonymous"
#: Distinct endpoint templates per system, and operation names per app, before the rest share ``other``.
MAX_ENDPOINTS_PER_SYSTEM: Final = 64
MAX_OPERATION_NAMES: Final = 200
_OPERATION_NAME: Final = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,63}")

Scrape = Callable[[Request], Awaitable[None]]


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "p2c_http_requests_total",
            "HTTP requests served, by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.http_request_duration = Histogram(
            "p2c_http_request_duration_seconds",
            "Time to serve an HTTP request, by route template, method and status.",
            ["route", "method", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.graphql_operation_duration = Histogram(
            "p2c_graphql_operation_duration_seconds",
            "Time to execute a GraphQL query or mutation (parse to result), by operation name, type "
            "(query, mutation) and outcome (ok, error: the result carries errors).",
            ["operation", "type", "outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.subscription_connections = Gauge(
            "p2c_subscription_connections",
            "Open subscription connections, by transport (websocket, sse).",
            ["transport"],
            registry=self.registry,
        )
        self.upstream_requests = Counter(
            "p2c_upstream_requests_total",
            "Requests (attempts) sent to a vendor, by system, endpoint template and status (HTTP status, "
            "or timeout / transport_error / cancelled).",
            ["system", "endpoint", "status"],
            registry=self.registry,
        )
        self.upstream_request_duration = Histogram(
            "p2c_upstream_request_duration_seconds",
            "Time a vendor took to answer one attempt, body included, by system, endpoint and status.",
            ["system", "endpoint", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream_retries = Counter(
            "p2c_upstream_retries_total",
            "Upstream attempts retried, by system, endpoint and cause (rate_limited, status, error).",
            ["system", "endpoint", "cause"],
            registry=self.registry,
        )
        self.upstream_rate_limit_waits = Counter(
            "p2c_upstream_rate_limit_waits_total",
            "Waits before a retry because a vendor said its rate limit was reached, by system.",
            ["system"],
            registry=self.registry,
        )
        self.upstream_rate_limit_wait_seconds = Counter(
            "p2c_upstream_rate_limit_wait_seconds_total",
            "Seconds spent waiting on vendors' rate limits (Retry-After or backoff), by system.",
            ["system"],
            registry=self.registry,
        )
        self._upstream: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._endpoints: dict[str, set[str]] = {}
        self._operations: set[str] = set()
        self._operation_children: dict[tuple[str | None, str, bool], Any] = {}
        #: What ``/metrics`` runs before rendering (the store-derived figures); set by the app.
        self.before_scrape: Scrape | None = None

    # --- HTTP --------------------------------------------------------------------------------------------

    def observe_request(self, *, route: str, method: str, status: int, duration_s: float) -> None:
        labels = {"route": route, "method": method, "status": str(status)}
        self.http_requests.labels(**labels).inc()
        self.http_request_duration.labels(**labels).observe(duration_s)

    # --- GraphQL -----------------------------------------------------------------------------------------

    def operation_label(self, name: str | None) -> str:
        """A bounded label for a client-chosen operation name."""
        if not name:
            return ANONYMOUS
        if name in self._operations:
            return name
        if not _OPERATION_NAME.fullmatch(name) or len(self._operations) >= MAX_OPERATION_NAMES:
            return OTHER
        self._operations.add(name)
        return name

    def observe_operation(self, name: str | None, type_: str, *, ok: bool, duration_s: float) -> None:
        key = (name, type_, ok)
        child = self._operation_children.get(key)
        if child is None:
            child = self.graphql_operation_duration.labels(
                self.operation_label(name), type_, "ok" if ok else "error"
            )
            if len(self._operation_children) < 4 * MAX_OPERATION_NAMES:
                self._operation_children[key] = child
        child.observe(duration_s)

    # --- upstream (subgraphs.common.transport.UpstreamObserver) ------------------------------------------

    def _endpoint(self, system: str, endpoint: str) -> str:
        seen = self._endpoints.setdefault(system, set())
        if endpoint in seen:
            return endpoint
        if len(seen) >= MAX_ENDPOINTS_PER_SYSTEM:
            return OTHER
        seen.add(endpoint)
        return endpoint

    def upstream_request(
        self, system: str, endpoint: str, status: str, attempt: int, duration_s: float
    ) -> None:
        key = (system, endpoint, status)
        children = self._upstream.get(key)
        if children is None:
            labels = (system, self._endpoint(system, endpoint), status)
            children = (
                self.upstream_requests.labels(*labels),
                self.upstream_request_duration.labels(*labels),
            )
            if len(self._upstream) < 4 * MAX_ENDPOINTS_PER_SYSTEM * 16:
                self._upstream[key] = children
        children[0].inc()
        children[1].observe(duration_s)

    def upstream_retry(self, system: str, endpoint: str, cause: str, wait_s: float) -> None:
        self.upstream_retries.labels(system, self._endpoint(system, endpoint), cause).inc()
        if cause == "rate_limited":
            self.upstream_rate_limit_waits.labels(system).inc()
            self.upstream_rate_limit_wait_seconds.labels(system).inc(wait_s)

    # --- exposition --------------------------------------------------------------------------------------

    def render(self) -> bytes:
        return generate_latest(self.registry)


def metrics_endpoint(metrics: Metrics) -> Callable[[Request], Awaitable[Response]]:
    """The ``GET /metrics`` endpoint over one app's registry (Prometheus text format); the store-derived
    figures are refreshed first (``Metrics.before_scrape``)."""

    async def endpoint(request: Request) -> Response:
        if metrics.before_scrape is not None:
            await metrics.before_scrape(request)
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return endpoint
