from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from starlette.applications import Starlette

from canonical.errors import (
    UpstreamAuthFailed,
    UpstreamNotFound,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
)
from subgraphs.common.config import RetryConfig
from subgraphs.common.sandbox import Limits, SandboxOptions
from subgraphs.psa.client import PsaClient
from subgraphs.psa.config import PsaConfig
from subgraphs.psa.loaders import PsaLoaders
from subgraphs.psa.mapping import PsaIds
from subgraphs.psa.sandbox import create_app

from .conftest import FakeSleep, MakeClient, serve


async def _counters(raw: httpx.AsyncClient) -> dict[str, object]:
    return dict((await raw.get("/__sandbox/counters")).json())


async def test_page_paging_follows_links_next(make_client: MakeClient, raw: httpx.AsyncClient) -> None:
    client = make_client(per_page=7)
    pages = [page async for page in client.paginate("/v2/projects", {"per_page": 7})]
    ids = [r["id"] for page in pages for r in page.records]
    assert len(pages) > 3 and len(ids) == len(set(ids)) == pages[0].total_entries
    assert pages[-1].next_url is None
    counters = await _counters(raw)
    assert counters["by_endpoint"] == {"GET /v2/projects": len(pages)}


async def test_cursor_paging_reads_every_entry_once(make_client: MakeClient, raw: httpx.AsyncClient) -> None:
    client = make_client(per_page=250)
    pages = [page async for page in client.time_entries()]
    ids = [e["id"] for page in pages for e in page]
    total = (await raw.get("/v2/time_entries", params={"per_page": 1})).json()["total_entries"]
    assert len(pages) == -(-total // 250) and len(ids) == len(set(ids)) == total


async def test_cursor_paging_is_stable_under_edits(make_client: MakeClient, raw: httpx.AsyncClient) -> None:
    client = make_client(per_page=100)
    seen: list[int] = []
    async for page in client.time_entries():
        seen += [e["id"] for e in page]
        # an entry created mid-read lands after the cursor and is read exactly once
        if len(seen) == 100:
            e = page[0]
            body = {
                "project_id": e["project"]["id"],
                "task_id": e["task"]["id"],
                "spent_date": "2026-11-27",
                "hours": 1,
            }
            assert (await raw.post("/v2/time_entries", json=body)).status_code == 201
    assert len(seen) == len(set(seen))
    assert seen == sorted(seen)


async def test_per_page_over_2000_is_rejected(make_client: MakeClient) -> None:
    client = make_client()
    with pytest.raises(UpstreamRejected) as caught:
        async for _ in client.paginate("/v2/time_entries", {"per_page": 2001}):
            pass
    assert caught.value.status == 422 and "per_page" in caught.value.message


async def test_errors_are_translated(make_client: MakeClient) -> None:
    with pytest.raises(UpstreamNotFound):
        await make_client().time_entry(1)
    with pytest.raises(UpstreamAuthFailed) as caught:
        await make_client(client_secret="wrong").ping()
    assert caught.value.status == 401 and caught.value.vendor_code == "invalid_token"
    assert await make_client().ping() is True


async def test_rate_limit_429s_are_waited_out(make_client: MakeClient, raw: httpx.AsyncClient) -> None:
    await raw.put("/__sandbox/faults", json={"limits": {"rate_limit_requests": 10, "rate_limit_window_s": 1}})
    client = make_client(rate_limit_requests=0, retry=RetryConfig(attempts=10))  # no client budget
    ids = [e["id"] async for page in make_client().time_entries(project_id=None) for e in page][:30]
    await raw.delete("/__sandbox/counters")
    started = time.monotonic()
    entries = await asyncio.gather(*(client.time_entry(i) for i in ids))
    assert [e["id"] for e in entries] == ids  # none lost
    assert client.stats["rate_limited"] > 0 and client.retry.stats.limit_waits > 0
    assert time.monotonic() - started >= 1.0  # honoured Retry-After (>= 1 s)


async def test_client_budget_avoids_429s(make_client: MakeClient, raw: httpx.AsyncClient) -> None:
    await raw.put("/__sandbox/faults", json={"limits": {"rate_limit_requests": 10, "rate_limit_window_s": 1}})
    client = make_client(rate_limit_requests=10, rate_limit_window_s=1)
    results = await asyncio.gather(*(client.ping() for _ in range(25)))
    assert all(results)
    assert client.stats["rate_limited"] == 0 and client.stats["budget_waits"] > 0
    assert (await _counters(raw))["rejected"] == {}


async def test_retry_budget_exhausted_is_typed(make_client: MakeClient, raw: httpx.AsyncClient) -> None:
    await raw.put("/__sandbox/faults", json={"error_rates": {"429": 1.0}, "retry_after_s": 2})
    sleep = FakeSleep()
    client = make_client(retry=RetryConfig(attempts=3), sleep=sleep)
    with pytest.raises(UpstreamRateLimited) as caught:
        await client.ping()
    assert caught.value.retry_after == 2.0 and caught.value.status == 429
    assert sleep.waits == [2.0, 2.0]  # Retry-After honoured, then given up
    assert client.stats["requests"] == 3


async def test_503s_are_retried(make_client: MakeClient, raw: httpx.AsyncClient) -> None:
    await raw.put("/__sandbox/faults", json={"error_rates": {"503": 0.4}, "seed": 3})
    client = make_client(retry=RetryConfig(attempts=8), sleep=FakeSleep())
    entries = [e async for page in client.time_entries() for e in page]
    projects = [p async for page in client.projects() for p in page]
    results = await asyncio.gather(*(client.project(p["id"]) for p in projects[:20]))
    assert entries and len(results) == 20
    assert client.retry.stats.retries > 0
    assert (await _counters(raw))["total"] > client.retry.stats.retries


async def test_concurrency_cap_is_respected(make_client: MakeClient, raw: httpx.AsyncClient) -> None:
    await raw.put("/__sandbox/faults", json={"latency_ms": 15})
    client = make_client(max_concurrency=3)
    projects = [p async for page in client.projects() for p in page]
    by_project = await client.time_entries_by_project_ids(p["id"] for p in projects[:12])
    assert len(by_project) == 12
    assert client.stats["peak_in_flight"] <= 3
    assert (await _counters(raw))["peak_in_flight"] <= 3
    for pid, entries in by_project.items():
        assert all(e["project"]["id"] == pid for e in entries)


async def test_timeout_over_real_http() -> None:
    app = create_app(SandboxOptions(accounts=5, limits=Limits()))
    with serve(app) as base_url:
        async with httpx.AsyncClient(base_url=base_url) as admin:
            await admin.put("/__sandbox/faults", json={"timeout_rate": 1.0, "timeout_s": 2})
        config = PsaConfig(
            base_url=base_url, timeout_s=0.3, retry=RetryConfig(attempts=2, backoff_initial_s=0)
        )
        async with PsaClient.from_config(config) as client:
            started = time.monotonic()
            with pytest.raises(UpstreamTimeout) as caught:
                await client.ping()
            assert time.monotonic() - started < 1.5
            assert isinstance(caught.value.__cause__, httpx.TimeoutException)


async def test_links_next_off_origin_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "projects": [],
                "total_entries": 0,
                "links": {"next": "https://evil.example/v2/projects?page=2"},
            },
        )

    client = PsaClient.from_config(
        PsaConfig(base_url="https://api.harvestapp.com"), httpx.MockTransport(handler)
    )
    async with client:
        with pytest.raises(UpstreamRejected):
            async for _ in client.paginate("/v2/projects"):
                pass


