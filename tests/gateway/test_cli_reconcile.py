"""``p2c reconcile`` through Typer's runner, on a migrated SQLite store and the embedded sandboxes (5-account
demo firm): formats, the category filter and exit codes (0 clean, 1 mismatches, 2 bad input)."""

from __future__ import annotations

import csv
import io
import json

import pytest
import typer
from typer.testing import CliRunner

from gateway.cli import reconcile
from gateway.cli.reconcile import CSV_COLUMNS

ENV = {"P2C_DEMO_ACCOUNTS": "5"}
OCTOBER = ["--entity", "US01", "--from", "2026-10-01", "--to", "2026-10-31", "--as-of", "2026-11-27"]
NOVEMBER = ["--entity", "US01", "--from", "2026-11-01", "--to", "2026-11-30", "--as-of", "2026-11-27"]


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """p2c"""

    reconcile.register(app)
    return app


def invoke(cli: typer.Typer, *args: str, url: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["reconcile", *args, "--database-url", url], env=ENV)
    return result.exit_code, result.stdout, result.stderr


def test_a_clean_period_prints_the_summary_table_and_exits_0(cli: typer.Typer, sqlite_url: str) -> None:
    code, out, err = invoke(cli, *OCTOBER, url=sqlite_url)
    assert code == 0, out + err
    assert "reconciliation US01 2026-10-01" in out and "clean: no mismatches" in out
    for check in ("engagements", "hours", "invoices", "receivables"):
        assert check in out


def test_mismatches_exit_1_in_every_format(cli: typer.Typer, sqlite_url: str) -> None:
    # November's approved time is not posted yet (no worker ran): NOT_POSTED, entry by entry.
    code, out, _ = invoke(cli, *NOVEMBER, url=sqlite_url)
    assert code == 1 and "NOT_POSTED" in out and "mismatch(es)" in out

    code, out, _ = invoke(cli, *NOVEMBER, "--format", "json", url=sqlite_url)
    assert code == 1
    report = json.loads(out)
    assert set(report) >= {"legal_entity", "period", "as_of", "clean", "counts", "summaries", "mismatches"}
    assert report["clean"] is False and report["period"] == {"from": "2026-11-01", "to": "2026-11-30"}
    assert report["counts"]["NOT_POSTED"] == len(report["mismatches"]) > 0
    first = report["mismatches"][0]
    assert first["category"] == "NOT_POSTED" and first["psa_id"] and first["legal_entity"] == "US01"
    assert set(report["summaries"]["hours"]) >= {"source_total", "target_total", "mismatches"}

    code, out, _ = invoke(cli, *NOVEMBER, "--format", "csv", url=sqlite_url)
    assert code == 1
    rows = list(csv.reader(io.StringIO(out)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) - 1 == report["counts"]["NOT_POSTED"]
    assert {r[0] for r in rows[1:]} == {"NOT_POSTED"}


def test_the_category_filter_keeps_only_those(cli: typer.Typer, sqlite_url: str) -> None:
    code, out, _ = invoke(
        cli, *NOVEMBER, "--format", "json", "--category", "receivables_differ", url=sqlite_url
    )
    assert code == 0, out
    report = json.loads(out)
    assert report["mismatches"] == [] and list(report["summaries"]) == ["receivables"]


def test_a_clean_period_as_csv_is_the_header_alone(cli: typer.Typer, sqlite_url: str) -> None:
    code, out, _ = invoke(cli, *OCTOBER, "--format", "csv", url=sqlite_url)
    assert code == 0
    assert out.splitlines() == [",".join(CSV_COLUMNS)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2026-13-01", "--to", "2026-10-31"], "--from: not a date"),
        (["--from", "2026-10-31", "--to", "2026-10-01"], "ends before it starts"),
        (["--from", "2026-10-01", "--to", "2026-10-31", "--format", "xml"], "--format"),
        (["--from", "2026-10-01", "--to", "2026-10-31", "--category", "NOPE"], "unknown NOPE"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    cli: typer.Typer, sqlite_url: str, args: list[str], message: str
) -> None:
    code, out, err = invoke(cli, *args, url=sqlite_url)
    assert code == 2, out + err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
