"""``p2c erp tryton init|start``: idempotent over a built database, clear errors otherwise."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from gateway.cli import app
from tests.subgraphs.erp_tryton.tryton_support import TRYTON_URI, _postgres, snapshot

runner = CliRunner()


def test_init_again_over_a_built_database_changes_nothing_and_prints_the_settings(tmp_path: Path) -> None:
    built = snapshot()
    name, where = "p2c", []
    if TRYTON_URI:  # Tryton on PostgreSQL (.ci/run): a copy of the snapshot database
        name, where = f"p2c_cli_{tmp_path.name[-8:].lower()}", ["--database-url", TRYTON_URI]
        _postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        _postgres(f'CREATE DATABASE "{name}" TEMPLATE {built.file}')
    else:
        shutil.copyfile(built.file, tmp_path / "p2c.sqlite")
    (tmp_path / f"{name}.company.json").write_text(json.dumps(built.company))
    (tmp_path / "admin.password").write_text(built.password + "\n")

    result = runner.invoke(
        app, ["erp", "tryton", "init", "--dir", str(tmp_path), "--name", name, "--accounts", "30", *where]
    )
    if TRYTON_URI:
        _postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    assert result.exit_code == 0, result.output
    assert "P2C_LEGAL_ENTITIES__EU01__ERP=tryton" in result.output
    assert f"P2C_TRYTON__COMPANY={built.company['company']}" in result.output
    again = json.loads((tmp_path / f"{name}.company.json").read_text())
    assert again["company"] == built.company["company"]
    assert again["products"] == built.company["products"]  # found, not created twice
    assert again["employees"] == built.company["employees"]
    assert built.password not in result.output  # the password stays in its file


def test_bad_options_are_one_line_errors(tmp_path: Path) -> None:
    wrong_url = runner.invoke(app, ["erp", "tryton", "init", "--database-url", "mysql://db/"])
    not_built = runner.invoke(app, ["erp", "tryton", "start", "--dir", str(tmp_path)])
    bad_currency = runner.invoke(app, ["erp", "tryton", "init", "--dir", str(tmp_path), "--currency", "EURO"])

    assert (wrong_url.exit_code, not_built.exit_code, bad_currency.exit_code) == (2, 2, 2)
    assert "postgresql://" in wrong_url.output
    assert "run `p2c erp tryton init`" in not_built.output
    assert "ISO 4217" in bad_currency.output
    assert "Traceback" not in wrong_url.output + not_built.output + bad_currency.output
