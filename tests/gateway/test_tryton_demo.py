"""The two-ERP demo: the embedded gateway with EU01 booked in a real Tryton server beside NetSuite's US01.

Start-up runs backfill, then EU01's cut-over day through the gateway's own flows (runtime/tryton_demo.py);
the graph then shows both ERPs — projects, invoices, portfolio — and the reconciliation covers both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from gateway.app import create_app
from gateway.cli import app as cli
from gateway.cli.serve import dev_token, fresh_store
from gateway.runtime.tryton_demo import DayOne
from gateway.settings import load_settings
from store.migrate import upgrade_to_head
from tests.gateway.conftest import started
from tests.subgraphs.erp_tryton.tryton_support import Server

PROJECTS = """query($filter: ProjectFilter) { projects(first: 100, filter: $filter) { totalCount edges {
  node { id erpId code legalEntity financials { billed { amount currency } }
         invoices { id total { amount } } } } } }"""
PORTFOLIO = "{ portfolio { legalEntity month revenue { amount currency } backlog { amount } } }"
RECONCILE = """query($f: ReconciliationFilter!) { reconciliation(filter: $f) { legalEntities clean
  checks { check sourceRecords targetRecords mismatches }
  mismatches { category legalEntity erpId psaId crmId detail } } }"""


class Demo:
    def __init__(self, client: httpx.AsyncClient, day: DayOne, token: str, server: Server) -> None:
        self.client, self.day, self.token, self.server = client, day, token, server

    async def query(self, query: str, **variables: Any) -> dict[str, Any]:
        response = await self.client.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"authorization": f"Bearer {self.token}"},
        )
        body = response.json()
        assert response.status_code == 200 and "errors" not in body, body
        return dict(body["data"])


@pytest.fixture
async def demo(tryton: Server, tmp_path: Path) -> AsyncIterator[Demo]:
    tryton.reset()
    config = tryton.config()
    store = fresh_store(tmp_path)
    upgrade_to_head(store)  # what `p2c serve` does before it starts
    settings = load_settings(
        database_url=store,
        legal_entities={"EU01": {"erp": "tryton"}},
        tryton=config.model_dump(),
    )
    app = create_app(settings)
    async with started(app) as client:
        (day,) = app.state.runtime.cut_over
        token = dev_token(settings)
        assert token is not None
        yield Demo(client, day, token, tryton)


async def test_the_cut_over_day_books_eu01s_new_work_in_tryton_through_the_flows(demo: Demo) -> None:
    day = demo.day
    assert day.entity == "EU01" and not day.refused, day.refused
    assert len(day.provisioned) >= 3  # the new customers' won deals and the ones won that day
    assert day.entries and day.posted == len(day.entries)
    assert day.invoices and day.written_back == len(day.invoices)
    async with demo.server.client() as client:
        projects = await client.search_read("project.work", [["type", "=", "project"]], ["id", "party"])
        assert sorted(str(p["id"]) for p in projects) == sorted(day.provisioned.values())
        for entry in day.entries:  # one timesheet line per approved entry
            lines = await client.search_read(
                "timesheet.line", [["description", "like", f"psa:{entry}:v%"]], ["id"]
            )
            assert len(lines) == 1, entry
        invoices = await client.read("account.invoice", day.invoices, ["state", "total_amount"])
        assert {i["state"] for i in invoices} == {"posted"}


async def test_the_graph_shows_both_erps_and_the_reconciliation_covers_both(demo: Demo) -> None:
    day = demo.day
    listed = (await demo.query(PROJECTS, filter={"legalEntity": "EU01"}))["projects"]
    eu = listed["edges"]
    assert listed["totalCount"] == len(eu)  # one page holds them all
    on_tryton = {
        str(e["node"]["erpId"]).removeprefix("tryton:"): e["node"]
        for e in eu
        if str(e["node"]["erpId"]).startswith("tryton:")
    }
    assert sorted(on_tryton) == sorted(day.provisioned.values())
    assert len(eu) > len(on_tryton)  # EU01's NetSuite history is still there
    invoiced = {i["id"]: i for node in on_tryton.values() for i in node["invoices"]}
    assert sorted(invoiced) == sorted(f"tryton:{i}" for i in day.invoices)
    billed = sum((Decimal(str(n["financials"]["billed"]["amount"])) for n in on_tryton.values()), Decimal(0))
    assert billed == sum((Decimal(str(i["total"]["amount"])) for i in invoiced.values()), Decimal(0)) > 0

    rows = (await demo.query(PORTFOLIO))["portfolio"]
    assert {"US01", "EU01"} <= {r["legalEntity"] for r in rows}
    eur = [r for r in rows if r["legalEntity"] == "EU01"]
    assert sum(Decimal(str(r["backlog"]["amount"])) for r in eur) != 0

    today = date.today()
    period = {"from": (today - timedelta(days=200)).isoformat(), "to": today.isoformat()}
    eu_report = (await demo.query(RECONCILE, f={**period, "legalEntity": "EU01"}))["reconciliation"]
    hours = next(c for c in eu_report["checks"] if c["check"] == "hours")
    assert hours["targetRecords"] >= len(day.entries)  # the Tryton lines are read
    tryton_mismatches = [m for m in eu_report["mismatches"] if str(m["erpId"] or "").startswith("tryton:")]
    assert tryton_mismatches == [], tryton_mismatches
    both = (await demo.query(RECONCILE, f=period))["reconciliation"]
    assert {c["check"] for c in both["checks"]} == {"engagements", "hours", "invoices", "receivables"}
    engagements = next(c for c in both["checks"] if c["check"] == "engagements")
    assert engagements["targetRecords"] >= len(day.provisioned)


def test_tryton_entity_flag_refuses_a_non_demo_setup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("P2C_CRM__BASE_URL", "https://example.my.salesforce.com")
    result = CliRunner().invoke(cli, ["serve", "--tryton-entity", "EU01", "--tryton-dir", str(tmp_path)])
    assert result.exit_code != 0
    assert "--tryton-entity is the embedded demo's: unset P2C_CRM__BASE_URL" in result.output
    assert not (tmp_path / "trytond.conf").exists()  # refused before anything was built


def test_tryton_entity_flag_wants_an_entity_code(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["serve", "--tryton-entity", "EU-01;", "--tryton-dir", str(tmp_path)])
    assert result.exit_code != 0
    assert "--tryton-entity must be a legal entity code" in result.output
