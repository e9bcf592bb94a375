"""SandboxPlumbing around a tiny Starlette app, driven through ``httpx.ASGITransport``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import asdict

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from subgraphs.common.sandbox import Faults, Limits, SandboxAdmin, SandboxPlumbing, endpoint_key

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


async def echo(request: Request) -> Response:
    delay = float(request.query_params.get("sleep", "0"))
    if delay:
        await asyncio.sleep(delay)
    body = await request.body()
    return JSONResponse({"method": request.method, "path": request.url.path, "body": body.decode()})


async def vendor_admin(request: Request) -> Response:
    return JSONResponse({"vendor_admin": request.path_params["action"]})


def vendor_app() -> Starlette:
    return Starlette(routes=[
        Route("/__sandbox/{action}", vendor_admin, methods=METHODS),
        Route("/{path:path}", echo, methods=METHODS),
    ])


class Renderer:
    """Renders like Salesforce: a JSON array of errors, and a 403 for an exhausted request budget."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str, str]] = []

    def __call__(self, status: int, code: str, message: str) -> Response:
        self.calls.append((status, code, message))
        if code == "REQUEST_LIMIT_EXCEEDED":
            status = 403
        return JSONResponse([{"errorCode": code, "message": message, "fields": []}], status_code=status)


@pytest.fixture
def renderer() -> Renderer:
    return Renderer()


@pytest.fixture
def plumbing(renderer: Renderer) -> SandboxPlumbing:
    return SandboxPlumbing(vendor_app(), render_error=renderer)


@pytest.fixture
async def client(plumbing: SandboxPlumbing) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=plumbing), base_url="http://sandbox") as c:
        yield c


@pytest.fixture
def admin(client: httpx.AsyncClient) -> SandboxAdmin:
    return SandboxAdmin(client)


def error_code(response: httpx.Response) -> str:
    return str(response.json()[0]["errorCode"])


# -- endpoint keys -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/v2/time_entries", "GET /v2/time_entries"),
        ("/v2/time_entries/123", "GET /v2/time_entries/{id}"),
        ("/services/data/v62.0/sobjects/Account/001000000000001AAA",
         "GET /services/data/v62.0/sobjects/Account/{id}"),
        ("/services/data/v62.0/query/01gXX0000000001-2000", "GET /services/data/v62.0/query/{id}"),
        ("/services/rest/record/v1/customer/647", "GET /services/rest/record/v1/customer/{id}"),
        ("/services/rest/record/v1/customer/eid:ACME-0042", "GET /services/rest/record/v1/customer/{id}"),
        ("/services/rest/record/v1/customer/eid:acme", "GET /services/rest/record/v1/customer/{id}"),
        ("/services/rest/record/v1/salesOrder/12/!transform/invoice",
         "GET /services/rest/record/v1/salesOrder/{id}/!transform/invoice"),
        # resource names that merely contain a digit are not ids
        ("/services/rest/auth/oauth2/v1/token", "GET /services/rest/auth/oauth2/v1/token"),
        ("/services/data/v62.0/sobjects/Product2/01t000000000001AAA",
         "GET /services/data/v62.0/sobjects/Product2/{id}"),
        ("/services/data/v62.0/sobjects/Account/a0B5g00000XyZabEAF",
         "GET /services/data/v62.0/sobjects/Account/{id}"),
    ],
)
def test_endpoint_key(path: str, key: str) -> None:
    assert endpoint_key("GET", path) == key


# -- counters ------------------------------------------------------------------------------------


async def test_counters_group_by_endpoint_and_reset(
    client: httpx.AsyncClient, plumbing: SandboxPlumbing
) -> None:
    for n in (1, 2, 3):
        assert (await client.get(f"/v2/time_entries/{n}")).status_code == 200
    await client.get("/services/data/v62.0/sobjects/Account/001000000000001AAA")
    await client.post("/v2/time_entries", json={})
    await client.get("/__sandbox/faults")
    await client.get("/__sandbox/expire_tokens")  # a vendor admin route: not counted either
    body = (await client.get("/__sandbox/counters")).json()
    assert body["total"] == 5
    assert body["by_endpoint"] == {
        "GET /services/data/v62.0/sobjects/Account/{id}": 1,
        "GET /v2/time_entries/{id}": 3,
        "POST /v2/time_entries": 1,
    }
    assert body["rejected"] == {}
    assert body["peak_in_flight"] == 1
    assert body["budget_used"] == 5
    assert body["limits"] == asdict(Limits())

    reset = (await client.delete("/__sandbox/counters")).json()
    assert reset["total"] == 0
    assert reset["by_endpoint"] == {}
    assert reset["peak_in_flight"] == 0
    assert reset["budget_used"] == 0
    assert plumbing.counters_body() == reset


