"""``p2c reconcile``: CRM vs ERP vs PSA for a legal entity and a period (see ``mutations.reconciliation``)::

    p2c reconcile --entity US01 --from 2026-10-01 --to 2026-10-31
    p2c reconcile --entity US01 --from 2026-10-01 --to 2026-10-31 --format csv > october.csv
    p2c reconcile --from 2026-10-01 --to 2026-10-31 --format json --category NOT_POSTED

Formats: ``table`` (the default: a summary per check, then every mismatch), ``csv`` (one row per mismatch,
header first — for a spreadsheet), ``json`` (the whole report: summaries, counts, mismatches).
``--category`` (repeatable) keeps only those categories and the summaries of their checks.

Exit codes: 0 — no mismatch (records not yet synced are reported, not failed); 1 — mismatches found (or,
with an ``error:`` line on stderr, a system or the store did not answer); 2 — bad input (a date, a
category, a format, a period that ends before it starts).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import date
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gateway.cli._boundary import EXIT_BAD_INPUT, fail, reported_errors
from gateway.cli.backfill import connected_systems
from gateway.settings import Settings, load_settings
from mutations.reconciliation import CATEGORIES, ReconciliationReport, reconcile, validate_period

FORMATS = ("table", "csv", "json")
EXIT_MISMATCHES = 1
CSV_COLUMNS = (
    "category",
    "check",
    "legal_entity",
    "canonical_id",
    "crm_id",
    "erp_id",
    "psa_id",
    "expected",
    "actual",
    "currency",
    "reason",
    "detail",
)


async def reconcile_from_settings(
    settings: Settings, *, legal_entity: str | None, period_start: date, period_end: date, as_of: date | None
) -> ReconciliationReport:
    """Build the connectors (Tryton's too when an entity books there) and the store from ``settings`` (as
    ``p2c backfill`` does), reconcile, close everything."""
    async with connected_systems(settings) as systems:
        return await reconcile(
            crm=systems.crm,
            psa=systems.psa,
            erp=systems.erp,
            sessionmaker=systems.sessionmaker,
            legal_entity=legal_entity,
            period_start=period_start,
            period_end=period_end,
            as_of=as_of,
            tryton=systems.tryton,  # None unless an entity books in Tryton (P2C_LEGAL_ENTITIES__*__ERP)
            erp_by_entity=systems.erp_by_entity,
        )


def to_csv(report: ReconciliationReport) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for m in report.mismatches:
        writer.writerow({k: "" if v is None else v for k, v in m.as_dict().items()})
    return out.getvalue()


def to_json(report: ReconciliationReport) -> str:
    return json.dumps(report.as_dict(), indent=2, sort_keys=False)


def render(report: ReconciliationReport) -> list[Table]:
    entity = report.legal_entity or "all entities"
    title = f"reconciliation {entity} {report.period_start} … {report.period_end} (as of {report.as_of})"
    summary = Table(title=title, show_header=True, header_style="bold")
    for column in ("check", "source", "records", "total", "target", "records", "total", "unit"):
        summary.add_column(column, justify="left" if column in ("check", "source", "target") else "right")
    summary.add_column("mismatches", justify="right")
    summary.add_column("not yet synced", justify="right")
    summary.add_column("untracked", justify="right")
    for s in report.summaries.values():
        summary.add_row(
            s.check,
            s.source,
            str(s.source_records),
            str(s.source_total),
            s.target,
            str(s.target_records),
            str(s.target_total),
            s.unit,
            str(s.mismatches),
            str(s.not_yet_synced),
            str(s.untracked),
        )
    tables = [summary]
    if report.mismatches:
        rows = Table(title=f"mismatches ({len(report.mismatches)})", show_header=True, header_style="bold")
        for column in ("category", "entity", "crm", "erp", "psa", "expected", "actual", "reason", "detail"):
            rows.add_column(column)
        for m in report.mismatches:
            rows.add_row(
                m.category,
                m.legal_entity or "",
                m.crm_id or "",
                m.erp_id or "",
                m.psa_id or "",
                "" if m.expected is None else str(m.expected),
                "" if m.actual is None else str(m.actual),
                m.reason or "",
                m.detail,
            )
        tables.append(rows)
    return tables


def _day(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"{option}: not a date (YYYY-MM-DD): {value!r}", EXIT_BAD_INPUT)


def reconcile_command(
    period_from: Annotated[str, typer.Option("--from", help="first day of the period (YYYY-MM-DD)")],
    period_to: Annotated[str, typer.Option("--to", help="last day of the period, inclusive")],
    entity: Annotated[str | None, typer.Option("--entity", help="legal entity (default: all)")] = None,
    output: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
    category: Annotated[
        list[str] | None, typer.Option("--category", help="only this category (repeatable)")
    ] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="date of the account figures (default: today)")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="store URL (default: P2C_DATABASE_URL)")
    ] = None,
) -> None:
    """CRM vs ERP vs PSA for a legal entity and period: deals, hours, invoices, receivables.
    Exit 0 when clean, 1 when mismatches are found, 2 on bad input."""
    start, end = _day(period_from, "--from"), _day(period_to, "--to")
    on = _day(as_of, "--as-of") if as_of else None
    if output not in FORMATS:
        fail(f"--format: one of {', '.join(FORMATS)}, not {output!r}", EXIT_BAD_INPUT)
    wanted = {c.strip().upper() for c in category or []}
    unknown = sorted(wanted - set(CATEGORIES))
    if unknown:
        fail(f"--category: unknown {', '.join(unknown)} (one of {', '.join(CATEGORIES)})", EXIT_BAD_INPUT)
    with reported_errors():
        validate_period(start, end)
        overrides = {"database_url": database_url} if database_url is not None else {}
        settings = load_settings(complete=False, **overrides)
        report = asyncio.run(
            reconcile_from_settings(
                settings, legal_entity=entity, period_start=start, period_end=end, as_of=on
            )
        )
    if wanted:
        report = report.only(wanted)
    if output == "json":
        typer.echo(to_json(report))
    elif output == "csv":
        typer.echo(to_csv(report), nl=False)
    else:
        console = Console(width=200)
        for table in render(report):
            console.print(table)
        typer.echo("clean: no mismatches" if report.clean else f"{len(report.mismatches)} mismatch(es)")
    if not report.clean:
        raise typer.Exit(EXIT_MISMATCHES)


def register(app: typer.Typer) -> None:
    app.command("reconcile")(reconcile_command)
