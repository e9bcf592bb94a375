"""Telemetry of a process that is not the web app — a worker (``p2c worker``) — set up in one place::

    with process_telemetry(settings, service="p2c-worker", metrics_port=9101):
        asyncio.run(run_worker(settings))

Tracing as the settings say (the same ``P2C_TRACING_*`` as the gateway), and with ``metrics_port`` a
Prometheus listener of its own (``http://<host>:<port>/metrics``, on a thread: it answers while the event
loop is busy) serving the process's upstream figures — requests, latency, retries, rate-limit waits. The
store-derived figures (queue, runs, exceptions) are the gateway's to export: every process would report
the same store-wide numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import start_http_server

from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.settings import Settings
from gateway.tracing import configure_tracing, shutdown_tracing
from subgraphs.common.transport import add_observer, remove_observer

log = get_logger("gateway.telemetry")


@contextmanager
def serve_metrics(metrics: Metrics, host: str, port: int) -> Iterator[int]:
    """``metrics`` on ``http://host:port/metrics`` until the block ends → the port bound (0 → any free)."""
    server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    try:
        yield int(server.server_port)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def process_telemetry(
    settings: Settings, *, service: str, metrics_host: str = "127.0.0.1", metrics_port: int | None = None
) -> Iterator[Metrics | None]:
    """Tracing, and with ``metrics_port`` this process's upstream metrics served → its ``Metrics``."""
    provider = configure_tracing(settings, service=service)
    try:
        if metrics_port is None:
            yield None
            return
        metrics = Metrics()
        add_observer(metrics)
        try:
            with serve_metrics(metrics, metrics_host, metrics_port) as port:
                log.info("gateway.metrics.listening", host=metrics_host, port=port, service=service)
                yield metrics
        finally:
            remove_observer(metrics)
    finally:
        shutdown_tracing(provider)
