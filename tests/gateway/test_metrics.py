"""``/metrics`` after scripted runs through the sandboxes: the counters move by exactly what was done.

Each test scrapes, acts (a query, a provisioning run that meets an injected fault, its replay, a rate limit,
posting time with a rejected write), scrapes again and compares. Upstream counts are checked against the
sandboxes' own request counters, so "what the gateway says it sent" is "what the vendor says it got".
"""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import Iterator, MutableMapping
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from canonical.errors import UpstreamRateLimited
from canonical.principal import Role
from gateway.app import create_app
from gateway.metrics import MAX_ENDPOINTS_PER_SYSTEM, MAX_OPERATION_NAMES, OTHER, Metrics
from gateway.settings import Settings, load_settings
from gateway.webhooks import signature
from gateway.worker import Worker, default_handlers
from mutations.deps import FlowDeps
from subgraphs.crm.client import CrmClient
from subgraphs.psa.client import PsaClient
from tests.gateway.conftest import started
from tests.gateway.test_graphql_endpoint import assert_clean, token_for
from tests.gateway.test_tracing import admin

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette would rather have httpx2 behind its TestClient
    from starlette.testclient import TestClient

DEAL = "006000000000003AAA"  # account 0 (US01), a deal with no project yet; the test wins it
ACCOUNTS = "query Accounts { accounts(first: 3) { edges { node { id name } } } }"
PROVISION = """
mutation Provision($opp: ID!, $key: String) {
  provisionEngagement(opportunityId: $opp, idempotencyKey: $key) { status exceptionId reasonCode }
}"""
SALES_ORDER_PUT = "PUT /services/rest/record/v1/salesOrder/eid:{id}"
OPPORTUNITY_PATCH = "PATCH /services/data/v62.0/sobjects/Opportunity/{id}"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of ``name`` over every series whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, series), v in samples.items() if n == name and wanted <= series)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


@pytest.fixture
async def app(scratch_database_url: str, fast_retries: None) -> Starlette:
    # SQLite and PostgreSQL: the store-derived figures are SQL of their own.
    return create_app(load_settings(database_url=scratch_database_url, demo_accounts=5))


async def sandbox_requests(client: httpx.AsyncClient, system: str) -> int:
    counters = (await client.get(f"/sandbox/{system}/__sandbox/counters")).json()
    return int(counters["total"])


async def provision(client: httpx.AsyncClient, app: Starlette, key: str) -> dict[str, Any]:
    response = await client.post(
        "/graphql",
        json={"query": PROVISION, "variables": {"opp": DEAL, "key": key}, "operationName": "Provision"},
        headers=admin(app),
    )
    assert_clean(response)
    result: dict[str, Any] = response.json()["data"]["provisionEngagement"]
    return result


