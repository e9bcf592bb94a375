"""``p2c exceptions``: the exception queue from a terminal — list, show, replay, dismiss::

    p2c exceptions list --status OPEN --flow provision_engagement
    p2c exceptions show 3845e543-7097-4394-9e6e-db609c0d08b7
    p2c exceptions replay 3845e543-7097-4394-9e6e-db609c0d08b7
    p2c exceptions dismiss 3845e543-... --reason "duplicate deal, closed in the CRM"

It acts as the system principal ``system:cli`` (integration admin, every legal entity); replay and
dismissal are audited under that name. Systems and store come from settings like ``p2c worker``'s
(``gateway.worker.open_flow_deps``): a system without ``base_url`` is an in-process sandbox of its own,
not the server's. An unknown id — or an exception that is no longer open — is one ``error:`` line and
exit code 2.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from canonical.errors import Conflict, NotFound
from canonical.principal import Principal
from gateway.cli._boundary import EXIT_BAD_INPUT, fail, reported_errors
from gateway.runtime.startup import preflight
from gateway.settings import Settings, load_settings
from gateway.worker import open_flow_deps
from mutations.governance import jsonable
from mutations.replay import dismiss_exception, replay_exception
from store.db import make_engine, make_sessionmaker
from store.models import IntegrationException
from store.repositories import ExceptionRepo, RunRepo

CLI = Principal.system("cli")

app = typer.Typer(
    name="exceptions", help="The exception queue: list, show, replay, dismiss.", no_args_is_help=True
)

DatabaseUrl = Annotated[
    str | None, typer.Option("--database-url", help="store URL (default: P2C_DATABASE_URL)")
]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def _settings(database_url: str | None) -> Settings:
    overrides = {"database_url": database_url} if database_url is not None else {}
    return load_settings(complete=False, **overrides)


@contextmanager
def _boundary() -> Iterator[None]:
    """``reported_errors``, with an unknown or settled exception counted as bad input (exit 2)."""
    with reported_errors():
        try:
            yield
        except (NotFound, Conflict) as exc:
            fail(exc.message, EXIT_BAD_INPUT)


@asynccontextmanager
async def _session(settings: Settings) -> AsyncIterator[AsyncSession]:
    """A read-only session on the store; list and show need no vendor system."""
    await preflight(settings, migrate_store=False)
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            yield session
    finally:
        await engine.dispose()


def _row(e: IntegrationException) -> dict[str, Any]:
    return {
        "id": e.id,
        "status": e.status,
        "flow": e.flow,
        "reason_code": e.reason_code,
        "legal_entity": e.legal_entity,
        "subject": e.subject,
        "step": e.step,
        "occurrences": e.occurrences,
        "correlation_id": e.correlation_id,
        "run_id": e.run_id,
        "created_at": e.created_at.isoformat(),
        "updated_at": e.updated_at.isoformat(),
        "resolution_note": e.resolution_note,
        "dismissed_by": e.dismissed_by,
    }


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(jsonable(value), indent=2, sort_keys=True))


@app.command("list")
def list_exceptions(
    status: Annotated[str | None, typer.Option(help="OPEN, REPLAYING, RESOLVED or DISMISSED")] = None,
    flow: Annotated[str | None, typer.Option(help="e.g. provision_engagement")] = None,
    reason: Annotated[str | None, typer.Option(help="reason code, e.g. UPSTREAM_REJECTED")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
) -> None:
    """The queue, oldest first."""

    async def read() -> list[dict[str, Any]]:
        async with _session(_settings(database_url)) as session:
            found = await ExceptionRepo(session).list(
                status=status.upper() if status else None, flow=flow, reason_code=reason, limit=limit
            )
            return [_row(e) for e in found]

    with _boundary():
        rows = asyncio.run(read())
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"integration exceptions ({len(rows)})", header_style="bold")
    for column in ("id", "status", "flow", "reason", "entity", "subject", "step", "n", "raised"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(
            r["id"],
            r["status"],
            r["flow"],
            r["reason_code"],
            r["legal_entity"] or "",
            r["subject"] or "",
            r["step"] or "",
            str(r["occurrences"]),
            r["created_at"][:19],
        )
    Console(width=200).print(table)


@app.command()
def show(
    exception_id: Annotated[str, typer.Argument(metavar="ID")],
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
) -> None:
    """One exception: its payload, the upstream error and the steps of its run."""

    async def read() -> dict[str, Any]:
        async with _session(_settings(database_url)) as session:
            e = await ExceptionRepo(session).get(exception_id)
            steps = await RunRepo(session).steps(e.run_id) if e.run_id else []
            return {
                **_row(e),
                "payload": e.payload,
                "upstream_error": e.upstream_error,
                "steps": [
                    {
                        "name": s.name,
                        "key": s.key,
                        "status": s.status,
                        "attempts": s.attempts,
                        "error": s.error,
                    }
                    for s in steps
                ],
            }

    with _boundary():
        detail = asyncio.run(read())
    if as_json:
        _print_json(detail)
        return
    console = Console(width=200)
    table = Table(title=f"exception {detail['id']}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name in (
        "status",
        "flow",
        "reason_code",
        "legal_entity",
        "subject",
        "step",
        "occurrences",
        "correlation_id",
        "run_id",
        "created_at",
        "resolution_note",
        "dismissed_by",
    ):
        table.add_row(name, "" if detail[name] is None else str(detail[name]))
    for name in ("payload", "upstream_error"):
        table.add_row(name, json.dumps(detail[name], sort_keys=True) if detail[name] is not None else "")
    console.print(table)
    if detail["steps"]:
        steps = Table(title="run steps", header_style="bold")
        for column in ("name", "status", "attempts", "error"):
            steps.add_column(column, overflow="fold")
        for s in detail["steps"]:
            error = (s["error"] or {}).get("message", "") if isinstance(s["error"], dict) else ""
            steps.add_row(s["name"], s["status"], str(s["attempts"]), error)
        console.print(steps)


@app.command()
def replay(
    exception_id: Annotated[str, typer.Argument(metavar="ID")], database_url: DatabaseUrl = None
) -> None:
    """Run the failed flow again from its first unfinished step."""

    async def run() -> tuple[str, Any]:
        settings = _settings(database_url)
        await preflight(settings, migrate_store=False)
        async with open_flow_deps(settings) as deps:
            outcome = await replay_exception(
                deps, exception_id, principal=CLI, correlation_id=f"cli-{uuid.uuid4().hex[:12]}"
            )
            return outcome.exception.status, outcome.result

    with _boundary():
        status, result = asyncio.run(run())
    typer.echo(f"exception {exception_id}: {status}")
    outcome = getattr(result, "status", None)
    if outcome is not None:
        typer.echo(f"flow result: {outcome}")


@app.command()
def dismiss(
    exception_id: Annotated[str, typer.Argument(metavar="ID")],
    reason: Annotated[str, typer.Option("--reason", help="why it needs no replay (kept and audited)")],
    database_url: DatabaseUrl = None,
) -> None:
    """Close an exception without replaying it."""

    async def run() -> str:
        settings = _settings(database_url)
        await preflight(settings, migrate_store=False)
        async with open_flow_deps(settings) as deps:
            dismissed = await dismiss_exception(
                deps, exception_id, reason, principal=CLI, correlation_id=f"cli-{uuid.uuid4().hex[:12]}"
            )
            return dismissed.status

    with _boundary():
        status = asyncio.run(run())
    typer.echo(f"exception {exception_id}: {status}")


def register(parent: typer.Typer) -> None:
    parent.add_typer(app, name="exceptions")


__all__ = ["CLI", "app", "register"]
