"""The gateway's Starlette application.

    app = create_app(load_settings())

Middleware, outermost first: Starlette's error handler (masked 500) → correlation id → request log and
metrics → Starlette's exception handler → routes. The lifespan builds the ``Runtime`` (store engine,
sessionmaker, one connector per system, in-process sandboxes) and closes it on shutdown.

Routes: ``/healthz``, ``/readyz``, ``/metrics``, ``/graphql`` (HTTP and WebSocket), ``/graphql/stream``
(subscriptions over SSE), ``/console`` (the ops console) and, in embedded
mode, ``/sandbox/<crm|psa|erp>/...``. A later feature adds its routes in ``routes()``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.types import ASGIApp, Scope

from gateway.console import console_routes
from gateway.correlation import CorrelationIdMiddleware
from gateway.errors import exception_handlers
from gateway.graphql import graphql_app
from gateway.health import healthz, readyz
from gateway.instrumentation import InstrumentationMiddleware, instrument_schema
from gateway.logs import configure_logging, get_logger
from gateway.metrics import Metrics, metrics_endpoint
from gateway.runtime import Runtime, open_runtime
from gateway.runtime.embedded import SandboxMount
from gateway.settings import Settings, load_settings
from gateway.sse import sse_endpoint
from gateway.store_metrics import StoreMetrics, refresh_before_scrape
from gateway.tracing import configure_tracing, shutdown_tracing
from gateway.types import SYSTEMS, SystemName
from gateway.webhooks import webhook_routes
from subgraphs.common.transport import add_observer, remove_observer

log = get_logger("gateway.app")


def create_app(settings: Settings, *, metrics: Metrics | None = None) -> Starlette:
    settings.require_complete()
    metrics = metrics if metrics is not None else Metrics()
    if metrics.before_scrape is None:  # a registry takes the store-derived instruments once
        metrics.before_scrape = refresh_before_scrape(StoreMetrics(metrics))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tracer_provider = configure_tracing(settings)
        add_observer(metrics)  # this process's upstream attempts → this app's instruments
        try:
            async with open_runtime(settings, metrics) as runtime:
                app.state.runtime = runtime
                log.info(
                    "gateway.started",
                    mode=settings.mode,
                    embedded=",".join(settings.embedded_systems()) or "none",
                )
                try:
                    yield
                finally:
                    log.info("gateway.stopping")
                    del app.state.runtime
        finally:
            remove_observer(metrics)
            shutdown_tracing(tracer_provider)

    app = Starlette(
        routes=routes(settings, metrics),
        middleware=[
            Middleware(CorrelationIdMiddleware),
            Middleware(InstrumentationMiddleware, metrics=metrics),
        ],
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    return app


def routes(settings: Settings, metrics: Metrics) -> list[BaseRoute]:
    graphql = graphql_app(settings)
    instrument_schema(graphql.schema, metrics)  # operation spans and latency
    table: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint(metrics), methods=["GET"], name="metrics"),
        Route("/graphql", graphql, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql),
        Route("/graphql/stream", sse_endpoint(graphql), methods=["GET"]),  # subscriptions over SSE
    ]
    # All three are mounted whatever the settings say; one not embedded answers 404.
    table.extend(webhook_routes())
    table.extend(console_routes())  # the ops console's static files; its data comes from /graphql
    table.extend(Mount(f"/sandbox/{name}", app=SandboxMount(name, _sandbox_of)) for name in SYSTEMS)
    return table


def _sandbox_of(scope: Scope, name: SystemName) -> ASGIApp | None:
    runtime = getattr(scope["app"].state, "runtime", None)
    return runtime.systems[name].sandbox if isinstance(runtime, Runtime) else None


def create_app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory`` (several workers, reload): settings from the environment."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format or "console")
    return create_app(settings)