async def test_a_query_a_failed_and_replayed_provisioning_and_a_rate_limit_move_the_counters_exactly(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    crm: CrmClient = app.state.runtime.client("crm")
    await crm.update("Opportunity", DEAL, {"StageName": "Closed Won"})

    # 1. A query: one operation observed; every upstream request the CRM sandbox saw, counted.
    crm_seen = await sandbox_requests(client, "crm")
    before = await scrape(client)
    response = await client.post("/graphql", json={"query": ACCOUNTS}, headers=admin(app))
    assert response.json()["data"]["accounts"]["edges"]
    after = await scrape(client)
    assert moved(before, after, "p2c_graphql_operation_duration_seconds_count", operation="Accounts") == 1
    assert total(after, "p2c_graphql_operation_duration_seconds_count", type="query", outcome="ok") == 1
    crm_sent = moved(before, after, "p2c_upstream_requests_total", system="crm")
    assert crm_sent >= 1
    assert crm_sent == await sandbox_requests(client, "crm") - crm_seen
    assert moved(before, after, "p2c_upstream_request_duration_seconds_count", system="crm") == crm_sent

    # 2. Provisioning meets an ERP fault on the contract write: two attempts (one retry), an exception.
    await client.put(
        "/sandbox/erp/__sandbox/faults", json={"fail_records": {"/record/v1/salesOrder/eid:": 503}}
    )
    before = await scrape(client)
    failed = await provision(client, app, "k-1")
    assert (failed["status"], failed["reasonCode"]) == ("EXCEPTION", "UPSTREAM_UNAVAILABLE")
    after = await scrape(client)
    write = {"system": "erp", "endpoint": SALES_ORDER_PUT}
    assert moved(before, after, "p2c_upstream_requests_total", **write, status="503") == 2
    assert moved(before, after, "p2c_upstream_retries_total", **write, cause="status") == 1
    assert moved(before, after, "p2c_upstream_rate_limit_waits_total") == 0
    assert total(after, "p2c_flow_runs", flow="provision_engagement", status="FAILED") == 1
    opened = {"flow": "provision_engagement", "reason": "UPSTREAM_UNAVAILABLE"}
    assert total(after, "p2c_exceptions", **opened, status="OPEN") == 1
    assert total(after, "p2c_graphql_operation_duration_seconds_count", operation="Provision") == 1
    assert total(after, "p2c_provisioning_cycle_seconds_count") == 0

    # 3. The fault clears, the run resumes: the exception is resolved, the engagement provisioned.
    await client.delete("/sandbox/erp/__sandbox/faults")
    assert (await provision(client, app, "k-2"))["status"] == "PROVISIONED"
    after_replay = await scrape(client)
    assert total(after_replay, "p2c_exceptions", **opened, status="OPEN") == 0
    assert total(after_replay, "p2c_exceptions", **opened, status="RESOLVED") == 1
    assert total(after_replay, "p2c_flow_runs", flow="provision_engagement", status="SUCCEEDED") == 1
    assert total(after_replay, "p2c_flow_runs", flow="provision_engagement", status="FAILED") == 0
    assert moved(after, after_replay, "p2c_provisioning_cycle_seconds_count") == 1
    assert (
        moved(after, after_replay, "p2c_exception_resolution_seconds_count", flow="provision_engagement") == 1
    )
    assert moved(after, after_replay, "p2c_upstream_requests_total", **write, status="204") == 1

    # 4. A CRM rate limit: one wait of the vendor's Retry-After (whole seconds), then the call gives up.
    await client.put("/sandbox/crm/__sandbox/faults", json={"error_rates": {"429": 1.0}, "retry_after_s": 1})
    before = await scrape(client)
    with pytest.raises(UpstreamRateLimited):
        await crm.update("Opportunity", DEAL, {"Description": "rate limited"})
    after = await scrape(client)
    await client.delete("/sandbox/crm/__sandbox/faults")
    assert moved(before, after, "p2c_upstream_requests_total", system="crm", endpoint=OPPORTUNITY_PATCH) == 2
    assert moved(before, after, "p2c_upstream_retries_total", system="crm", cause="rate_limited") == 1
    assert moved(before, after, "p2c_upstream_rate_limit_waits_total", system="crm") == 1
    assert moved(before, after, "p2c_upstream_rate_limit_wait_seconds_total", system="crm") == 1.0


async def test_posting_time_with_a_rejected_write_moves_the_queue_and_the_exceptions(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    runtime = app.state.runtime
    psa: PsaClient = runtime.client("psa")
    entries = [e async for page in psa.time_entries(from_=None) for e in page]
    approved = [e for e in entries if e["is_closed"] and not e["is_billed"]][:2]
    assert len(approved) == 2, "the demo firm has approved, unbilled entries"
    secret = runtime.settings.webhook_secret.get_secret_value()
    for n, entry in enumerate(approved):
        body = json.dumps(
            {"id": f"m-{n}", "event": "time_entry.updated", "data": {"id": entry["id"]}}
        ).encode()
        headers = {"Content-Type": "application/json", "X-P2C-Signature": signature(body, secret)}
        assert (await client.post("/webhooks/psa", content=body, headers=headers)).status_code < 300

    queued = await scrape(client)
    assert total(queued, "p2c_queue_depth", kind="post_time", status="QUEUED") == 2
    assert total(queued, "p2c_queue_oldest_age_seconds", kind="post_time") >= 0
    assert ("p2c_queue_oldest_age_seconds", frozenset({("kind", "post_time")})) in queued

    # The ERP refuses the first entry's time bill (a 400: not retried); the second posts.
    await client.put(
        "/sandbox/erp/__sandbox/faults",
        json={"fail_records": {f"timeBill/eid:psa:{approved[0]['id']}:v": 400}},
    )
    deps = FlowDeps(
        crm=runtime.client("crm"),
        psa=psa,
        erp=runtime.client("erp"),
        sessionmaker=runtime.sessionmaker,
        mapping=runtime.mapping,
    )
    report = await Worker(runtime.sessionmaker, default_handlers(deps)).drain()
    assert report.claimed == 2
    posted = await scrape(client)
    assert total(posted, "p2c_queue_depth", kind="post_time", status="QUEUED") == 0
    assert total(posted, "p2c_queue_oldest_age_seconds", kind="post_time") == 0
    assert total(posted, "p2c_exceptions", flow="post_time", status="OPEN") == 1
    assert moved(queued, posted, "p2c_upstream_requests_total", system="erp", status="400") == 1
    assert (
        total(posted, "p2c_flow_runs", flow="post_time_batch", status="FAILED") == 1
    )  # one batch, a failure


@pytest.fixture
def quiet_settings(scratch_database_url: str) -> Settings:
    nowhere = {"base_url": "http://127.0.0.1:9"}  # subscriptions read only the store
    return load_settings(database_url=scratch_database_url, crm=nowhere, psa=nowhere, erp=nowhere)


@pytest.fixture
def test_client(quiet_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(quiet_settings)) as client:
        yield client


def test_an_open_websocket_is_a_subscription_connection_until_it_closes(
    test_client: TestClient, quiet_settings: Settings
) -> None:
    def connections() -> float:
        return total(parse(test_client.get("/metrics").text), "p2c_subscription_connections")

    assert connections() == 0
    token = token_for(quiet_settings, roles=(Role.FINANCE,))
    with test_client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_json({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
        assert ws.receive_json() == {"type": "connection_ack"}
        samples = parse(test_client.get("/metrics").text)
        assert total(samples, "p2c_subscription_connections", transport="websocket") == 1
    assert connections() == 0


async def test_an_open_sse_stream_is_a_subscription_connection_until_the_client_leaves(
    quiet_settings: Settings,
) -> None:
    app = create_app(quiet_settings)
    token = token_for(quiet_settings, roles=(Role.FINANCE,))
    query = "subscription { invoiceStatusChanged { eventId } }".replace(" ", "%20")
    opened: asyncio.Queue[int] = asyncio.Queue()
    gone = asyncio.Event()
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": "/graphql/stream", "raw_path": b"/graphql/stream", "query_string": f"query={query}".encode(),
        "root_path": "", "headers": [(b"authorization", f"Bearer {token}".encode())],
        "server": ("gateway", 80), "client": ("test", 1),
    }  # fmt: skip

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            await opened.put(message["status"])

    async with started(app) as client:
        assert total(await scrape(client), "p2c_subscription_connections", transport="sse") == 0
        stream = asyncio.create_task(app(scope, receive, send))
        assert await asyncio.wait_for(opened.get(), 10) == 200
        assert total(await scrape(client), "p2c_subscription_connections", transport="sse") == 1
        gone.set()
        await asyncio.wait_for(stream, 10)
        assert total(await scrape(client), "p2c_subscription_connections", transport="sse") == 0


def test_label_values_stay_bounded() -> None:
    metrics = Metrics()
    for n in range(MAX_OPERATION_NAMES + 50):
        metrics.observe_operation(f"Op{n}", "query", ok=True, duration_s=0.01)
    metrics.observe_operation("not a name!", "query", ok=True, duration_s=0.01)
    metrics.observe_operation(None, "query", ok=True, duration_s=0.01)
    for n in range(MAX_ENDPOINTS_PER_SYSTEM + 50):
        metrics.upstream_request("erp", f"GET /record/v1/type{n}", "200", 1, 0.01)
    samples = parse(metrics.render().decode())
    operations = {
        dict(series)["operation"] for (name, series) in samples if name.startswith("p2c_graphql_operation")
    }
    assert len(operations) == MAX_OPERATION_NAMES + 2  # the names kept, "other" and "anonymous"
    assert {OTHER, "anonymous"} <= operations
    assert total(samples, "p2c_graphql_operation_duration_seconds_count", operation=OTHER) == 51
    endpoints = {
        dict(series)["endpoint"] for (name, series) in samples if name == "p2c_upstream_requests_total"
    }
    assert len(endpoints) == MAX_ENDPOINTS_PER_SYSTEM + 1
    assert total(samples, "p2c_upstream_requests_total", endpoint=OTHER) == 50
    assert total(samples, "p2c_upstream_requests_total", system="erp") == MAX_ENDPOINTS_PER_SYSTEM + 50


def test_endpoint_templates_keep_ids_and_query_strings_out() -> None:
    from subgraphs.common.transport import endpoint_template

    cases = {
        (
            "PUT",
            "/services/rest/record/v1/customer/eid:6f1c2d",
        ): "PUT /services/rest/record/v1/customer/eid:{id}",
        ("GET", "/services/data/v62.0/query/01gXX0000000001-2000"): "GET /services/data/v62.0/query/{id}",
        ("GET", "/services/data/v62.0/sobjects/Opportunity/006000000000002AAA"): (
            "GET /services/data/v62.0/sobjects/Opportunity/{id}"
        ),
        (
            "PATCH",
            "/services/data/v62.0/sobjects/Invoice__c/P2C_Id__c/3fa85f64-5717-4562-b3fc-2c963f66afa6",
        ): ("PATCH /services/data/v62.0/sobjects/Invoice__c/P2C_Id__c/{id}"),
        ("POST", "/services/rest/record/v1/salesOrder/647/!transform/invoice"): (
            "POST /services/rest/record/v1/salesOrder/{id}/!transform/invoice"
        ),
        ("GET", "/v2/projects/12345/task_assignments"): "GET /v2/projects/{id}/task_assignments",
        ("POST", "/services/oauth2/token"): "POST /services/oauth2/token",
    }
    for (method, path), template in cases.items():
        assert endpoint_template(method, path) == template
