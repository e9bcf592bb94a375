"""Prometheus metrics of one app instance.

Each app owns its ``CollectorRegistry`` (never the process-global one), so tests and embedded tools can
build several apps in one process. Later issues add their instruments here, e.g.::

    self.upstream_calls = Counter("p2c_upstream_calls_total", "...", ["system", "outcome"],
                                  registry=self.registry)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response

# Request latencies of a gateway in front of three SaaS APIs: milliseconds to tens of seconds.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


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

    def observe_request(self, *, route: str, method: str, status: int, duration_s: float) -> None:
        labels = {"route": route, "method": method, "status": str(status)}
        self.http_requests.labels(**labels).inc()
        self.http_request_duration.labels(**labels).observe(duration_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def metrics_endpoint(metrics: Metrics) -> Callable[[Request], Awaitable[Response]]:
    """The ``GET /metrics`` endpoint over one app's registry (Prometheus text format)."""

    async def endpoint(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return endpoint
