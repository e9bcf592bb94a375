"""Per-request log line and metrics, as one pure ASGI middleware; GraphQL operation spans and latency, as
one Strawberry extension.

The route *template* (``/sandbox/crm/v2/projects/{id}``), never the raw path, labels the metrics, so
label cardinality stays bounded; unmatched paths share one label. The middleware also counts open
subscription connections: accepted WebSockets, and SSE streams (``/graphql/stream``) while they answer.

Strawberry ships an ``OpenTelemetryExtension``; it does not fit here: it never makes the operation span
current (so upstream spans would not hang under it), names it ``GraphQL Query: <name>``, copies the whole
query and every resolver's arguments into attributes (ids, personal data) and wraps every resolver in a
span of its own — the read path's hundreds of fields would each pay for one. ``OperationInstrumentation``
keeps to one span per operation, named after the operation, and its latency histogram.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextvars import Token
from typing import Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry import Schema
from strawberry.extensions import SchemaExtension
from strawberry.schema.base import BaseSchema
from strawberry.types.execution import ExecutionContext

from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.tracing import operation_tracer

UNMATCHED: Final = "<unmatched>"
_PROPAGATOR: Final = TraceContextTextMapPropagator()
SSE_ROUTE: Final = "/graphql/stream"
log = get_logger("gateway.request")


def route_template(scope: Scope) -> str:
    """The template of the innermost route that handled a request, prefixed by the mounts above it.

    Starlette's router records the route it chose in ``scope["route"]``; a mount moves the matched
    prefix into ``root_path``, which is how the mounted part is recovered.
    """
    route = scope.get("route")
    path = getattr(route, "path", None) if isinstance(route, BaseRoute) else None
    if not isinstance(path, str):
        return UNMATCHED
    root_path: str = scope.get("root_path", "")
    app_root_path: str = scope.get("app_root_path", root_path)
    mounted = root_path[len(app_root_path) :] if root_path.startswith(app_root_path) else ""
    if isinstance(route, Mount):
        # The request ended in a mounted app without its own router: the prefix is the template.
        return mounted or path or "/"
    return (mounted + path) or "/"


class InstrumentationMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before it starts a response
        streaming = False

        async def send_and_record(message: Message) -> None:
            nonlocal status, streaming
            if message["type"] == "http.response.start":
                status = message["status"]
                if status == 200 and route_template(scope) == SSE_ROUTE:
                    streaming = True
                    self.metrics.subscription_connections.labels("sse").inc()
            await send(message)

        # A caller that traces (W3C ``traceparent``) gets our spans in its trace; only with tracing on.
        token = _caller_trace(scope) if operation_tracer() is not None else None
        try:
            await self.app(scope, receive, send_and_record)
        finally:
            if token is not None:
                otel_context.detach(token)
            if streaming:
                self.metrics.subscription_connections.labels("sse").dec()
            duration_s = time.perf_counter() - started
            method: str = scope["method"]
            self.metrics.observe_request(
                route=route_template(scope), method=method, status=status, duration_s=duration_s
            )
            # The path only: query strings may carry secrets and are not needed to follow a request.
            log.info(
                "gateway.request.finished",
                method=method,
                path=scope["path"],
                status=status,
                duration_ms=round(duration_s * 1000, 2),
            )

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        accepted = False

        async def send_and_count(message: Message) -> None:
            nonlocal accepted
            if message["type"] == "websocket.accept" and not accepted:
                accepted = True
                self.metrics.subscription_connections.labels("websocket").inc()
            await send(message)

        try:
            await self.app(scope, receive, send_and_count)
        finally:
            if accepted:
                self.metrics.subscription_connections.labels("websocket").dec()


def _caller_trace(scope: Scope) -> Token[otel_context.Context] | None:
    """Attach the caller's trace context from a ``traceparent`` header → the token to detach, or None."""
    for key, value in scope.get("headers", ()):
        if key == b"traceparent":
            carrier = {"traceparent": value.decode("latin-1")}
            for other, other_value in scope.get("headers", ()):
                if other == b"tracestate":
                    carrier["tracestate"] = other_value.decode("latin-1")
            return otel_context.attach(_PROPAGATOR.extract(carrier))
    return None


class OperationInstrumentation(SchemaExtension):
    """One latency observation per GraphQL query or mutation (subscriptions: none — their lifetime is not
    a latency; ``p2c_subscription_connections`` counts them). ``TracedOperation`` adds the span; the
    factory ``instrument_schema`` installs picks one per operation, so with tracing off strawberry runs
    one hook of ours, not two."""

    def __init__(self, *, metrics: Metrics, execution_context: ExecutionContext | None = None) -> None:
        self.metrics = metrics
        self.span: Span | None = None
        self._started_ns = 0
        if execution_context is not None:
            self.execution_context = execution_context

    def _operation_type(self) -> str:
        try:
            return self.execution_context.operation_type.value
        except Exception:  # no document: the operation failed to parse
            return "unknown"

    def _start_span(self, tracer: trace.Tracer, type_: str) -> Span:
        name = self.execution_context.operation_name
        span = tracer.start_span(
            name or "anonymous",
            kind=SpanKind.SERVER,
            start_time=self._started_ns,
            attributes={"graphql.operation.type": type_},
        )
        if name:
            span.set_attribute("graphql.operation.name", name)
        return span

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        self._started_ns = time.time_ns()
        try:
            yield
        finally:
            self._finish(started)

    def _finish(self, started: float) -> None:
        type_ = self._operation_type()
        if type_ == "subscription":
            return
        context = self.execution_context
        result = context.result
        ok = not context.pre_execution_errors and not (result is not None and result.errors)
        self.metrics.observe_operation(
            context.operation_name, type_, ok=ok, duration_s=time.perf_counter() - started
        )
        tracer = operation_tracer()
        if tracer is None:
            return
        span = self.span or self._start_span(tracer, type_)  # parse/validation failed: no execution
        if not ok:
            span.set_status(Status(StatusCode.ERROR))
        span.end()


class TracedOperation(OperationInstrumentation):
    """``OperationInstrumentation`` and a span: it starts with the operation and is the current span while
    the operation executes, so the upstream spans of its loaders hang under it. Its name is the
    operation's (``anonymous`` without one)."""

    def on_execute(self) -> Iterator[None]:
        tracer = operation_tracer()
        type_ = self._operation_type() if tracer is not None else "subscription"
        if tracer is None or type_ == "subscription":
            yield
            return
        self.span = self._start_span(tracer, type_)
        token = otel_context.attach(trace.set_span_in_context(self.span))
        try:
            yield
        finally:
            otel_context.detach(token)


def instrument_schema(schema: BaseSchema, metrics: Metrics) -> None:
    """Add ``OperationInstrumentation`` to ``schema`` (strawberry builds extensions per operation)."""
    if not isinstance(schema, Schema):
        raise TypeError(f"cannot instrument a {type(schema).__name__}")

    def factory() -> SchemaExtension:
        if operation_tracer() is None:
            return OperationInstrumentation(metrics=metrics)
        return TracedOperation(metrics=metrics)

    schema.extensions = (*schema.extensions, factory)