# -- faults admin --------------------------------------------------------------------------------


async def test_faults_put_merges_and_delete_resets(
    client: httpx.AsyncClient, plumbing: SandboxPlumbing
) -> None:
    assert (await client.get("/__sandbox/faults")).json() == asdict(Faults())
    first = await client.put("/__sandbox/faults", json={"latency_ms": 5, "error_rates": {"503": 0.0}})
    assert first.status_code == 200
    more = {"jitter_ms": 2, "fail_records": {"X1": 422}}
    second = (await client.put("/__sandbox/faults", json=more)).json()
    assert second["latency_ms"] == 5
    assert second["jitter_ms"] == 2
    assert second["error_rates"] == {"503": 0.0}
    assert second["fail_records"] == {"X1": 422}
    assert (await client.get("/__sandbox/faults")).json() == second
    assert plumbing.faults.latency_ms == 5

    assert (await client.delete("/__sandbox/faults")).json() == asdict(Faults())
    assert plumbing.faults == Faults()


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"latency": 5}, "unknown fault field(s): latency"),
        ({"error_rates": {"abc": 0.5}}, "'abc'"),
        ({"error_rates": {"200": 0.5}}, "'200'"),
        ({"error_rates": {"600": 0.5}}, "'600'"),
        ({"limits": {"cap": 3}}, "cap"),
    ],
)
async def test_faults_put_rejects_bad_bodies(
    client: httpx.AsyncClient, plumbing: SandboxPlumbing, body: dict[str, object], needle: str
) -> None:
    response = await client.put("/__sandbox/faults", json={"latency_ms": 50, **body})
    assert response.status_code == 400
    assert needle in response.json()["error"]
    # a refused change changes nothing, not even the valid half of it
    assert plumbing.faults == Faults()
    assert plumbing.limits == Limits()


@pytest.mark.parametrize("content", [b"[1, 2]", b"{not json", b'"text"'])
async def test_faults_put_rejects_non_objects(client: httpx.AsyncClient, content: bytes) -> None:
    response = await client.put("/__sandbox/faults", content=content)
    assert response.status_code == 400
    assert "error" in response.json()


async def test_empty_put_keeps_faults(client: httpx.AsyncClient) -> None:
    await client.put("/__sandbox/faults", json={"latency_ms": 3})
    response = await client.put("/__sandbox/faults", content=b"")
    assert response.status_code == 200
    assert response.json()["latency_ms"] == 3


async def test_limits_change_through_the_admin_body(
    client: httpx.AsyncClient, plumbing: SandboxPlumbing
) -> None:
    limits_body = {"limits": {"concurrency_cap": 2, "request_budget": 9}}
    response = await client.put("/__sandbox/faults", json=limits_body)
    assert response.status_code == 200
    assert "limits" not in response.json()
    assert plumbing.limits == Limits(concurrency_cap=2, request_budget=9)
    await client.put("/__sandbox/faults", json={"limits": {"rate_limit_requests": 4}})
    limits = (await client.get("/__sandbox/counters")).json()["limits"]
    assert limits == {"concurrency_cap": 2, "rate_limit_requests": 4, "rate_limit_window_s": 15.0,
                      "request_budget": 9}


async def test_vendor_admin_routes_reach_the_app_uncounted_and_unfaulted(
    client: httpx.AsyncClient, plumbing: SandboxPlumbing, renderer: Renderer
) -> None:
    await client.put("/__sandbox/faults", json={"error_rates": {"503": 1.0}, "budget_exhausted": True,
                                                "limits": {"concurrency_cap": 1, "request_budget": 0}})
    response = await client.post("/__sandbox/expire_tokens")
    assert response.status_code == 200
    assert response.json() == {"vendor_admin": "expire_tokens"}
    assert sum(plumbing.counters.values()) == 0
    assert renderer.calls == []


# -- injected faults -----------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "code"), [("503", "INJECTED_FAULT"), ("500", "INJECTED_FAULT"),
                                              ("429", "RATE_LIMITED")])
