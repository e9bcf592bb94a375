"""``p2c worker``: run the pollers and work the queue (see ``gateway.worker``)::

    p2c worker                          # until SIGTERM / Ctrl-C; the item in hand is finished first
    p2c worker --once                   # one round of pollers, drain the queue, exit (cron, tests)
    p2c worker --poll-interval 10 --lag 120
    p2c worker --batch 200 --lease 60       # bigger batches; a dead worker's items are retaken after 60 s
    p2c worker --kinds post_time,post_expense   # a worker dedicated to posting (month end)
    p2c worker --metrics-port 9101          # its own /metrics (upstream figures) on 127.0.0.1:9101
    p2c worker --kinds post_time --batch 200 --lanes 2 --erp-slots 15   # month end: share the ERP's 15
    p2c worker --keep-done-hours 24             # delete DONE items after a day (default 7 days)

Any number of workers may run against one PostgreSQL store: items are claimed with ``SKIP LOCKED``.
Systems come from settings like the server's; a system without ``base_url`` is an in-process sandbox of
*this* process, so a long-running worker is meant for real vendor URLs (or ``p2c sandbox`` ones).
Exits 0 when it stopped cleanly, failed items or not (they are in the queue and the exception list);
non-zero only when a system or the store cannot be reached.

A worker is a process of its own: its upstream requests, latency, retries and rate-limit waits are not in
the gateway's ``/metrics``. ``--metrics-port`` serves them on the worker's own listener (scrape each worker
as a target); the queue, run and exception figures come from the store, through the gateway. Tracing
follows ``P2C_TRACING_*`` as in the gateway (service name ``p2c-worker``).
"""

from __future__ import annotations

from contextlib import ExitStack
from datetime import timedelta
from typing import Annotated, Any

import typer

from gateway.cli._boundary import reported_errors
from gateway.logs import configure_logging
from gateway.runtime.loop import run
from gateway.settings import load_settings
from gateway.telemetry import process_telemetry
from gateway.worker import DEFAULT_KEEP_DONE, WorkerReport, run_worker
from store.repositories.queue import DEFAULT_LEASE


def worker(
    once: Annotated[bool, typer.Option("--once", help="drain the queue once and exit")] = False,
    poll_interval: Annotated[
        float, typer.Option("--poll-interval", min=0.1, help="seconds between poller rounds")
    ] = 30.0,
    lag: Annotated[
        float, typer.Option("--lag", min=0.0, help="seconds each poll re-reads before its cursor")
    ] = 60.0,
    batch: Annotated[int, typer.Option("--batch", min=1, max=500, help="items claimed at a time")] = 10,
    lanes: Annotated[
        int,
        typer.Option(
            "--lanes", min=1, max=8, help="batches in hand at once (store work overlaps vendor writes)"
        ),
    ] = 1,
    lease: Annotated[
        float,
        typer.Option(
            "--lease",
            min=1.0,
            help="seconds a claimed item stays ours before another worker "
            "may take it over (a crashed worker's items wait this long)",
        ),
    ] = DEFAULT_LEASE.total_seconds(),
    kinds: Annotated[
        str | None,
        typer.Option(
            "--kinds", help="comma-separated work kinds to take, e.g. post_time,post_expense (default: all)"
        ),
    ] = None,
    erp_slots: Annotated[
        int | None,
        typer.Option(
            "--erp-slots",
            min=1,
            max=256,
            help="ERP requests in flight shared by every worker holding posting work (this integration's "
            "part of the account's cap): 15 over 2 busy workers is 8 + 7, a worker alone takes all 15 "
            "(default: P2C_ERP__MAX_CONCURRENCY per process, not shared)",
        ),
    ] = None,
    keep_done_hours: Annotated[
        float,
        typer.Option(
            "--keep-done-hours",
            min=0.0,
            help="hours finished (DONE) work items stay in the queue before the worker deletes them; "
            "0 keeps them for ever",
        ),
    ] = DEFAULT_KEEP_DONE.total_seconds() / 3600,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="store URL (default: P2C_DATABASE_URL)")
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port", min=0, max=65535, help="serve this worker's Prometheus metrics on this port"
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option("--metrics-host", help="address the metrics listener binds")
    ] = "127.0.0.1",
) -> None:
    """Poll the systems that cannot call webhooks and run queued work (provisioning, ...)."""
    with reported_errors(), ExitStack() as telemetry:
        overrides: dict[str, Any] = {"database_url": database_url} if database_url is not None else {}
        settings = load_settings(complete=False, **overrides)
        configure_logging(settings.log_level, settings.log_format or "console")
        telemetry.enter_context(
            process_telemetry(
                settings, service="p2c-worker", metrics_host=metrics_host, metrics_port=metrics_port
            )
        )
        report = run(  # uvloop when installed (gateway.runtime.loop)
            run_worker(
                settings,
                once=once,
                poll_interval_s=poll_interval,
                lag=timedelta(seconds=lag),
                batch=batch,
                lanes=lanes,
                lease=timedelta(seconds=lease),
                kinds=[k.strip() for k in kinds.split(",") if k.strip()] if kinds is not None else None,
                erp_slots=erp_slots,
                keep_done=timedelta(hours=keep_done_hours) if keep_done_hours > 0 else None,
            )
        )
    typer.echo(summary(report))


def summary(report: WorkerReport) -> str:
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(report.by_kind.items())) or "nothing"
    return (
        f"worker: {report.done} done ({kinds}), {report.retried} to retry, {report.failed} failed, "
        f"{report.polls} poll(s), {report.poll_errors} poll error(s)"
    )


def register(app: typer.Typer) -> None:
    app.command()(worker)
