"""``p2c exceptions list|show|replay|dismiss`` through Typer's runner, on a migrated SQLite store and the
embedded sandboxes (5-account demo firm)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
import typer
from typer.testing import CliRunner

from gateway.cli import exceptions
from store.db import make_engine, make_sessionmaker
from store.repositories import AuditRepo, ExceptionRepo, RunRepo

WON_DEAL = "006000000000004AAA"  # account 1 (US01), closed won, no project yet
ENV = {"P2C_DEMO_ACCOUNTS": "5"}


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    exceptions.register(app)
    return app


def invoke(cli: typer.Typer, *args: str, url: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["exceptions", *args, "--database-url", url], env=ENV)
    return result.exit_code, result.stdout, result.stderr


async def _seed(url: str) -> dict[str, str]:
    engine = make_engine(url)
    clock = lambda: datetime(2026, 11, 27, 12, 0, tzinfo=UTC)  # noqa: E731
    try:
        async with make_sessionmaker(engine).begin() as session:
            run = await RunRepo(session, clock=clock).start(
                "provision_engagement", subject=WON_DEAL, input={}, legal_entity="US01"
            )
            step = await RunRepo(session, clock=clock).step(run.id, "job", "erp:job:x")
            await RunRepo(session, clock=clock).step_failed(step.key, {"message": "ERP said no"})
            repo = ExceptionRepo(session, clock=clock)
            provision = await repo.open(
                flow="provision_engagement",
                reason_code="UPSTREAM_REJECTED",
                payload={"opportunity": WON_DEAL, "input": {}},
                upstream_error={"message": "ERP said no"},
                step="erp:job:x",
                run_id=run.id,
                subject=WON_DEAL,
                legal_entity="US01",
            )
            backfill = await repo.open(
                flow="backfill",
                reason_code="MATCH_MISSING",
                subject="001000000000003AAA",
                legal_entity="US01",
            )
            return {"provision": provision.id, "backfill": backfill.id}
    finally:
        await engine.dispose()


@pytest.fixture
def seeded(sqlite_url: str) -> dict[str, str]:
    return asyncio.run(_seed(sqlite_url))


def test_list_prints_a_table_and_filters_as_json(
    cli: typer.Typer, sqlite_url: str, seeded: dict[str, str]
) -> None:
    code, out, _ = invoke(cli, "list", url=sqlite_url)
    assert code == 0, out
    assert "integration exceptions (2)" in out and "UPSTREAM_REJECTED" in out and "MATCH_MISSING" in out

    code, out, _ = invoke(cli, "list", "--flow", "backfill", "--status", "open", "--json", url=sqlite_url)
    assert code == 0
    assert [r["id"] for r in json.loads(out)] == [seeded["backfill"]]
    code, out, _ = invoke(cli, "list", "--reason", "NOPE", "--json", url=sqlite_url)
    assert json.loads(out) == []


def test_show_prints_the_payload_and_the_run_steps(
    cli: typer.Typer, sqlite_url: str, seeded: dict[str, str]
) -> None:
    code, out, _ = invoke(cli, "show", seeded["provision"], url=sqlite_url)
    assert code == 0, out
    assert WON_DEAL in out and "run steps" in out and "ERP said no" in out

    code, out, _ = invoke(cli, "show", seeded["provision"], "--json", url=sqlite_url)
    detail = json.loads(out)
    assert detail["steps"] == [
        {
            "name": "job",
            "key": "erp:job:x",
            "status": "FAILED",
            "attempts": 0,
            "error": {"message": "ERP said no"},
        }
    ]


@pytest.mark.parametrize("command", [["show"], ["replay"], ["dismiss", "--reason", "x"]])
def test_an_unknown_id_is_one_line_and_exit_2(
    cli: typer.Typer, sqlite_url: str, seeded: dict[str, str], command: list[str]
) -> None:
    code, out, err = invoke(cli, command[0], "no-such-id", *command[1:], url=sqlite_url)
    assert code == 2
    assert err == "error: integration exception no-such-id not found\n"
    assert "Traceback" not in out + err


def test_dismiss_keeps_the_reason_and_is_audited(
    cli: typer.Typer, sqlite_url: str, seeded: dict[str, str]
) -> None:
    code, out, err = invoke(cli, "dismiss", seeded["backfill"], "--reason", "client closed", url=sqlite_url)
    assert code == 0, err
    assert out == f"exception {seeded['backfill']}: DISMISSED\n"

    code, _, err = invoke(cli, "dismiss", seeded["backfill"], "--reason", "again", url=sqlite_url)
    assert code == 2 and "it is DISMISSED" in err

    async def audited() -> list[tuple[str, str]]:
        engine = make_engine(sqlite_url)
        try:
            async with make_sessionmaker(engine)() as session:
                rows = await AuditRepo(session).query(operation="dismissException")
                return [(r.principal, r.status) for r in rows]
        finally:
            await engine.dispose()

    assert asyncio.run(audited()) == [("system:cli", "CONFLICT"), ("system:cli", "DISMISSED")]


def test_replay_runs_the_flow_again_and_resolves(
    cli: typer.Typer, sqlite_url: str, seeded: dict[str, str]
) -> None:
    code, out, err = invoke(cli, "replay", seeded["provision"], url=sqlite_url)

    assert code == 0, err
    assert out.splitlines() == [f"exception {seeded['provision']}: RESOLVED", "flow result: PROVISIONED"]