async def test_error_rate_one_fails_every_request(
    client: httpx.AsyncClient, renderer: Renderer, status: str, code: str
) -> None:
    await client.put("/__sandbox/faults", json={"error_rates": {status: 1.0}, "retry_after_s": 3})
    for _ in range(5):
        response = await client.get("/v2/projects")
        assert response.status_code == int(status)
        assert response.headers["Retry-After"] == "3"
        assert error_code(response) == code
    assert renderer.calls == [(int(status), code, f"injected {status}")] * 5


async def test_injected_403_is_the_salesforce_limit(client: httpx.AsyncClient) -> None:
    await client.put("/__sandbox/faults", json={"error_rates": {"403": 1.0}})
    response = await client.get("/services/data/v62.0/limits")
    assert response.status_code == 403
    assert error_code(response) == "REQUEST_LIMIT_EXCEEDED"
    assert response.headers["Retry-After"] == "1"


async def test_error_rate_zero_and_seeded_rate(client: httpx.AsyncClient) -> None:
    await client.put("/__sandbox/faults", json={"error_rates": {"503": 0.0}})
    assert [(await client.get("/x")).status_code for _ in range(10)] == [200] * 10

    statuses = []
    for _ in range(2):
        await client.put("/__sandbox/faults", json={"error_rates": {"503": 0.5}, "seed": 11})
        statuses.append([(await client.get("/x")).status_code for _ in range(40)])
    assert statuses[0] == statuses[1]  # the seed makes a fault run repeatable
    assert 5 < statuses[0].count(503) < 35


async def test_latency_is_applied(client: httpx.AsyncClient) -> None:
    await client.put("/__sandbox/faults", json={"latency_ms": 120})
    started = time.perf_counter()
    response = await client.get("/v2/users")
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    assert 0.1 <= elapsed < 2.0


async def test_jitter_only_adds_bounded_delay(client: httpx.AsyncClient) -> None:
    await client.put("/__sandbox/faults", json={"jitter_ms": 30})
    started = time.perf_counter()
    for _ in range(3):
        await client.get("/v2/users")
    assert time.perf_counter() - started < 1.5


async def test_timeout_rate_delays_by_timeout_s(client: httpx.AsyncClient) -> None:
    await client.put("/__sandbox/faults", json={"timeout_rate": 1.0, "timeout_s": 0.15})
    started = time.perf_counter()
    response = await client.get("/v2/users")
    assert time.perf_counter() - started >= 0.14
    assert response.status_code == 200


async def test_a_client_giving_up_frees_the_slot(
    client: httpx.AsyncClient, plumbing: SandboxPlumbing
) -> None:
    await client.put("/__sandbox/faults", json={"timeout_rate": 1.0, "timeout_s": 30,
                                                "limits": {"concurrency_cap": 1}})
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.get("/v2/users"), 0.05)
    assert plumbing.in_flight == 0
    await client.put("/__sandbox/faults", json={"timeout_rate": 0.0})
    assert (await client.get("/v2/users")).status_code == 200


async def test_fail_records_match_path_query_and_body(client: httpx.AsyncClient, renderer: Renderer) -> None:
    await client.put("/__sandbox/faults", json={"fail_records": {"eid:ACME-42": 400, "PRJ-00007": 422}})

    by_path = await client.put("/services/rest/record/v1/customer/eid:ACME-42", json={"companyName": "Acme"})
    assert by_path.status_code == 400
    assert error_code(by_path) == "INJECTED_RECORD_FAILURE"

    by_body = await client.post("/services/rest/record/v1/job", json={"entityId": "PRJ-00007"})
    assert by_body.status_code == 422
    assert renderer.calls[-1] == (422, "INJECTED_RECORD_FAILURE", "record PRJ-00007 always fails")

    by_query = await client.get("/v2/projects", params={"code": "PRJ-00007"})
    assert by_query.status_code == 422

    # the plumbing read the body to search it; the app must still get it (a bounded wait, not a hang)
    other = await asyncio.wait_for(
        client.post("/services/rest/record/v1/job", json={"entityId": "PRJ-00008", "memo": "é"}), 5
    )
    assert other.status_code == 200
    assert other.json()["body"] == '{"entityId":"PRJ-00008","memo":"é"}'
    assert (await client.get("/v2/projects/8")).status_code == 200


async def test_large_body_passes_intact(client: httpx.AsyncClient) -> None:
    await client.put("/__sandbox/faults", json={"fail_records": {"never-there": 500}})
    payload = "x" * 200_000
    response = await asyncio.wait_for(client.post("/v2/blob", content=payload.encode()), 5)
    assert response.json()["body"] == payload


# -- limits --------------------------------------------------------------------------------------


