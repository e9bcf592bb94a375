from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date

import httpx
import pytest
from starlette.applications import Starlette

from canonical.errors import (
    UpstreamNotFound,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
)
from subgraphs.common.config import RetryConfig
from subgraphs.common.sandbox import SandboxAdmin
from subgraphs.demo import generate_firm
from subgraphs.erp.client import ErpClient
from subgraphs.erp.errors import PERIOD_CLOSED, PROJECT_CLOSED, ErpRejected

SUITEQL = "POST /services/rest/query/v1/suiteql"
FIRM = generate_firm(7, 30)


async def test_create_parses_location_and_get(client: ErpClient) -> None:
    new_id = await client.create("customer", {"companyName": "Loc Co", "subsidiary": {"id": "1"}})
    assert new_id.isdigit()
    assert (await client.get("customer", new_id))["companyName"] == "Loc Co"


async def test_upsert_is_idempotent_and_findable(client: ErpClient) -> None:
    body = {"companyName": "Eid Co", "subsidiary": {"id": "2"}}
    first = await client.upsert("customer", "acc-9", body)
    assert await client.upsert("customer", "acc-9", body) == first
    found = await client.get_by_external_id("customer", "acc-9")
    assert found is not None and found["id"] == first
    assert await client.get_by_external_id("customer", "nope") is None
    with pytest.raises(UpstreamNotFound):
        await client.get("customer", "987654")


async def test_list_pages_follow_has_more(client: ErpClient) -> None:
    pages = [page async for page in client.list_pages("accountingPeriod", page_size=5)]
    assert [len(p.items) for p in pages] == [5, 5, 2]
    assert len({item["id"] for p in pages for item in p.items}) == 12


