"""The graph fields the ops console adds — ``viewer``, ``integrationRuns``, ``flowHealth``, ``mapping``, the
exception filter by subject and correlation id, and edit-and-replay (``replayException(payload:)``) —
through ``schema.execute`` on SQLite and PostgreSQL, with the fixtures of ``test_operations``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from canonical.enums import HealthStatus
from canonical.principal import Principal, Role
from resolvers.flow_health import RESOLUTION_TARGET, Buckets, judge, percentile, sla_figure
from store.repositories import ExceptionRepo
from tests.mutations.conftest import Flow
from tests.mutations.test_provision_scenarios import NEW_CUSTOMER_FIXED_FEE, NO_STREET
from tests.resolvers import test_operations as operations
from tests.resolvers.test_operations import (
    ADMIN,
    AUDIT,
    AUDITOR,
    DELIVERY,
    EXCEPTIONS,
    FINANCE,
    PROVISION,
    SALES,
    US_ONLY,
    Graph,
    fail_on_the_job,
)

# test_operations' fixtures: its schema, its per-test store on both backends, the flow firm, the graph
schema = operations.schema
database_url = operations.database_url
flow = operations.flow
graph = operations.graph

EU_ONLY = Principal("eu", roles=frozenset({Role.FINANCE}), legal_entities=frozenset({"EU01"}))
VIEWER = "{ viewer { subject roles legalEntities permissions } }"
RUNS = """query($filter: IntegrationRunFilter, $first: Int! = 20) {
  integrationRuns(filter: $filter, first: $first) {
    totalCount pageInfo { hasNextPage }
    edges { node { id flow subject status correlationId legalEntity steps { name status error } } }
  }
}"""
HEALTH = """query($hours: Int! = 24, $buckets: Int! = 12) { flowHealth(hours: $hours, buckets: $buckets) {
  windowHours bucketMinutes
  flows { flow queueKind status reasons runs succeeded failed successRate queueDepth openExceptions
          oldestOpenExceptionSeconds throughputUnit throughput failures }
  sla { name targetSeconds samples p50Seconds p95Seconds withinTarget met }
} }"""
MAPPING = """{ mapping { version fingerprint tables { name columns rows } gaps { table key exceptions
  exceptionIds } } }"""
REPLAY_WITH = """
mutation($id: ID!, $key: String, $payload: JSON) {
  replayException(id: $id, idempotencyKey: $key, payload: $payload) { exception { id status } result }
}"""


# --- viewer -----------------------------------------------------------------------------------------------


async def test_viewer_names_roles_entities_and_permissions(graph: Graph) -> None:
    admin = (await graph.data(VIEWER, ADMIN))["viewer"]
    assert admin["subject"] == "ops" and admin["roles"] == ["integration_admin"]
    assert admin["legalEntities"] == ["*"]
    assert {"replay_exception", "dismiss_exception", "read_audit"} <= set(admin["permissions"])

    sales = (await graph.data(VIEWER, SALES))["viewer"]
    assert "replay_exception" not in sales["permissions"] and "read_audit" not in sales["permissions"]
    assert (await graph.data(VIEWER, US_ONLY))["viewer"]["legalEntities"] == ["US01"]


# --- runs by correlation id --------------------------------------------------------------------------------


async def test_integration_runs_find_a_run_and_its_steps_by_correlation_id(graph: Graph, flow: Flow) -> None:
    failed = await fail_on_the_job(graph, flow)

    found = (await graph.data(RUNS, FINANCE, filter={"correlationId": "c-fail"}))["integrationRuns"]

    [run] = [e["node"] for e in found["edges"]]
    assert found["totalCount"] == 1
    assert run["id"] == failed["runId"] and run["status"] == "FAILED" and run["legalEntity"] == "US01"
    steps = {s["name"]: s for s in run["steps"]}
    assert steps["customer"]["status"] == "SUCCEEDED"
    assert steps["job"]["status"] == "FAILED" and steps["job"]["error"]["code"] == "UPSTREAM_REJECTED"

    # other filters, and legal-entity visibility: the run is US01's
    by_flow = await graph.data(RUNS, FINANCE, filter={"flow": "provision_engagement", "status": "FAILED"})
    assert [e["node"]["id"] for e in by_flow["integrationRuns"]["edges"]] == [failed["runId"]]
    assert (await graph.data(RUNS, FINANCE, filter={"status": "SUCCEEDED"}))["integrationRuns"][
        "totalCount"
    ] == 0
    assert (await graph.data(RUNS, US_ONLY, filter={"correlationId": "c-fail"}))["integrationRuns"][
        "totalCount"
    ] == 1
    hidden = await graph.data(RUNS, EU_ONLY, filter={"correlationId": "c-fail"})
    assert hidden["integrationRuns"] == {"totalCount": 0, "pageInfo": {"hasNextPage": False}, "edges": []}
    assert (await graph.data(RUNS, EU_ONLY, filter={"legalEntity": "US01"}))["integrationRuns"][
        "edges"
    ] == []


async def test_exceptions_filter_by_subject_and_correlation_id(graph: Graph, flow: Flow) -> None:
    failed = await fail_on_the_job(graph, flow)

    by_corr = await graph.data(EXCEPTIONS, FINANCE, filter={"correlationId": "c-fail"})
    by_subject = await graph.data(EXCEPTIONS, FINANCE, filter={"subject": NEW_CUSTOMER_FIXED_FEE})
    other = await graph.data(EXCEPTIONS, FINANCE, filter={"correlationId": "c-other"})

    assert [e["node"]["id"] for e in by_corr["integrationExceptions"]["edges"]] == [failed["exceptionId"]]
    assert [e["node"]["id"] for e in by_subject["integrationExceptions"]["edges"]] == [failed["exceptionId"]]
    assert other["integrationExceptions"]["totalCount"] == 0


# --- flow health and SLA ------------------------------------------------------------------------------------


async def test_flow_health_shows_a_failure_then_its_resolution(graph: Graph, flow: Flow) -> None:
    failed = await fail_on_the_job(graph, flow)

    before = (await graph.data(HEALTH, FINANCE))["flowHealth"]

    assert before["windowHours"] == 24 and before["bucketMinutes"] == 120
    flows = {f["flow"]: f for f in before["flows"]}
    assert len(flows) == len(before["flows"])  # one card per flow
    provisioning = flows["provision_engagement"]
    assert provisioning["queueKind"] == "provision" and provisioning["queueDepth"] == 0
    assert (provisioning["runs"], provisioning["succeeded"], provisioning["failed"]) == (1, 0, 1)
    assert provisioning["successRate"] == 0.0 and provisioning["openExceptions"] == 1
    assert provisioning["status"] == "RED"  # a 0% success rate
    assert any("success rate" in r for r in provisioning["reasons"])
    assert provisioning["failures"] == [0] * 11 + [1] and len(provisioning["throughput"]) == 12
    assert flows["post_time"]["status"] == "GREEN" and flows["post_time"]["reasons"] == []
    assert flows["post_time"]["throughputUnit"] == "work items"
    sla = {s["name"]: s for s in before["sla"]}
    assert sla["provisioning_cycle_time"]["samples"] == 0 and sla["provisioning_cycle_time"]["met"] is None
    assert sla["exception_time_to_resolution"]["targetSeconds"] == RESOLUTION_TARGET.total_seconds()

    await flow.faults("erp")
    await graph.data(REPLAY_WITH, ADMIN, id=failed["exceptionId"], key="r-1")
    after = (await graph.data(HEALTH, FINANCE))["flowHealth"]

    provisioning = {f["flow"]: f for f in after["flows"]}["provision_engagement"]
    assert (provisioning["succeeded"], provisioning["failed"], provisioning["openExceptions"]) == (1, 0, 0)
    assert provisioning["status"] == "GREEN" and provisioning["throughputUnit"] == "runs"
    assert provisioning["throughput"] == [0] * 11 + [1]
    sla = {s["name"]: s for s in after["sla"]}
    assert sla["provisioning_cycle_time"]["samples"] == 1 and sla["provisioning_cycle_time"]["met"] is True
    assert sla["exception_time_to_resolution"]["samples"] == 1
    assert sla["exception_time_to_resolution"]["withinTarget"] == 1.0
    # a US01 exception and run: invisible to an EU01-only reader
    eu = {f["flow"]: f for f in (await graph.data(HEALTH, EU_ONLY))["flowHealth"]["flows"]}
    assert eu["provision_engagement"]["runs"] == 0


async def test_flow_health_is_for_readers_of_operations_and_checks_its_arguments(graph: Graph) -> None:
    for principal in (SALES, DELIVERY):
        assert (await graph.error(HEALTH, principal))["code"] == "FORBIDDEN"
    assert (await graph.data(HEALTH, AUDITOR))["flowHealth"]["flows"]
    bad = await graph.error(HEALTH, ADMIN, hours=0, buckets=500)
    assert bad["code"] == "VALIDATION_FAILED"
    assert {p["field"] for p in bad["problems"]} == {"hours", "buckets"}


def test_health_rules_and_percentiles() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile([float(i) for i in range(1, 101)], 95) == 95.0
    assert judge(None, None, None) == (HealthStatus.GREEN, [])
    assert judge(0.9, None, None)[0] is HealthStatus.AMBER
    assert judge(1.0, timedelta(minutes=1), None) == (HealthStatus.AMBER, ["open exceptions"])
    status, reasons = judge(1.0, RESOLUTION_TARGET + timedelta(seconds=1), timedelta(minutes=20))
    assert status is HealthStatus.RED and len(reasons) == 2
    figure = sla_figure("x", "x", timedelta(seconds=10), [1.0, 5.0, 20.0])
    assert (figure.samples, figure.p50_seconds, figure.p95_seconds, figure.met) == (3, 5.0, 20.0, False)
    assert figure.within_target == round(2 / 3, 4)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    grid = Buckets(start, timedelta(hours=1), 3)
    moments = [start, start + timedelta(minutes=30), start + timedelta(hours=2, minutes=59), None]
    assert grid.series(moments) == [1, 0, 1]


# --- mapping viewer -----------------------------------------------------------------------------------------


async def test_mapping_shows_every_table_and_the_gaps_exceptions_name(graph: Graph, flow: Flow) -> None:
    async with flow.deps.sessionmaker.begin() as session:
        gap = await ExceptionRepo(session).open(
            flow="post_time",
            reason_code="MAPPING_MISSING",
            subject="psa:time:1",
            legal_entity="US01",
            upstream_error={"code": "MAPPING_MISSING", "table": "tasks", "key": "Data Migration"},
        )

    view = (await graph.data(MAPPING, AUDITOR))["mapping"]

    mapping = flow.deps.mapping
    assert view["version"] == mapping.version and view["fingerprint"] == mapping.fingerprint()
    tables = {t["name"]: t for t in view["tables"]}
    assert {"billing_methods", "service_items", "tasks", "legal_entities"} <= set(tables)
    billing = tables["billing_methods"]
    assert billing["columns"][0] == "key" and "erp_billing_type" in billing["columns"]
    keys = [row[0] for row in billing["rows"]]
    assert keys == sorted(str(k) for k in mapping.billing_methods)
    assert all(len(row) == len(billing["columns"]) for row in billing["rows"])
    assert view["gaps"] == [
        {"table": "tasks", "key": "Data Migration", "exceptions": 1, "exceptionIds": [gap.id]}
    ]
    assert (await graph.data(MAPPING, EU_ONLY))["mapping"]["gaps"] == []
    assert (await graph.error(MAPPING, SALES))["code"] == "FORBIDDEN"


# --- edit and replay ----------------------------------------------------------------------------------------


async def stored_payload(flow: Flow, exception_id: str) -> Any:
    async with flow.deps.sessionmaker() as session:
        return (await ExceptionRepo(session).get(exception_id)).payload


async def test_edit_and_replay_stores_the_edit_replays_and_audits_it(graph: Graph, flow: Flow) -> None:
    failed = await fail_on_the_job(graph, flow)
    payload = await stored_payload(flow, failed["exceptionId"])
    edited = {**payload, "input": {**payload["input"], "billing_contact": "ap@fixed.test"}}
    await flow.faults("erp")

    replayed = await graph.data(
        REPLAY_WITH, ADMIN, id=failed["exceptionId"], key="r-1", payload=edited, correlation_id="c-edit"
    )

    assert replayed["replayException"]["exception"]["status"] == "RESOLVED"
    assert (await stored_payload(flow, failed["exceptionId"]))["input"]["billing_contact"] == "ap@fixed.test"
    audit = (await graph.data(AUDIT, AUDITOR, filter={"operation": "replayException"}))["auditTrail"]
    inputs = [e["node"]["input"] for e in audit["edges"] if e["node"]["correlationId"] == "c-edit"]
    # the mutation's entry carries the edited payload; mutations.replay's own entry the exception id
    assert [i["input"]["payload"] for i in inputs if "input" in i] == [edited]


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda p: [p], "payload"),
        (lambda p: {k: v for k, v in p.items() if k != "input"}, "payload.input"),
        (lambda p: {**p, "opportunity": 42}, "payload.opportunity"),
    ],
    ids=["not-an-object", "field-removed", "kind-changed"],
)
async def test_a_payload_edit_that_changes_its_shape_is_refused(
    graph: Graph, flow: Flow, edit: Any, field: str
) -> None:
    failed = await fail_on_the_job(graph, flow)
    payload = await stored_payload(flow, failed["exceptionId"])

    error = await graph.error(REPLAY_WITH, ADMIN, id=failed["exceptionId"], key="r-1", payload=edit(payload))

    assert error["code"] == "VALIDATION_FAILED"
    assert [p["field"] for p in error["problems"]] == [field]
    assert await stored_payload(flow, failed["exceptionId"]) == payload
    one = "query($id: ID!) { integrationException(id: $id) { status } }"
    still = (await graph.data(one, ADMIN, id=failed["exceptionId"]))["integrationException"]
    assert still["status"] == "OPEN"


async def test_sales_cannot_edit_and_replay(graph: Graph, flow: Flow) -> None:
    await flow.deps.crm.update("Opportunity", NO_STREET, {"StageName": "Closed Won"})
    refused = await graph.error(PROVISION, SALES, opp=NO_STREET, key="k-1")

    error = await graph.error(REPLAY_WITH, SALES, id=refused["exceptionId"], key="r-1", payload={"x": 1})

    assert error["code"] == "FORBIDDEN"
    assert "x" not in (await stored_payload(flow, refused["exceptionId"]) or {})