async def test_concurrency_cap_rejects_the_excess(renderer: Renderer) -> None:
    plumbing = SandboxPlumbing(vendor_app(), render_error=renderer, limits=Limits(concurrency_cap=3))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=plumbing), base_url="http://s") as client:
        responses = await asyncio.gather(*(client.get("/slow", params={"sleep": "0.1"}) for _ in range(10)))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] * 3 + [429] * 7
        rejected = [r for r in responses if r.status_code == 429]
        assert all(error_code(r) == "CONCURRENCY_LIMIT_EXCEEDED" for r in rejected)
        assert all(int(r.headers["Retry-After"]) >= 1 for r in rejected)
        assert plumbing.rejected["cap"] == 7
        assert plumbing.peak_in_flight == 3
        assert plumbing.in_flight == 0
        assert (await client.get("/slow")).status_code == 200  # slots come back
        counters = (await client.get("/__sandbox/counters")).json()
    assert counters["rejected"] == {"cap": 7}
    assert counters["by_endpoint"] == {"GET /slow": 11}


async def test_rate_limit_window(renderer: Renderer) -> None:
    plumbing = SandboxPlumbing(vendor_app(), render_error=renderer,
                               limits=Limits(rate_limit_requests=5, rate_limit_window_s=15))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=plumbing), base_url="http://s") as client:
        assert [(await client.get("/v2/users")).status_code for _ in range(5)] == [200] * 5
        sixth = await client.get("/v2/users")
    assert sixth.status_code == 429
    assert error_code(sixth) == "RATE_LIMITED"
    assert 1 <= int(sixth.headers["Retry-After"]) <= 15
    assert plumbing.rejected == {"rate": 1}


async def test_rate_limit_window_slides(client: httpx.AsyncClient) -> None:
    limits = {"rate_limit_requests": 2, "rate_limit_window_s": 0.2}
    await client.put("/__sandbox/faults", json={"limits": limits})
    assert [(await client.get("/a")).status_code for _ in range(3)] == [200, 200, 429]
    await asyncio.sleep(0.25)
    assert (await client.get("/a")).status_code == 200


async def test_request_budget_exhaustion_renders_the_vendor_limit(
    client: httpx.AsyncClient, plumbing: SandboxPlumbing, renderer: Renderer
) -> None:
    await client.put("/__sandbox/faults", json={"limits": {"request_budget": 3}})
    assert [(await client.get("/services/data/v62.0/limits")).status_code for _ in range(3)] == [200] * 3
    over = await client.get("/services/data/v62.0/limits")
    assert over.status_code == 403
    assert over.json() == [
        {"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded.", "fields": []}
    ]
    assert "Retry-After" in over.headers
    assert renderer.calls[-1][1:] == ("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
    assert plumbing.rejected == {"budget": 1}
    await client.delete("/__sandbox/counters")  # a new day's allowance
    assert (await client.get("/services/data/v62.0/limits")).status_code == 200


async def test_budget_exhausted_flag(client: httpx.AsyncClient, plumbing: SandboxPlumbing) -> None:
    await client.put("/__sandbox/faults", json={"budget_exhausted": True})
    response = await client.post("/services/data/v62.0/sobjects/Account", json={"Name": "Acme"})
    assert response.status_code == 403
    assert error_code(response) == "REQUEST_LIMIT_EXCEEDED"
    assert plumbing.rejected["budget"] == 1
    await client.delete("/__sandbox/faults")
    assert (await client.post("/services/data/v62.0/sobjects/Account", json={})).status_code == 200


# -- SandboxAdmin --------------------------------------------------------------------------------


async def test_sandbox_admin_round_trip(admin: SandboxAdmin, client: httpx.AsyncClient,
                                        plumbing: SandboxPlumbing) -> None:
    faults = await admin.set_faults(latency_ms=1, error_rates={"503": 0.0}, limits={"concurrency_cap": 4})
    assert faults["latency_ms"] == 1
    assert faults["error_rates"] == {"503": 0.0}
    assert plumbing.limits.concurrency_cap == 4

    await client.get("/v2/users/1")
    counters = await admin.counters()
    assert counters["total"] == 1
    assert counters["by_endpoint"] == {"GET /v2/users/{id}": 1}

    await admin.reset_counters()
    assert (await admin.counters())["total"] == 0

    await admin.clear_faults()
    assert plumbing.faults == Faults()

    with pytest.raises(httpx.HTTPStatusError):
        await admin.set_faults(no_such_fault=True)
