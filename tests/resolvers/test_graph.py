"""Permissions, legal-entity visibility, partial failure, limits, federation and the SDL snapshot."""

# ruff: noqa: E501  (GraphQL documents read best on one line)
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from canonical.ids import canonical_id
from canonical.principal import Principal
from resolvers.schema import build_schema
from resolvers.sdl import print_sdl
from subgraphs.demo import generate_firm

FIRM = generate_firm(7, 200)
SALES = Principal("sales", roles=frozenset({"sales"}), all_entities=True)
US_ONLY = Principal("us", roles=frozenset({"finance"}), legal_entities=frozenset({"US01"}))
EU = next(a for a in FIRM.accounts if a.legal_entity == "EU01" and a.erp_customer_id)
US = next(a for a in FIRM.accounts if a.legal_entity == "US01" and a.erp_customer_id)
SNAPSHOT = Path(__file__).resolve().parents[2] / "schema.graphql"


def _codes(result: Any) -> list[str]:
    return [e.extensions.get("code") for e in result.errors or []]


async def test_sales_sees_no_margin(execute: Any) -> None:
    query = (
        """query($id: ID!) { account(id: $id) { name health { billedToDate { amount } marginPercent } } }"""
    )
    result = await execute(query, principal=SALES, id=canonical_id("crm", "Account", US.crm_id))
    assert result.data["account"]["name"] == US.name
    assert result.data["account"]["health"]["marginPercent"] is None
    assert result.data["account"]["health"]["billedToDate"] is not None
    assert _codes(result) == ["FORBIDDEN"]
    assert result.errors[0].path == ["account", "health", "marginPercent"]


async def test_us_principal_never_sees_eu_rows(execute: Any) -> None:
    eu_id = canonical_id("crm", "Account", EU.crm_id)
    one = await execute("query($id: ID!) { account(id: $id) { id } }", principal=US_ONLY, id=eu_id)
    assert one.errors is None and one.data["account"] is None
    query = """{
      accounts(first: 100) { totalCount edges { node { legalEntity invoices { legalEntity } projects { legalEntity } } } }
      projects(first: 100) { totalCount edges { node { legalEntity account { legalEntity } } } }
      invoices(first: 100) { totalCount edges { node { legalEntity account { legalEntity } } } }
      timeEntries(first: 100) { totalCount edges { node { projectId } } }
      portfolio { legalEntity }
    }"""
    result = await execute(query, principal=US_ONLY)
    assert result.errors is None
    data = result.data
    us_accounts = sum(1 for a in FIRM.accounts if a.legal_entity == "US01")
    assert data["accounts"]["totalCount"] == us_accounts
    seen = {n["node"]["legalEntity"] for n in data["accounts"]["edges"]}
    seen |= {i["legalEntity"] for n in data["accounts"]["edges"] for i in n["node"]["invoices"]}
    seen |= {p["legalEntity"] for n in data["accounts"]["edges"] for p in n["node"]["projects"]}
    for root in ("projects", "invoices"):
        seen |= {n["node"]["legalEntity"] for n in data[root]["edges"]}
        seen |= {n["node"]["account"]["legalEntity"] for n in data[root]["edges"] if n["node"]["account"]}
    seen |= {row["legalEntity"] for row in data["portfolio"]}
    assert seen == {"US01"}
    assert data["invoices"]["totalCount"] == sum(
        1 for i in FIRM.invoices if FIRM.accounts[i.account_index].legal_entity == "US01"
    )
    eu_codes = {p.code for p in FIRM.projects if p.currency == "EUR"}
    assert data["timeEntries"]["totalCount"] == sum(
        1 for e in FIRM.time_entries if e.project_code not in eu_codes
    )


async def test_erp_down_gives_partial_data(execute: Any, admins: dict[str, Any]) -> None:
    await admins["erp"].set_faults(error_rates={"503": 1.0})
    try:
        query = """query($id: ID!) { account(id: $id) { name health { billedToDate { amount } marginPercent } } }"""
        result = await execute(query, id=canonical_id("crm", "Account", US.crm_id))
    finally:
        await admins["erp"].clear_faults()
    assert result.data["account"]["name"] == US.name
    assert result.data["account"]["health"]["marginPercent"] is not None  # the PSA still answers
    assert result.data["account"]["health"]["billedToDate"] is None
    error = result.errors[0]
    assert error.extensions["code"] == "UPSTREAM_UNAVAILABLE" and error.extensions["system"] == "erp"


async def test_page_size_is_capped(execute: Any) -> None:
    for root in ("accounts", "projects", "invoices", "timeEntries"):
        result = await execute(f"{{ {root}(first: 101) {{ totalCount }} }}")
        assert _codes(result) == ["VALIDATION_FAILED"]
        assert "100" in result.errors[0].message


async def test_paging_walks_every_row_once(execute: Any) -> None:
    query = """query($after: String) { invoices(first: 100, after: $after) {
      totalCount pageInfo { hasNextPage endCursor } edges { node { id } } } }"""
    ids: list[str] = []
    after = None
    while True:
        page = (await execute(query, after=after)).data["invoices"]
        ids += [e["node"]["id"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert len(ids) == len(set(ids)) == page["totalCount"] == len(FIRM.invoices)


async def test_depth_and_alias_limits(execute: Any) -> None:
    deep = "{ accounts { edges { node { projects { account { projects { account { projects { account { projects { account { id } } } } } } } } } } } }"
    result = await execute(deep)
    assert result.data is None and "exceeds maximum operation depth" in result.errors[0].message
    aliases = "{ " + " ".join(f'a{i}: account(id: "x") {{ id }}' for i in range(31)) + " }"
    result = await execute(aliases)
    assert result.data is None and "aliases" in result.errors[0].message


async def test_unexpected_errors_are_masked(execute: Any) -> None:
    result = await execute('{ invoices(first: 1, after: "bm90LWEtY3Vyc29y") { totalCount } }')
    assert _codes(result) == ["VALIDATION_FAILED"]  # a GatewayError keeps its message and code


async def test_federation_entities_batch(execute: Any, admins: dict[str, Any]) -> None:
    reps = [
        {"__typename": "Account", "id": canonical_id("crm", "Account", a.crm_id)} for a in FIRM.accounts[:50]
    ]
    await execute("{ accounts(first: 1) { totalCount } }")  # CRM token
    await admins["crm"].reset_counters()
    query = "query($r: [_Any!]!) { _entities(representations: $r) { ... on Account { id name } } }"
    result = await execute(query, r=reps)
    assert result.errors is None
    assert [e["name"] for e in result.data["_entities"]] == [a.name for a in FIRM.accounts[:50]]
    assert (await admins["crm"].counters())["total"] == 1
    sdl = (await execute("{ _service { sdl } }")).data["_service"]["sdl"]
    assert '@key(fields: "id")' in sdl and "type Project @key" in sdl


async def test_introspection_off_in_production(make_context: Any) -> None:
    result = await build_schema(production=True).execute(
        "{ __schema { types { name } } }", context_value=make_context()
    )
    assert result.errors and "introspection" in result.errors[0].message.lower()


def test_schema_snapshot() -> None:
    """Regenerate after an intended change: P2C_UPDATE_SCHEMA_SNAPSHOT=1 pytest tests/resolvers."""
    current = print_sdl()
    if os.environ.get("P2C_UPDATE_SCHEMA_SNAPSHOT") == "1":
        SNAPSHOT.write_text(current)
    assert SNAPSHOT.read_text() == current, "schema changed: regenerate schema.graphql if intended"
