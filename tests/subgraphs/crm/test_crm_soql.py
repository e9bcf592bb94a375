"""The SOQL subset, exercised through the connector against the sandbox."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from starlette.applications import Starlette

from canonical.errors import UpstreamRejected
from subgraphs.common.sandbox import SandboxAdmin, SandboxOptions
from subgraphs.crm.client import CrmClient, soql_literal
from subgraphs.crm.sandbox import CrmState, create_app
from subgraphs.crm.sandbox.schema import SfError
from subgraphs.crm.sandbox.soql import compile_soql

ACCOUNTS = 40  # as conftest.ACCOUNTS


async def ids(client: CrmClient, soql: str) -> list[str]:
    return [r["Id"] for r in await client.query_all(soql)]


async def test_comparison_operators_on_numbers_dates_and_text(client: CrmClient) -> None:
    everything = await client.query_all("SELECT Id, Amount, CloseDate, StageName FROM Opportunity")
    assert len(everything) == ACCOUNTS * 3
    amounts = sorted(r["Amount"] for r in everything)
    pivot = amounts[len(amounts) // 2]
    assert isinstance(pivot, Decimal)  # currency never passes through float on our side

    def count(pred: Callable[[dict[str, Any]], bool]) -> int:
        return sum(1 for r in everything if pred(r))

    for op, pred in {
        "=": lambda r: r["Amount"] == pivot,
        "!=": lambda r: r["Amount"] != pivot,
        "<": lambda r: r["Amount"] < pivot,
        ">": lambda r: r["Amount"] > pivot,
        "<=": lambda r: r["Amount"] <= pivot,
        ">=": lambda r: r["Amount"] >= pivot,
    }.items():
        assert len(await ids(client, f"SELECT Id FROM Opportunity WHERE Amount {op} {pivot}")) == count(
            pred
        ), op
    after = await ids(client, "SELECT Id FROM Opportunity WHERE CloseDate >= 2026-11-27")
    assert len(after) == count(lambda r: r["CloseDate"] >= "2026-11-27") > 0
    won = await ids(client, "SELECT Id FROM Opportunity WHERE StageName = 'Closed Won' AND IsWon = true")
    assert len(won) == count(lambda r: r["StageName"] == "Closed Won") > 0


async def test_in_like_null_or_parentheses_not(client: CrmClient) -> None:
    got = await ids(client, "SELECT Id FROM Account WHERE Id IN ('001000000000001AAA', '001000000000003AAA')")
    assert got == ["001000000000001AAA", "001000000000003AAA"]
    assert (
        len(await ids(client, "SELECT Id FROM Account WHERE Id NOT IN ('001000000000001AAA')"))
        == ACCOUNTS - 1
    )
    acme = await client.query_all("SELECT Name FROM Account WHERE Name LIKE 'acme%'")  # case-insensitive
    assert acme and all(r["Name"].startswith("Acme") for r in acme)
    no_erp = await ids(client, "SELECT Id FROM Account WHERE ERP_Customer_Id__c = NULL")
    with_erp = await ids(client, "SELECT Id FROM Account WHERE ERP_Customer_Id__c != NULL")
    assert no_erp and len(no_erp) + len(with_erp) == ACCOUNTS
    either = await ids(
        client,
        "SELECT Id FROM Account WHERE (Legal_Entity__c = 'EU01' OR Legal_Entity__c = 'US01') "
        "AND NOT Name LIKE 'Acme%'",
    )
    assert len(either) == ACCOUNTS - len(acme)


async def test_order_by_limit_offset_and_relationship_fields(client: CrmClient) -> None:
    top = await client.query_all(
        "SELECT Id, Amount, Account.Name, Account.Legal_Entity__c FROM Opportunity "
        "ORDER BY Amount DESC, Id ASC LIMIT 5"
    )
    assert len(top) == 5
    assert [r["Amount"] for r in top] == sorted((r["Amount"] for r in top), reverse=True)
    assert top[0]["Account"]["attributes"]["type"] == "Account"
    assert top[0]["Account"]["Legal_Entity__c"] in ("US01", "EU01")
    skipped = await client.query_all(
        "SELECT Id FROM Opportunity ORDER BY Amount DESC, Id ASC LIMIT 3 OFFSET 2"
    )
    assert [r["Id"] for r in skipped] == [r["Id"] for r in top[2:5]]


async def test_datetime_literals_compare_in_utc(client: CrmClient) -> None:
    created = await client.create("Account", {"Name": "Fresh", "Legal_Entity__c": "US01"})
    stamp = (await client.get("Account", created))["SystemModstamp"]
    assert stamp.endswith("+0000")
    later = await ids(client, "SELECT Id FROM Account WHERE SystemModstamp > 2026-11-27T00:00:00+01:00")
    assert created in later


@pytest.mark.parametrize(
    "soql, code",
    [
        ("SELECT Id FROM Account WHERE", "MALFORMED_QUERY"),
        ("SELECT Id Account", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account WHERE Amount = 'x'", "INVALID_FIELD"),
        ("SELECT Id FROM Opportunity WHERE Amount = 'x'", "MALFORMED_QUERY"),
        ("SELECT Id FROM Opportunity WHERE CloseDate > '2026-01-01'", "MALFORMED_QUERY"),
        ("SELECT Nope__c FROM Account", "INVALID_FIELD"),
        ("SELECT Id FROM Nope", "INVALID_TYPE"),
        ("SELECT Id FROM Account; DROP TABLE Account", "MALFORMED_QUERY"),
    ],
)
async def test_bad_soql_is_rejected_with_the_vendor_code(client: CrmClient, soql: str, code: str) -> None:
    with pytest.raises(UpstreamRejected) as caught:
        await client.query_all(soql)
    assert caught.value.vendor_code == code
    assert caught.value.status == 400


def test_values_travel_as_parameters_never_as_sql() -> None:
    compiled = compile_soql("SELECT Id FROM Account WHERE Name = 'x\\' OR 1=1 --' AND Industry IN ('a', 'b')")
    assert "OR 1=1" not in compiled.sql
    assert compiled.params[:3] == ["x' OR 1=1 --", "a", "b"]
    with pytest.raises(SfError):
        compile_soql('SELECT Id FROM Account ORDER BY "Name"')


async def test_literal_helper_escapes_quotes(client: CrmClient) -> None:
    await client.create("Account", {"Name": "O'Brien \\ Sons", "Legal_Entity__c": "US01"})
    name = "O'Brien \\ Sons"
    got = await client.query_all(f"SELECT Name FROM Account WHERE Name = {soql_literal(name)}")
    assert [r["Name"] for r in got] == ["O'Brien \\ Sons"]


async def test_paging_follows_next_records_url(client: CrmClient, admin: SandboxAdmin) -> None:
    pages = [page async for page in client.query_pages("SELECT Id FROM Opportunity ORDER BY Id")]
    assert len(pages) == -(-ACCOUNTS * 3 // 7)  # batch size 7
    assert all(p["totalSize"] == ACCOUNTS * 3 for p in pages)
    assert [p["done"] for p in pages] == [False] * (len(pages) - 1) + [True]
    assert pages[0]["nextRecordsUrl"].startswith("/services/data/v62.0/query/01g")
    assert pages[0]["nextRecordsUrl"].endswith("-7")
    flat = [r["Id"] for p in pages for r in p["records"]]
    assert flat == sorted(flat) and len(set(flat)) == ACCOUNTS * 3
    counters = await admin.counters()
    assert counters["by_endpoint"]["GET /services/data/v62.0/query/{id}"] == len(pages) - 1


async def test_same_seed_same_org() -> None:
    import httpx

    from subgraphs.crm.config import CrmConfig

    results = []
    for _ in range(2):
        app = create_app(SandboxOptions(seed=11, accounts=25))
        crm = CrmClient.from_config(CrmConfig(), httpx.ASGITransport(app))
        results.append(
            await crm.query_all("SELECT Id, Name, Amount, StageName, Account.Name FROM Opportunity")
        )
        await crm.aclose()
    assert results[0] == results[1] and len(results[0]) == 75
    other = CrmState()
    assert other.is_empty()


async def test_unseeded_sandbox_is_empty(app: Starlette) -> None:
    empty = create_app(SandboxOptions(seed=None))
    assert empty.state.crm.is_empty()
    assert not app.state.crm.is_empty()