async def test_suiteql_pages_across_several_pages(client: ErpClient) -> None:
    total = (await client.suiteql("SELECT COUNT(*) AS n FROM timebill"))[0]["n"]
    pages = [
        page async for page in client.suiteql_pages("SELECT id FROM timebill ORDER BY id", page_size=100)
    ]
    assert len(pages) == -(-total // 100) > 2
    ids = [row["id"] for p in pages for row in p.items]
    assert len(ids) == len(set(ids)) == total and ids == sorted(ids)


async def test_suiteql_subset(client: ErpClient) -> None:
    rows = await client.suiteql(
        "SELECT t.entity AS customer, COUNT(*) AS n, SUM(t.foreigntotal) total FROM transaction t "
        "WHERE t.type = 'CustInvc' AND t.entity IN (1000, 1001, 1002) "
        "AND t.trandate BETWEEN TO_DATE('2026-01-01', 'YYYY-MM-DD') AND '2026-12-31' "
        "GROUP BY t.entity ORDER BY t.entity"
    )
    expected: dict[int, float] = {}
    for inv in FIRM.invoices:
        erp_id = FIRM.accounts[inv.account_index].erp_customer_id
        if erp_id in (1000, 1001, 1002):
            expected[erp_id] = expected.get(erp_id, 0) + float(inv.total)
    assert {r["customer"]: round(r["total"], 2) for r in rows} == pytest.approx(expected)
    joined = await client.suiteql(
        "SELECT j.entityid, c.companyname FROM job j JOIN customer c ON c.id = j.parent "
        "WHERE (j.status = 'inProgress' OR j.status = 'closed') AND c.vatregnumber IS NOT NULL ORDER BY j.id"
    )
    assert joined and {"entityid", "companyname"} <= set(joined[0])
    closed = await client.suiteql("SELECT periodname FROM accountingperiod WHERE closed = 'T'")
    assert [r["periodname"] for r in closed] == ["Sep 2026"]


@pytest.mark.parametrize(
    "q",
    [
        "SELECT nope FROM customer",
        "SELECT id FROM nowhere",
        "SELECT id FROM customer WHERE",
        "DROP TABLE customer",
    ],
)
async def test_bad_suiteql_is_rejected(client: ErpClient, q: str) -> None:
    with pytest.raises(UpstreamRejected) as info:
        await client.suiteql(q)
    assert info.value.vendor_code == "INVALID_PARAMETER" and info.value.status == 400


async def test_suiteql_literals_are_parameters_not_sql(client: ErpClient) -> None:
    rows = await client.suiteql("SELECT id FROM customer WHERE companyname = 'x'' OR 1=1 --'")
    assert rows == []


async def test_cap_respected_40_concurrent_calls(client: ErpClient, admin: SandboxAdmin) -> None:
    await client.ping()  # token first
    await admin.set_faults(latency_ms=10)
    await admin.reset_counters()
    results = await asyncio.gather(*(client.get("subsidiary", "1") for _ in range(40)))
    assert len(results) == 40
    counters = await admin.counters()
    assert counters["peak_in_flight"] <= 10 and counters["rejected"] == {}


async def test_429s_from_a_small_sandbox_cap_are_retried(
    make_client: Callable[..., ErpClient], admin: SandboxAdmin
) -> None:
    erp = make_client(max_concurrency=6, retry=RetryConfig(attempts=15, backoff_initial_s=0.001, budget_s=20))
    await erp.ping()
    await admin.set_faults(latency_ms=10, limits={"concurrency_cap": 2})
    results = await asyncio.gather(*(erp.get("subsidiary", "2") for _ in range(20)))
    assert all(r["id"] == "2" for r in results)
    assert (await admin.counters())["rejected"].get("cap", 0) > 0
    assert erp.transport is not None and erp.transport.stats.limit_waits > 0
    await erp.aclose()


async def test_retry_budget_exhausted_is_rate_limited(
    make_client: Callable[..., ErpClient], admin: SandboxAdmin
) -> None:
    erp = make_client(max_concurrency=8, retry=RetryConfig(attempts=2, backoff_initial_s=0.001))
    await erp.ping()
    await admin.set_faults(latency_ms=30, limits={"concurrency_cap": 1})
    results = await asyncio.gather(*(erp.get("subsidiary", "1") for _ in range(8)), return_exceptions=True)
    limited = [r for r in results if isinstance(r, UpstreamRateLimited)]
    assert limited and limited[0].retry_after is not None and limited[0].system == "erp"
    await erp.aclose()


async def test_503_is_retried(client: ErpClient, admin: SandboxAdmin) -> None:
    await client.ping()
    await admin.set_faults(error_rates={"503": 0.4}, seed=3)
    for _ in range(10):
        assert (await client.get("subsidiary", "1"))["id"] == "1"
    assert client.transport is not None and client.transport.stats.retries > 0


async def test_timeout_becomes_upstream_timeout(
    make_client: Callable[..., ErpClient], admin: SandboxAdmin
) -> None:
    erp = make_client(timeout_s=0.1, retry=RetryConfig(attempts=2, backoff_initial_s=0.001))
    await erp.ping()
    await admin.set_faults(timeout_rate=1.0, timeout_s=5)
    with pytest.raises(UpstreamTimeout):
        await erp.get("subsidiary", "1")
    await erp.aclose()


async def test_token_expiry_mid_run_refreshes_once(client: ErpClient, app: Starlette) -> None:
    assert client.auth is not None
    await client.get("subsidiary", "1")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://erp") as http:
        assert (await http.post("/__sandbox/erp/expire-tokens")).status_code == 200
    results = await asyncio.gather(*(client.get("subsidiary", "1") for _ in range(5)))
    assert len(results) == 5 and client.auth.fetches == 2


async def test_bad_secret_is_auth_failure(make_client: Callable[..., ErpClient]) -> None:
    from canonical.errors import UpstreamAuthFailed

    erp = make_client(client_secret="wrong-secret-of-sufficient-length-000")
    with pytest.raises(UpstreamAuthFailed):
        await erp.ping()
    await erp.aclose()


async def test_closed_period_rejects_time_bill_recognisably(client: ErpClient) -> None:
    project = next(p for p in FIRM.projects if p.is_active)
    body = {
        "employee": {"id": "3001"},
        "customer": {"id": str(project.erp_job_id)},
        "tranDate": "2026-09-15",
        "hours": 2,
        "rate": 160,
    }
    with pytest.raises(ErpRejected) as info:
        await client.upsert("timeBill", "te-closed", body)
    assert info.value.reason == PERIOD_CLOSED and info.value.error_path == "tranDate"
    assert info.value.as_extensions()["reason"] == PERIOD_CLOSED
    assert await client.get_by_external_id("timeBill", "te-closed") is None


async def test_closed_project_rejects_time_bill(client: ErpClient) -> None:
    job_id = str(FIRM.projects[0].erp_job_id)
    await client.update("job", job_id, {"status": "closed"})
    body = {"employee": {"id": "3001"}, "customer": {"id": job_id}, "tranDate": "2026-11-16", "hours": 2}
    with pytest.raises(ErpRejected) as info:
        await client.upsert("timeBill", "te-pc", body)
    assert info.value.reason == PROJECT_CLOSED


async def test_unknown_reference_has_error_path(client: ErpClient) -> None:
    body = {
        "employee": {"id": "1"},
        "customer": {"id": str(FIRM.projects[0].erp_job_id)},
        "tranDate": "2026-11-16",
        "hours": 2,
    }
    with pytest.raises(ErpRejected) as info:
        await client.upsert("timeBill", "te-ref", body)
    assert info.value.vendor_code == "INVALID_FLD_VALUE" and info.value.error_path == "employee"


async def test_idempotency_key_duplicate_via_client(client: ErpClient) -> None:
    body = {"companyName": "Async Co", "subsidiary": {"id": "1"}}
    location = await client.create_async("customer", body, idempotency_key="k-1")
    assert (await client.job(location))["status"] == "succeeded"
    with pytest.raises(UpstreamRejected) as info:
        await client.create_async("customer", body, idempotency_key="k-1")
    assert info.value.vendor_code == "IDEMPOTENCY_ERROR"


async def test_reference_cache_hits_and_invalidate(client: ErpClient, admin: SandboxAdmin) -> None:
    period = await client.period_for(date(2026, 9, 10))
    assert period is not None and period.closed and period.name == "Sep 2026"
    before = (await admin.counters())["total"]
    assert (await client.period_for(date(2026, 11, 3))) is not None
    assert (await admin.counters())["total"] == before
    client.invalidate()
    await client.period_for(date(2026, 11, 3))
    assert (await admin.counters())["total"] > before


async def test_bulk_reads_chunk_in_lists(make_client: Callable[..., ErpClient], admin: SandboxAdmin) -> None:
    erp = make_client(in_list_max=10)
    ids = [str(a.erp_customer_id) for a in FIRM.accounts if a.erp_customer_id][:25]
    await erp.ping()
    await admin.reset_counters()
    customers = await erp.customers_by_ids(ids)
    assert set(customers) == set(ids)
    assert (await admin.counters())["by_endpoint"][SUITEQL] == 3
    invoices = await erp.invoices_by_customer_ids(ids)
    expected = sum(1 for inv in FIRM.invoices if str(FIRM.accounts[inv.account_index].erp_customer_id) in ids)
    assert sum(len(v) for v in invoices.values()) == expected
    await erp.aclose()


async def test_invoice_totals_by_customer(client: ErpClient) -> None:
    ids = [str(a.erp_customer_id) for a in FIRM.accounts if a.erp_customer_id]
    totals = await client.invoice_totals_by_customer(ids, FIRM.as_of)
    for account in FIRM.accounts:
        if not account.erp_customer_id:
            continue
        invoices = [i for i in FIRM.invoices if i.account_index == account.index]
        got = totals[str(account.erp_customer_id)]
        assert sum(t.invoices for t in got) == len(invoices)
        if invoices:
            (row,) = got
            assert row.billed.amount == sum(i.total for i in invoices)
            assert row.remaining.amount == sum(i.amount_remaining for i in invoices)
            overdue = sum(i.amount_remaining for i in invoices if i.due_date < FIRM.as_of)
            assert row.overdue.amount == overdue
            assert sum(m.amount for m in row.overdue_buckets.values()) == overdue