async def test_writes_provision_a_project(make_client: MakeClient, app: Starlette) -> None:
    client = make_client()
    clients = await client.clients()
    project = await client.create_project(
        {
            "client_id": clients[0]["id"],
            "name": "New engagement",
            "code": "PRJ-NEW",
            "is_billable": True,
            "bill_by": "People",
            "budget_by": "project_cost",
            "cost_budget": 5000.0,
        }
    )
    task = await client.create_task({"name": "Onboarding"})
    assignment = await client.create_task_assignment(project["id"], {"task_id": task["id"]})
    assert assignment["project"]["code"] == "PRJ-NEW"
    entry = await client.create_time_entry(
        {"project_id": project["id"], "task_id": task["id"], "spent_date": "2026-11-27", "hours": 3.5}
    )
    app.state.psa.clock.advance(1)
    linked = await client.set_external_reference(
        entry["id"], {"id": "erp:timebill:1", "group_id": "netsuite"}
    )
    assert linked["external_reference"] is not None and linked["external_reference"]["id"] == "erp:timebill:1"
    assert linked["updated_at"] > entry["updated_at"]
    updated = await client.update_project(project["id"], {"is_active": False})
    assert updated["is_active"] is False
    with pytest.raises(UpstreamRejected):
        await client.create_task({"name": "Onboarding"})  # duplicate name: 422, never retried
    await client.delete_time_entry(entry["id"])
    with pytest.raises(UpstreamNotFound):
        await client.time_entry(entry["id"])


async def test_loaders_batch(make_client: MakeClient, raw: httpx.AsyncClient) -> None:
    client = make_client()
    projects = [p async for page in client.projects() for p in page]
    ids = [p["id"] for p in projects]
    await raw.delete("/__sandbox/counters")
    loaders = PsaLoaders(client, PsaIds())
    few = await loaders.projects.load_many([ids[0], ids[1], 1])
    assert [p.psa_id if p else None for p in few] == [str(ids[0]), str(ids[1]), None]
    assert (await _counters(raw))["by_endpoint"] == {"GET /v2/projects/{id}": 3}

    await raw.delete("/__sandbox/counters")
    many = await PsaLoaders(client, PsaIds()).projects.load_many(ids[:25])
    assert [p.psa_id for p in many if p] == [str(i) for i in ids[:25]]
    assert (await _counters(raw))["by_endpoint"] == {"GET /v2/projects": 1}

    entries = await loaders.time_entries_by_project.load_many(ids[:3])
    for batch, project in zip(entries, many[:3], strict=True):
        assert batch and project is not None and all(e.project_id == project.id for e in batch)
    users = await loaders.users.load_many([projects[0]["id"], 5000])
    assert users[0] is None and users[1] is not None and users[1]["id"] == 5000
