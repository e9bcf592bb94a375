"""OpenTelemetry spans: a GraphQL operation, its upstream attempts and a provisioning run's steps, all with
the correlation id; exported through the SDK's in-memory exporter.

The provider is the process's (OpenTelemetry sets it once): the ``spans`` fixture installs one for the
session whose exporter keeps spans only while a test of this module is looking, and turns the gateway's
and the transport's tracers off again afterwards, so later tests create no operation or upstream spans.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette

from canonical.errors import ConfigurationError
from canonical.principal import Role
from gateway import tracing
from gateway.app import create_app
from gateway.correlation import HEADER
from gateway.settings import Settings, load_settings
from gateway.tracing import CORRELATION_ID, build_provider, exporter_for, install
from store.models import AuditEntry, IntegrationException, IntegrationRun, IntegrationStep
from subgraphs.common import transport
from subgraphs.common.transport import ObservedTransport, RetryPolicy, build_transport
from tests.gateway.test_graphql_endpoint import assert_clean, bearer, token_for

DEAL = "006000000000003AAA"  # account 0 (US01), a deal with no project yet; the tests win it
ACCOUNTS = "query Accounts { accounts(first: 3) { edges { node { id name } } } }"
REPLAY = """
mutation Replay($id: ID!, $key: String!) {
  replayException(id: $id, idempotencyKey: $key) { __typename }
}
"""

RUNS_BY_ID = """
query Runs($cid: String!) {
  integrationRuns(filter: {correlationId: $cid}) {
    edges { node { id steps { name correlationId } } }
  }
}
"""

PROVISION = """
mutation Provision($opp: ID!, $key: String) {
  provisionEngagement(opportunityId: $opp, idempotencyKey: $key) { status exceptionId reasonCode }
}"""
SALES_ORDER_PUT = "PUT /services/rest/record/v1/salesOrder/eid:{id}"


class _Capture(InMemorySpanExporter):
    active = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self.active:
            return SpanExportResult.SUCCESS
        return super().export(spans)


_CAPTURE = _Capture()


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Capture]:
    # The gateway's and the transport's tracers only for this test; the global provider (flows) stays.
    monkeypatch.setattr(tracing, "_operation_tracer", tracing.operation_tracer())
    monkeypatch.setattr(transport, "_tracer", transport._tracer)
    provider = install(build_provider(_CAPTURE, service="p2c-test", batch=False))  # the first stays
    monkeypatch.setattr(tracing, "_operation_tracer", provider.get_tracer(tracing.GATEWAY_TRACER))
    monkeypatch.setattr(transport, "_tracer", provider.get_tracer(tracing.UPSTREAM_TRACER))
    _CAPTURE.clear()
    _CAPTURE.active = True
    try:
        yield _CAPTURE
    finally:
        _CAPTURE.active = False
        _CAPTURE.clear()


def named(spans: _Capture, name: str) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if s.name == name]


def upstream(spans: _Capture, system: str | None = None) -> list[ReadableSpan]:
    found = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CLIENT]
    return [s for s in found if system is None or (s.attributes or {}).get("p2c.system") == system]


def attr(span: ReadableSpan, key: str) -> Any:
    return (span.attributes or {}).get(key)


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


@pytest.fixture
async def app(sqlite_url: str, fast_retries: None) -> Starlette:
    return create_app(load_settings(database_url=sqlite_url, demo_accounts=5))


def admin(app: Starlette) -> dict[str, str]:
    settings: Settings = app.state.settings
    return bearer(token_for(settings, roles=(Role.INTEGRATION_ADMIN,)))


async def test_a_query_is_one_operation_span_over_its_upstream_calls(
    client: httpx.AsyncClient, app: Starlette, spans: _Capture
) -> None:
    response = await client.post(
        "/graphql", json={"query": ACCOUNTS}, headers={**admin(app), HEADER: "corr-query-1"}
    )
    assert_clean(response)
    assert response.json()["data"]["accounts"]["edges"]

    [operation] = named(spans, "Accounts")
    assert operation.kind is SpanKind.SERVER
    assert attr(operation, "graphql.operation.type") == "query"
    assert attr(operation, CORRELATION_ID) == "corr-query-1"
    calls = upstream(spans)
    assert calls, "the first read of a fresh gateway goes upstream"
    for call in calls:
        assert parent_id(call) == operation.context.span_id
        assert call.context.trace_id == operation.context.trace_id
        assert attr(call, CORRELATION_ID) == "corr-query-1"
        assert attr(call, "p2c.attempt") == 1
        assert attr(call, "http.response.status_code") == 200
    crm = [c for c in calls if attr(c, "p2c.system") == "crm"]
    assert [attr(c, "p2c.endpoint") for c in crm] == ["GET /services/data/v62.0/query"] * len(crm)
    assert crm[0].name == "crm GET /services/data/v62.0/query"


async def test_a_caller_s_traceparent_makes_the_operation_part_of_its_trace(
    client: httpx.AsyncClient, app: Starlette, spans: _Capture
) -> None:
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    response = await client.post(
        "/graphql",
        json={"query": ACCOUNTS},
        headers={**admin(app), "traceparent": f"00-{trace_id}-{parent}-01"},
    )
    assert_clean(response)
    [operation] = named(spans, "Accounts")
    assert operation.context.trace_id == int(trace_id, 16)
    assert parent_id(operation) == int(parent, 16)


async def test_a_retried_attempt_is_a_second_span_with_attempt_2_and_no_ids_or_secrets(
    spans: _Capture,
) -> None:
    answers = iter([httpx.Response(503), httpx.Response(200, json={"id": "42"})])
    observed = ObservedTransport(httpx.MockTransport(lambda request: next(answers)), "erp")
    stack = build_transport(RetryPolicy(attempts=3, backoff_initial_s=0, jitter=0), 2, observed)
    tracer = trace.get_tracer("test")
    async with httpx.AsyncClient(transport=stack, base_url="https://acme.suitetalk.example") as http:
        with tracer.start_as_current_span("flow test", attributes={CORRELATION_ID: "corr-retry-1"}):
            response = await http.get("/services/rest/record/v1/customer/4242", params={"token": "s3cret"})
    assert response.status_code == 200

    first, second = sorted(upstream(spans, "erp"), key=lambda s: s.start_time or 0)
    assert [attr(s, "p2c.attempt") for s in (first, second)] == [1, 2]
    assert [attr(s, "http.response.status_code") for s in (first, second)] == [503, 200]
    assert first.status.status_code is StatusCode.ERROR and second.status.status_code is StatusCode.UNSET
    assert attr(second, "http.request.resend_count") == 1
    for span in (first, second):
        assert span.name == "erp GET /services/rest/record/v1/customer/{id}"
        assert attr(span, CORRELATION_ID) == "corr-retry-1"  # from the parent span: no request here
        text = repr(dict(span.attributes or {})) + span.name
        assert "4242" not in text and "s3cret" not in text and "token" not in text


async def test_a_provisioning_run_is_a_flow_span_with_step_spans_carrying_the_correlation_id(
    client: httpx.AsyncClient, app: Starlette, spans: _Capture
) -> None:
    crm = app.state.runtime.client("crm")
    await crm.update("Opportunity", DEAL, {"StageName": "Closed Won"})
    # The contract step's write always fails: two attempts (one retry), then an exception.
    await client.put(
        "/sandbox/erp/__sandbox/faults", json={"fail_records": {"/record/v1/salesOrder/eid:": 503}}
    )
    headers = {**admin(app), HEADER: "corr-prov-1"}
    failed = await client.post(
        "/graphql", json={"query": PROVISION, "variables": {"opp": DEAL, "key": "k-1"}}, headers=headers
    )
    assert_clean(failed)
    result = failed.json()["data"]["provisionEngagement"]
    assert (result["status"], result["reasonCode"]) == ("EXCEPTION", "UPSTREAM_UNAVAILABLE")

    [operation] = named(spans, "Provision")
    [run] = named(spans, "flow provision_engagement")
    assert parent_id(run) == operation.context.span_id
    assert attr(run, CORRELATION_ID) == "corr-prov-1"
    assert (attr(run, "p2c.outcome"), attr(run, "p2c.reason")) == ("failed", "UPSTREAM_UNAVAILABLE")
    assert run.status.status_code is StatusCode.ERROR
    steps = {s.name: s for s in spans.get_finished_spans() if s.name.startswith("step ")}
    assert {"step customer", "step job", "step contract"} <= set(steps)
    for step in steps.values():
        assert parent_id(step) == run.context.span_id
        assert attr(step, CORRELATION_ID) == "corr-prov-1"
    contract = steps["step contract"]
    assert (attr(contract, "p2c.outcome"), attr(contract, "p2c.reason")) == ("failed", "UPSTREAM_UNAVAILABLE")
    writes = [s for s in upstream(spans, "erp") if attr(s, "p2c.endpoint") == SALES_ORDER_PUT]
    assert [(attr(s, "p2c.attempt"), attr(s, "http.response.status_code")) for s in writes] == [
        (1, 503),
        (2, 503),
    ]
    assert {parent_id(s) for s in writes} == {contract.context.span_id}
    in_trace = [s for s in upstream(spans) if s.context.trace_id == operation.context.trace_id]
    assert len(in_trace) > len(writes)  # the reads of the deal, the earlier steps' writes
    assert {attr(s, CORRELATION_ID) for s in in_trace} == {"corr-prov-1"}

    # The fault clears; the same call resumes the run: the steps done before are not executed again.
    spans.clear()
    await client.delete("/sandbox/erp/__sandbox/faults")
    headers[HEADER] = "corr-prov-2"
    done = await client.post(
        "/graphql", json={"query": PROVISION, "variables": {"opp": DEAL, "key": "k-2"}}, headers=headers
    )
    assert done.json()["data"]["provisionEngagement"]["status"] == "PROVISIONED"
    steps = {s.name: s for s in spans.get_finished_spans() if s.name.startswith("step ")}
    assert attr(steps["step customer"], "p2c.outcome") == "done_before"
    assert attr(steps["step contract"], "p2c.outcome") == "succeeded"
    [run] = named(spans, "flow provision_engagement")
    assert (attr(run, "p2c.outcome"), attr(run, CORRELATION_ID)) == ("succeeded", "corr-prov-2")


async def test_the_correlation_id_is_stored_on_the_run_the_exception_and_the_audit_entries(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    crm = app.state.runtime.client("crm")
    await crm.update("Opportunity", DEAL, {"StageName": "Closed Won"})
    await client.put(
        "/sandbox/erp/__sandbox/faults", json={"fail_records": {"/record/v1/salesOrder/eid:": 503}}
    )
    response = await client.post(
        "/graphql",
        json={"query": PROVISION, "variables": {"opp": DEAL, "key": "k-1"}},
        headers={**admin(app), HEADER: "corr-stored-1"},
    )
    exception_id = response.json()["data"]["provisionEngagement"]["exceptionId"]
    async with app.state.runtime.sessionmaker() as session:
        run = (
            await session.execute(sa.select(IntegrationRun).where(IntegrationRun.subject == DEAL))
        ).scalar_one()
        exception = await session.get(IntegrationException, exception_id)
        audits = (
            (
                await session.execute(
                    sa.select(AuditEntry).where(AuditEntry.operation == "provisionEngagement")
                )
            )
            .scalars()
            .all()
        )
    assert run.correlation_id == "corr-stored-1"
    assert exception is not None and exception.correlation_id == "corr-stored-1"
    assert audits and {a.correlation_id for a in audits} == {"corr-stored-1"}

    # The fault clears and a replay resumes the run under its own id: the steps the first attempt did
    # keep the first id, the steps the replay did carry the replay's, and either id finds the run.
    await client.delete("/sandbox/erp/__sandbox/faults")
    replayed = await client.post(
        "/graphql",
        json={"query": REPLAY, "variables": {"id": exception_id, "key": "k-replay"}},
        headers={**admin(app), HEADER: "corr-replay-1"},
    )
    assert_clean(replayed)
    async with app.state.runtime.sessionmaker() as session:
        steps = (
            (await session.execute(sa.select(IntegrationStep).where(IntegrationStep.run_id == run.id)))
            .scalars()
            .all()
        )
    by_id: dict[str | None, set[str]] = {}
    for step in steps:
        assert step.status == "SUCCEEDED"
        by_id.setdefault(step.correlation_id, set()).add(step.name)
    assert set(by_id) == {"corr-stored-1", "corr-replay-1"}
    for correlation_id in ("corr-stored-1", "corr-replay-1"):
        found = await client.post(
            "/graphql",
            json={"query": RUNS_BY_ID, "variables": {"cid": correlation_id}},
            headers=admin(app),
        )
        assert_clean(found)
        edges = found.json()["data"]["integrationRuns"]["edges"]
        assert [edge["node"]["id"] for edge in edges] == [run.id]
        step_ids = {step["correlationId"] for step in edges[0]["node"]["steps"]}
        assert step_ids == {"corr-stored-1", "corr-replay-1"}


def test_the_exporter_is_the_one_the_settings_name() -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    assert load_settings().tracing_exporter == "none"
    assert exporter_for(load_settings()) is None
    assert isinstance(exporter_for(load_settings(tracing_exporter="console")), ConsoleSpanExporter)
    otlp = exporter_for(load_settings(tracing_exporter="otlp", tracing_endpoint="http://otel:4318/v1/traces"))
    assert isinstance(otlp, OTLPSpanExporter)
    assert otlp._endpoint == "http://otel:4318/v1/traces"


def test_a_bad_exporter_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P2C_TRACING_EXPORTER", "jaeger")
    with pytest.raises(ConfigurationError, match="P2C_TRACING_EXPORTER"):
        load_settings()
    monkeypatch.setenv("P2C_TRACING_EXPORTER", "none")
    monkeypatch.setenv("P2C_TRACING_SAMPLE_RATIO", "1.5")
    with pytest.raises(ConfigurationError, match="P2C_TRACING_SAMPLE_RATIO"):
        load_settings()


async def test_with_no_tracer_and_no_observer_an_attempt_is_passed_straight_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(transport, "_tracer", None)
    monkeypatch.setattr(transport, "_observers", ())
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    observed = ObservedTransport(httpx.MockTransport(answer), "psa")
    async with httpx.AsyncClient(transport=observed, base_url="https://psa.example") as http:
        await http.get("/v2/projects/7")
    assert "p2c_observed" not in seen[0].extensions  # the fast path: nothing looked at, nothing timed
