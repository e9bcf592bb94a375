"""OpenTelemetry tracing: one span per GraphQL operation, per upstream attempt and per flow run and step,
each carrying the correlation id (``p2c.correlation_id``), so one id finds a request's whole trace.

    P2C_TRACING_EXPORTER=otlp                                  # none (default) | console | otlp
    P2C_TRACING_ENDPOINT=http://collector:4318/v1/traces       # unset → OTEL_EXPORTER_OTLP_* or localhost
    P2C_TRACING_SAMPLE_RATIO=0.1                               # of new traces; children follow their parent

    provider = configure_tracing(settings, service="p2c-gateway")   # None when the exporter is none
    ...
    shutdown_tracing(provider)                                      # flushes what is still buffered

Where the spans come from:

- ``gateway.instrumentation.OperationInstrumentation`` — the GraphQL operation, named after it (SERVER);
- ``subgraphs.common.transport.ObservedTransport`` — each attempt at a vendor (CLIENT): system, endpoint
  template, status, attempt number; the tracer reaches it through ``transport.set_tracer``;
- ``mutations.governance.FlowRunner`` — ``flow <name>`` per run and ``step <name>`` per step, through the
  OpenTelemetry API's global provider (``mutations`` may not import ``gateway``).

With the exporter ``none`` nothing is installed: the API's no-op provider serves the flows, and the GraphQL
extension and the transport skip their spans after one check — the read path pays nothing for tracing.

The provider is the process's (OpenTelemetry's global provider is set once per process): the first
``configure_tracing`` with an exporter installs it, later calls reuse it. ``CorrelationIdProcessor`` puts
the correlation id on every span at its start: the request's (``gateway.correlation``) or, in a worker,
its parent span's (a flow run sets its own).
"""

from __future__ import annotations

from typing import Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Tracer

from canonical.errors import ConfigurationError
from gateway.correlation import current_correlation_id
from gateway.logs import get_logger
from gateway.settings import Settings
from subgraphs.common import transport

log = get_logger("gateway.tracing")

CORRELATION_ID: Final = "p2c.correlation_id"
GATEWAY_TRACER: Final = "p2c.gateway"
UPSTREAM_TRACER: Final = "p2c.upstream"

_provider: TracerProvider | None = None
_operation_tracer: Tracer | None = None


class CorrelationIdProcessor(SpanProcessor):
    """Stamps ``p2c.correlation_id`` on each span as it starts: the one already set on it, else the
    request's, else its parent's (a flow in a worker has no request, its run span carries the id)."""

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        attributes = span.attributes
        if attributes is not None and CORRELATION_ID in attributes:
            return
        correlation_id = current_correlation_id()
        if correlation_id is None:
            parent = trace.get_current_span(parent_context)
            parent_attributes = getattr(parent, "attributes", None)
            value = parent_attributes.get(CORRELATION_ID) if parent_attributes else None
            correlation_id = value if isinstance(value, str) else None
        if correlation_id is not None:
            span.set_attribute(CORRELATION_ID, correlation_id)

    def on_end(self, span: ReadableSpan) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def build_provider(
    exporter: SpanExporter, *, service: str, sample_ratio: float = 1.0, batch: bool = True
) -> TracerProvider:
    """A provider that stamps correlation ids and sends finished spans to ``exporter`` — in batches off
    the event loop (``batch``), or one by one as they end (tests, with an in-memory exporter)."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": service}),
        sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
    )
    provider.add_span_processor(CorrelationIdProcessor())
    provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    return provider


def install(provider: TracerProvider) -> TracerProvider:
    """Make ``provider`` the process's tracer provider → the one in force (an earlier one stays)."""
    global _provider, _operation_tracer
    if _provider is not None:
        if _provider is not provider:
            log.info("gateway.tracing.already_installed", reason="the process's first provider stays")
        return _provider
    trace.set_tracer_provider(provider)
    _provider = provider
    _operation_tracer = provider.get_tracer(GATEWAY_TRACER)
    transport.set_tracer(provider.get_tracer(UPSTREAM_TRACER))
    return provider


def exporter_for(settings: Settings) -> SpanExporter | None:
    """The span exporter the settings ask for; None for ``none``."""
    kind = settings.tracing_exporter
    if kind == "none":
        return None
    if kind == "console":
        return ConsoleSpanExporter()
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise ConfigurationError(
            "P2C_TRACING_EXPORTER=otlp needs opentelemetry-exporter-otlp-proto-http"
        ) from exc
    return (
        OTLPSpanExporter(endpoint=settings.tracing_endpoint)
        if settings.tracing_endpoint
        else OTLPSpanExporter()
    )


def configure_tracing(settings: Settings, *, service: str = "p2c-gateway") -> TracerProvider | None:
    """Install tracing as ``settings`` say → the provider in force, None when the exporter is ``none``."""
    exporter = exporter_for(settings)
    if exporter is None:
        return None
    provider = install(build_provider(exporter, service=service, sample_ratio=settings.tracing_sample_ratio))
    log.info(
        "gateway.tracing.started",
        exporter=settings.tracing_exporter,
        service=service,
        sample_ratio=settings.tracing_sample_ratio,
    )
    return provider


def shutdown_tracing(provider: TracerProvider | None) -> None:
    """Flush the spans still buffered (at the end of a process's life)."""
    if provider is not None:
        provider.force_flush(timeout_millis=5000)


def operation_tracer() -> Tracer | None:
    """The tracer of GraphQL operation spans; None while no provider is installed."""
    return _operation_tracer


__all__ = [
    "CORRELATION_ID",
    "CorrelationIdProcessor",
    "build_provider",
    "configure_tracing",
    "exporter_for",
    "install",
    "operation_tracer",
    "shutdown_tracing",
]
