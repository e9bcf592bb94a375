"""Each fault the sandbox can inject, and what the connector makes of it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from canonical.errors import UpstreamRateLimited, UpstreamRejected, UpstreamTimeout, UpstreamUnavailable
from subgraphs.common.config import RetryConfig
from subgraphs.common.sandbox import SandboxAdmin, SandboxOptions
from subgraphs.crm.client import CrmClient
from subgraphs.crm.config import CrmConfig
from subgraphs.crm.sandbox import create_app

ACCOUNT = "001000000000001AAA"


async def test_request_limit_is_retried_until_the_budget_is_back(
    app: Starlette, config: CrmConfig, admin: SandboxAdmin
) -> None:
    waits: list[float] = []

    async def budget_restored_while_waiting(seconds: float) -> None:
        waits.append(seconds)
        await admin.set_faults(budget_exhausted=False)

    crm = CrmClient.from_config(config, httpx.ASGITransport(app), sleep=budget_restored_while_waiting)
    await crm.ping()
    await admin.set_faults(budget_exhausted=True)
    account = await crm.get("Account", ACCOUNT)
    await crm.aclose()
    assert account["Id"] == ACCOUNT and len(waits) == 1
    counters = await admin.counters()
    assert counters["rejected"] == {"budget": 1}


async def test_request_limit_that_persists_ends_in_rate_limited(
    client: CrmClient, admin: SandboxAdmin, raw: httpx.AsyncClient
) -> None:
    await client.ping()
    await admin.set_faults(budget_exhausted=True)
    await admin.reset_counters()
    with pytest.raises(UpstreamRateLimited) as caught:
        await client.get("Account", ACCOUNT)
    assert caught.value.status == 403 and caught.value.vendor_code == "REQUEST_LIMIT_EXCEEDED"
    assert (await admin.counters())["total"] == 3  # the configured attempts, no more
    response = await raw.get("/services/data/v62.0/limits")
    assert response.status_code == 403 and "Sforce-Limit-Info" in response.headers


async def test_budget_from_limits_is_enforced_as_403(config: CrmConfig) -> None:
    from subgraphs.common.sandbox import Limits

    app = create_app(SandboxOptions(accounts=5, limits=Limits(request_budget=3)))
    crm = CrmClient.from_config(
        config.model_copy(update={"retry": RetryConfig(attempts=1)}), httpx.ASGITransport(app)
    )
    await crm.get("Account", ACCOUNT)  # token + get
    assert crm.limit_info is not None and (crm.limit_info.used, crm.limit_info.max) == (2, 3)
    await crm.get("Account", ACCOUNT)
    with pytest.raises(UpstreamRateLimited):
        await crm.get("Account", ACCOUNT)
    await crm.aclose()


async def test_token_request_under_an_exhausted_budget_is_rate_limited_not_auth(
    client: CrmClient, admin: SandboxAdmin
) -> None:
    await admin.set_faults(budget_exhausted=True)
    with pytest.raises(UpstreamRateLimited):
        await client.ping()


async def test_503s_are_retried(client: CrmClient, admin: SandboxAdmin, sleeps: object) -> None:
    await client.ping()
    await admin.set_faults(error_rates={"503": 0.4}, seed=3)
    got = [await client.get("Account", ACCOUNT) for _ in range(8)]
    assert all(a["Id"] == ACCOUNT for a in got)
    assert (await admin.counters())["rejected"] == {} and sleeps.waits  # type: ignore[attr-defined]
    await admin.set_faults(error_rates={"503": 1.0})
    with pytest.raises(UpstreamUnavailable) as caught:
        await client.get("Account", ACCOUNT)
    assert caught.value.status == 503 and caught.value.vendor_code == "INJECTED_FAULT"


async def test_a_hanging_sandbox_times_out_instead_of_hanging(app: Starlette, admin: SandboxAdmin) -> None:
    config = CrmConfig(timeout_s=0.05, retry=RetryConfig(attempts=2, backoff_initial_s=0, backoff_max_s=0))
    crm = CrmClient.from_config(config, httpx.ASGITransport(app))
    await admin.set_faults(timeout_rate=1.0, timeout_s=5)
    started = asyncio.get_running_loop().time()
    with pytest.raises(UpstreamTimeout) as caught:
        await crm.get("Account", ACCOUNT)
    await crm.aclose()
    assert asyncio.get_running_loop().time() - started < 1.0
    assert caught.value.code == "UPSTREAM_TIMEOUT" and isinstance(
        caught.value.__cause__, httpx.TimeoutException
    )


async def test_a_failing_record_fails_alone(client: CrmClient, admin: SandboxAdmin) -> None:
    await admin.set_faults(fail_records={"001000000000002AAA": 400})
    assert (await client.get("Account", ACCOUNT))["Id"] == ACCOUNT
    with pytest.raises(UpstreamRejected) as caught:
        await client.get("Account", "001000000000002AAA")
    assert caught.value.vendor_code == "INJECTED_RECORD_FAILURE"
    with pytest.raises(UpstreamRejected):
        await client.upsert("Account", "P2C_Id__c", "x", {"ParentId": "001000000000002AAA", "Name": "n"})


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, Starlette]]:
    """The sandbox on a real socket: httpx's own timeouts and connection handling, not the ASGI shortcut."""
    app = create_app(SandboxOptions(accounts=5))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", timeout_graceful_shutdown=0
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}", app
    server.should_exit = True
    await task


async def test_over_a_real_socket(served: tuple[str, Starlette]) -> None:
    base_url, _ = served
    config = CrmConfig(
        base_url=base_url, timeout_s=0.2, retry=RetryConfig(attempts=2, backoff_initial_s=0, backoff_max_s=0)
    )
    crm = CrmClient.from_config(config)
    assert len(await crm.query_all("SELECT Id FROM Account")) == 5
    async with httpx.AsyncClient(base_url=base_url) as http:
        await SandboxAdmin(http).set_faults(timeout_rate=1.0, timeout_s=0.6)
    with pytest.raises(UpstreamTimeout):
        await crm.get("Account", ACCOUNT)
    await crm.aclose()
