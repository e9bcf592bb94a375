"""A worker's own metrics listener (``p2c worker --metrics-port``): its upstream attempts, served over HTTP
while the process runs, and nothing left behind when it stops."""

from __future__ import annotations

from typing import Any

import httpx
import typer
from typer.testing import CliRunner

from gateway.cli import worker as worker_cli
from gateway.metrics import Metrics
from gateway.settings import load_settings
from gateway.telemetry import process_telemetry, serve_metrics
from subgraphs.common import transport
from subgraphs.common.transport import ObservedTransport
from tests.gateway.test_metrics import parse, total


async def attempt(system: str, status: int) -> None:
    observed = ObservedTransport(httpx.MockTransport(lambda request: httpx.Response(status)), system)
    async with httpx.AsyncClient(transport=observed, base_url="https://vendor.example") as http:
        await http.get("/v2/projects/1")


def test_the_listener_serves_the_registry_it_was_given() -> None:
    metrics = Metrics()
    metrics.upstream_request("psa", "GET /v2/projects/{id}", "200", 1, 0.02)
    with serve_metrics(metrics, "127.0.0.1", 0) as port:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200
    samples = parse(response.text)
    assert total(samples, "p2c_upstream_requests_total", system="psa", endpoint="GET /v2/projects/{id}") == 1


async def test_process_telemetry_counts_this_process_s_attempts_while_it_lasts() -> None:
    with process_telemetry(load_settings(), service="p2c-worker", metrics_port=0) as metrics:
        assert metrics is not None
        await attempt("erp", 503)
        await attempt("erp", 200)
        assert metrics in transport._observers
    assert metrics not in transport._observers
    await attempt("erp", 200)  # after the worker's telemetry ended: no longer its business
    samples = parse(metrics.render().decode())
    assert total(samples, "p2c_upstream_requests_total", system="erp", status="503") == 1
    assert total(samples, "p2c_upstream_requests_total", system="erp", status="200") == 1


async def test_without_a_port_the_worker_serves_nothing_and_observes_nothing() -> None:
    observers = transport._observers
    with process_telemetry(load_settings(), service="p2c-worker") as metrics:
        assert metrics is None
        assert transport._observers == observers


def test_cli_worker_takes_a_metrics_port(tmp_path: Any) -> None:
    from store.migrate import upgrade_to_head

    url = f"sqlite+aiosqlite:///{tmp_path / 'worker.db'}"
    upgrade_to_head(url)
    app = typer.Typer()
    worker_cli.register(app)
    args = ["--once", "--database-url", url, "--metrics-port", "0", "--metrics-host", "127.0.0.1"]

    result = CliRunner().invoke(app, args, env={"P2C_DEMO_ACCOUNTS": "3"})

    assert result.exit_code == 0, result.output
    assert "worker: 0 done" in result.output
    refused = CliRunner().invoke(app, ["--once", "--metrics-port", "70000"])
    assert refused.exit_code != 0 and "metrics-port" in refused.output
