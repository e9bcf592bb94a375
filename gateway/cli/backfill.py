"""``p2c backfill``: match the records the three systems held before the gateway and fill the store's
cross-references (see ``mutations.backfill``)::

    p2c migrate && p2c backfill
    p2c backfill --database-url postgresql+asyncpg://p2c@db:5432/p2c

Systems come from settings like the server's: a system without ``base_url`` is its in-process sandbox
seeded with the demo firm (``P2C_DEMO_SEED``/``P2C_DEMO_ACCOUNTS``), which is the same firm ``p2c serve``
seeds. Exits 0 when the run completes, exceptions or not (they are counted and left in the queue for a
person); non-zero only when a system or the store cannot be reached.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gateway.cli._boundary import reported_errors
from gateway.runtime.startup import preflight
from gateway.settings import Settings, load_settings
from gateway.worker import open_flow_deps
from mutations.backfill import BackfillReport
from mutations.backfill import backfill as run_backfill
from mutations.deps import FlowDeps


@asynccontextmanager
async def connected_systems(settings: Settings) -> AsyncIterator[FlowDeps]:
    """The three connectors, the store and the mapping, built from ``settings`` and closed on exit: what a
    one-shot command (backfill, reconcile) needs — the worker's own wiring, after the same preflight."""
    await preflight(settings, migrate_store=False)
    async with open_flow_deps(settings) as deps:
        yield deps


async def backfill_from_settings(settings: Settings) -> BackfillReport:
    """Build the three connectors and the store from ``settings``, run backfill, close everything."""
    async with connected_systems(settings) as systems:
        return await run_backfill(
            crm=systems.crm, psa=systems.psa, erp=systems.erp, sessionmaker=systems.sessionmaker
        )


def render(report: BackfillReport) -> Table:
    table = Table(title=f"backfill run {report.run_id}", show_header=True, header_style="bold")
    table.add_column("what")
    table.add_column("count", justify="right")
    rows: list[tuple[str, int | str]] = [("accounts read", report.accounts)]
    rows += [(f"  matched by {rule.replace('_', ' ')}", n) for rule, n in report.matched.items()]
    rows += [
        ("  kept the store's existing link", report.kept_existing),
        ("  MATCH_MISSING", report.missing),
        ("  MATCH_AMBIGUOUS", report.ambiguous),
        ("ERP customers matched by no account", report.erp_customers_unmatched),
        ("PSA clients linked", report.psa_clients_linked),
        ("PSA clients unmatched", report.client_exceptions),
        ("projects linked (PSA ↔ ERP)", report.projects_linked),
        ("projects in the ERP only", report.projects_erp_only),
        ("PSA projects unmatched", report.project_exceptions),
        ("links contradicting the store", report.link_conflicts),
        ("cross-references created", report.xrefs_created),
        ("exceptions opened", report.exceptions_opened),
        ("exceptions still open from earlier runs", report.exceptions_still_open),
        ("exceptions resolved", report.exceptions_resolved),
        ("duration", f"{report.duration_s:.2f} s"),
    ]
    for label, value in rows:
        table.add_row(label, str(value))
    return table


def backfill(
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="store URL (default: P2C_DATABASE_URL)")
    ] = None,
) -> None:
    """Match accounts, customers, clients and projects the systems already hold; fill cross-references."""
    with reported_errors():
        overrides = {"database_url": database_url} if database_url is not None else {}
        settings = load_settings(complete=False, **overrides)
        report = asyncio.run(backfill_from_settings(settings))
    Console().print(render(report))
    if report.exceptions:
        typer.echo(f"{report.exceptions} record(s) need a person: see the exception queue (flow 'backfill')")
    else:
        typer.echo("every record matched")


def register(app: typer.Typer) -> None:
    app.command()(backfill)
