"""The ops fields and the governed mutations through ``schema.execute``, on SQLite and PostgreSQL: three
sandboxes in-process (the 30-account flow firm), the test's store, contexts built like the gateway's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import strawberry

from canonical.principal import Principal, Role
from mutations.identity import provisioned_project_canonical_id
from resolvers.context import build_context
from resolvers.errors import GatewayErrors
from resolvers.mutation import extend_schema_kwargs
from resolvers.operations import with_operations
from resolvers.types.contract import Contract
from store.migrate import upgrade_to_head
from store.repositories import ExceptionRepo, RunRepo
from subgraphs.demo import generate_firm
from tests.conftest import BACKENDS
from tests.mutations.conftest import FLOW_ACCOUNTS, FLOW_SEED, Flow, build_apps, close_flow, make_flow
from tests.mutations.test_provision_scenarios import (
    EXISTING_FIXED_FEE,
    NEW_CUSTOMER_FIXED_FEE,
    NO_STREET,
    win,
)

ADMIN = Principal("ops", roles=frozenset({Role.INTEGRATION_ADMIN}), all_entities=True)
FINANCE = Principal("fin", roles=frozenset({Role.FINANCE}), all_entities=True)
SALES = Principal("sam", roles=frozenset({Role.SALES}), all_entities=True)
AUDITOR = Principal("aud", roles=frozenset({Role.AUDITOR}), all_entities=True)
DELIVERY = Principal("del", roles=frozenset({Role.DELIVERY}), all_entities=True)
# Account 14 (US01, ERP customer 1014). Not TM: account 5 shares its tax id with a second ERP customer.
DEAL = EXISTING_FIXED_FEE
US_ONLY = Principal("us", roles=frozenset({Role.FINANCE}), legal_entities=frozenset({"US01"}))

PROVISION = """
mutation($opp: ID!, $input: EngagementInput, $key: String) {
  provisionEngagement(opportunityId: $opp, input: $input, idempotencyKey: $key) {
    status opportunityId engagementId erpCustomerId erpJobId erpContractId erpBillingScheduleId
    psaProjectId projectCode runId exceptionId reasonCode failedStep
  }
}"""
REPLAY = """
mutation($id: ID!, $key: String) {
  replayException(id: $id, idempotencyKey: $key) { exception { id status resolutionNote } result }
}"""
DISMISS = """
mutation($id: ID!, $reason: String!, $key: String) {
  dismissException(id: $id, reason: $reason, idempotencyKey: $key) {
    id status resolutionNote dismissedBy
  }
}"""
EXCEPTIONS = """
query($filter: IntegrationExceptionFilter) {
  integrationExceptions(filter: $filter) {
    totalCount
    edges { node { id flow reasonCode status step subject legalEntity correlationId runId ageSeconds
                   upstreamError } }
  }
}"""
AUDIT = """
query($filter: AuditFilter, $first: Int! = 20, $after: String) {
  auditTrail(filter: $filter, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { node { operation status principal roles correlationId input } }
  }
}"""


@pytest.fixture(scope="module")
def schema() -> strawberry.Schema:
    return strawberry.federation.Schema(
        **extend_schema_kwargs(), types=[Contract], extensions=[GatewayErrors]
    )


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The suite's per-test store on both backends, again: this package's conftest overrides
    ``database_url`` with one shared store backfilled from the 200-account firm, not this firm's."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    upgrade_to_head(url)
    return url


@pytest.fixture
async def flow(sessionmaker: Any) -> AsyncIterator[Flow]:
    built = await make_flow(build_apps(), generate_firm(FLOW_SEED, FLOW_ACCOUNTS), sessionmaker)
    yield built
    await close_flow(built)


class Graph:
    def __init__(self, schema: strawberry.Schema, flow: Flow) -> None:
        self.schema, self.flow = schema, flow

    async def run(
        self,
        query: str,
        principal: Principal = ADMIN,
        *,
        header: str | None = None,
        correlation_id: str = "corr-1",
        **variables: Any,
    ) -> Any:
        deps = self.flow.deps
        context = with_operations(
            build_context(
                principal=principal,
                crm=deps.crm,
                psa=deps.psa,
                erp=deps.erp,
                sessionmaker=deps.sessionmaker,
                correlation_id=correlation_id,
            ),
            mapping=deps.mapping,
            idempotency_key=header,
            clock=deps.clock,
        )
        return await self.schema.execute(query, variable_values=variables or None, context_value=context)

    async def data(self, query: str, principal: Principal = ADMIN, **kwargs: Any) -> Any:
        result = await self.run(query, principal, **kwargs)
        assert result.errors is None, result.errors
        return result.data

    async def error(self, query: str, principal: Principal = ADMIN, **kwargs: Any) -> dict[str, Any]:
        result = await self.run(query, principal, **kwargs)
        assert result.errors, result.data
        extensions: dict[str, Any] = result.errors[0].extensions
        return extensions


@pytest.fixture
def graph(schema: strawberry.Schema, flow: Flow) -> Graph:
    return Graph(schema, flow)


async def open_exceptions(flow: Flow) -> list[Any]:
    async with flow.deps.sessionmaker() as session:
        return list(await ExceptionRepo(session).list())


# --- provisionEngagement ----------------------------------------------------------------------------------


async def test_provision_engagement_end_to_end_returns_erp_ids(graph: Graph, flow: Flow) -> None:
    await win(flow, NEW_CUSTOMER_FIXED_FEE)

    data = await graph.data(PROVISION, SALES, opp=NEW_CUSTOMER_FIXED_FEE, key="k-1")

    result = data["provisionEngagement"]
    assert result["status"] == "PROVISIONED", (result["reasonCode"], result["failedStep"])
    assert result["engagementId"] == provisioned_project_canonical_id(NEW_CUSTOMER_FIXED_FEE)
    for field in ("erpCustomerId", "erpJobId", "erpContractId", "erpBillingScheduleId", "psaProjectId"):
        assert result[field], field
    job = await flow.deps.erp.get_by_external_id("job", result["engagementId"])
    assert job is not None and str(job["id"]) == result["erpJobId"]


async def test_the_same_key_replays_the_result_without_writing(graph: Graph, flow: Flow) -> None:
    await win(flow, DEAL)
    first = await graph.data(PROVISION, SALES, opp=DEAL, key="k-1")
    await flow.reset_counters()

    again = await graph.data(PROVISION, SALES, opp=DEAL, key="k-1")

    assert again == first and first["provisionEngagement"]["status"] == "PROVISIONED"
    assert await flow.writes() == {}


async def test_the_same_key_with_another_input_is_refused(graph: Graph, flow: Flow) -> None:
    await win(flow, DEAL)
    await graph.data(PROVISION, SALES, opp=DEAL, key="k-1")

    error = await graph.error(PROVISION, SALES, opp=DEAL, key="k-1", input={"billingContact": "ap@x.test"})

    assert error["code"] == "IDEMPOTENCY_KEY_REUSED"


async def test_the_key_comes_from_the_argument_or_the_header(graph: Graph, flow: Flow) -> None:
    await win(flow, DEAL)
    assert (await graph.error(PROVISION, SALES, opp=DEAL))["code"] == "IDEMPOTENCY_KEY_REQUIRED"
    assert (await graph.error(PROVISION, SALES, opp=DEAL, key=""))["code"] == "IDEMPOTENCY_KEY_REQUIRED"
    assert await flow.writes() == {}

    by_header = await graph.data(PROVISION, SALES, opp=DEAL, header="h-1")
    await flow.reset_counters()
    by_argument = await graph.data(PROVISION, SALES, opp=DEAL, key="h-1")  # the same key: a replay
    assert by_argument == by_header and await flow.writes() == {}

    # the argument wins: with the header alone this other input would be IDEMPOTENCY_KEY_REUSED
    other = await graph.data(
        PROVISION, SALES, opp=DEAL, key="a-2", header="h-1", input={"billingContact": "ap@x.test"}
    )
    assert other["provisionEngagement"]["status"] == "ALREADY_PROVISIONED"


@pytest.mark.parametrize("key", ["k-1", None], ids=["with-key", "without-key"])
async def test_an_auditor_cannot_provision(graph: Graph, flow: Flow, key: str | None) -> None:
    await win(flow, DEAL)

    error = await graph.error(PROVISION, AUDITOR, opp=DEAL, key=key)

    assert error["code"] == "FORBIDDEN"
    assert await flow.writes() == {}
    audit = await graph.data(AUDIT, FINANCE, filter={"operation": "provisionEngagement"})
    assert [e["node"]["status"] for e in audit["auditTrail"]["edges"]] == ["FORBIDDEN"]


async def test_bad_master_data_is_validation_failed_with_every_problem(graph: Graph, flow: Flow) -> None:
    await win(flow, NO_STREET)

    result = await graph.run(PROVISION, SALES, opp=NO_STREET, key="k-1")

    assert result.errors and result.data is None
    extensions = result.errors[0].extensions
    assert extensions["code"] == "VALIDATION_FAILED" and extensions["exceptionId"]
    assert "account.BillingStreet" in {p["field"] for p in extensions["problems"]}
    assert await flow.writes() == {}


# --- the form ---------------------------------------------------------------------------------------------


async def test_validate_engagement_lists_every_problem_and_writes_nothing(graph: Graph, flow: Flow) -> None:
    await win(flow, NO_STREET, Amount=0)
    query = """query($opp: ID!, $input: EngagementInput) {
      validateEngagement(opportunityId: $opp, input: $input) { valid problems { field message reason } }
    }"""

    data = await graph.data(query, SALES, opp=NO_STREET, input={"template": "no-such-template"})

    report = data["validateEngagement"]
    reasons = {p["field"]: p["reason"] for p in report["problems"]}
    assert report["valid"] is False
    assert {"account.BillingStreet", "opportunity.Amount", "input.template"} <= set(reasons)
    assert reasons["input.template"] == "INVALID" and all(p["message"] for p in report["problems"])
    assert await flow.writes() == {}
    assert await open_exceptions(flow) == []
    async with flow.deps.sessionmaker() as session:
        assert await RunRepo(session).latest("provision_engagement", NO_STREET) is None

    ok = await graph.data(query, SALES, opp=DEAL)
    assert ok["validateEngagement"] == {"valid": True, "problems": []}


async def test_provisioning_options_offer_the_form_s_choices(graph: Graph) -> None:
    query = """query($opp: ID!) { provisioningOptions(opportunityId: $opp) {
      opportunityId businessLine legalEntity defaultTemplate defaultBillingMethod defaultPaymentTerms
      templates { value label } billingMethods { value } subsidiaries { value label }
      paymentTerms { value label } projectManagers { erpEmployeeId name legalEntity psaUserId }
    } }"""

    options = (await graph.data(query, SALES, opp=DEAL))["provisioningOptions"]

    assert options["opportunityId"] == DEAL and options["legalEntity"] == "US01"
    assert options["templates"][0]["value"] == options["defaultTemplate"]
    assert options["defaultBillingMethod"] in {m["value"] for m in options["billingMethods"]}
    assert {"US01", "EU01"} <= {s["value"] for s in options["subsidiaries"]}
    assert options["defaultPaymentTerms"] in {t["value"] for t in options["paymentTerms"]}
    managers = options["projectManagers"]
    assert managers and managers[0]["legalEntity"] == "US01"


async def test_unknown_opportunity_is_not_found(graph: Graph) -> None:
    query = 'query { provisioningOptions(opportunityId: "006000000009999AAA") { legalEntity } }'
    assert (await graph.error(query, SALES))["code"] == "NOT_FOUND"


# --- exceptions, replay, dismissal, runs, audit -----------------------------------------------------------


async def fail_on_the_job(graph: Graph, flow: Flow) -> dict[str, Any]:
    await win(flow, NEW_CUSTOMER_FIXED_FEE)
    await flow.faults("erp", fail_records={provisioned_project_canonical_id(NEW_CUSTOMER_FIXED_FEE): 400})
    data = await graph.data(PROVISION, ADMIN, opp=NEW_CUSTOMER_FIXED_FEE, key="k-1", correlation_id="c-fail")
    result: dict[str, Any] = data["provisionEngagement"]
    assert result["status"] == "EXCEPTION" and result["exceptionId"]
    return result


async def test_an_erp_fault_lands_in_the_queue_and_replay_resolves_it(graph: Graph, flow: Flow) -> None:
    failed = await fail_on_the_job(graph, flow)

    listed = await graph.data(
        EXCEPTIONS, FINANCE, filter={"status": ["OPEN"], "reasonCode": "UPSTREAM_REJECTED"}
    )
    [node] = [e["node"] for e in listed["integrationExceptions"]["edges"]]
    assert node["id"] == failed["exceptionId"] and node["step"] == failed["failedStep"]
    assert node["legalEntity"] == "US01" and node["correlationId"] == "c-fail"
    assert node["flow"] == "provision_engagement" and node["upstreamError"]["system"] == "erp"
    assert node["ageSeconds"] >= 0

    assert (await graph.error(REPLAY, SALES, id=node["id"], key="r-1"))["code"] == "FORBIDDEN"
    await flow.faults("erp")
    # the caller needs REPLAY_EXCEPTION only (finance would do too): the flow runs as system:replay
    replayed = await graph.data(REPLAY, ADMIN, id=node["id"], key="r-1", correlation_id="c-replay")

    outcome = replayed["replayException"]
    assert outcome["exception"]["status"] == "RESOLVED"
    assert outcome["result"]["status"] == "PROVISIONED" and outcome["result"]["erp_job_id"]
    assert (await graph.data(EXCEPTIONS, FINANCE, filter={"status": ["OPEN"]}))["integrationExceptions"][
        "totalCount"
    ] == 0
    again = await graph.data(REPLAY, ADMIN, id=node["id"], key="r-1", correlation_id="c-replay")
    assert again == replayed  # replayed from the key, not refused as "already RESOLVED"

    audit = (await graph.data(AUDIT, AUDITOR, filter={"correlationId": "c-replay"}))["auditTrail"]
    entries = [e["node"] for e in audit["edges"]]
    assert {(e["operation"], e["status"]) for e in entries} >= {
        ("replayException", "RESOLVED"),
        ("replayException", "COMPLETED"),
        ("replayException", "REPLAYED"),
    }
    # The caller is audited for the replay; the flow itself ran as system:replay (see mutations.replay).
    assert {(e["operation"], e["principal"]) for e in entries} == {
        ("replayException", "ops"),
        ("provision_engagement", "system:replay"),
    }
    assert all(e["roles"] == ["integration_admin"] for e in entries)


async def test_integration_run_shows_steps_attempts_and_errors(graph: Graph, flow: Flow) -> None:
    failed = await fail_on_the_job(graph, flow)
    query = """query($id: ID!) { integrationRun(id: $id) {
      id flow subject status attempts correlationId legalEntity
      steps { name key status attempts result error }
    } }"""

    run = (await graph.data(query, FINANCE, id=failed["runId"]))["integrationRun"]

    assert run["status"] == "FAILED" and run["subject"] == NEW_CUSTOMER_FIXED_FEE
    assert run["correlationId"] == "c-fail" and run["attempts"] == 1
    steps = {s["name"]: s for s in run["steps"]}
    assert steps["customer"]["status"] == "SUCCEEDED" and steps["customer"]["result"]["erp_id"]
    assert steps["job"]["status"] == "FAILED" and steps["job"]["attempts"] == 1
    assert steps["job"]["error"]["code"] == "UPSTREAM_REJECTED"
    assert (await graph.data(query, FINANCE, id="no-such-run"))["integrationRun"] is None


async def test_dismissal_with_a_reason_and_legal_entity_visibility(graph: Graph, flow: Flow) -> None:
    await win(flow, NO_STREET)
    refused = await graph.error(PROVISION, SALES, opp=NO_STREET, key="k-1")
    eu_exception = refused["exceptionId"]
    one = "query($id: ID!) { integrationException(id: $id) { id legalEntity } }"

    # a US01-only principal neither sees the EU01 exception nor may act on it
    us_list = await graph.data(EXCEPTIONS, US_ONLY)
    assert us_list["integrationExceptions"]["totalCount"] == 0
    eu_only = await graph.data(EXCEPTIONS, US_ONLY, filter={"legalEntity": "EU01"})
    assert eu_only["integrationExceptions"]["edges"] == []
    assert (await graph.data(one, US_ONLY, id=eu_exception))["integrationException"] is None
    error = await graph.error(DISMISS, US_ONLY, id=eu_exception, reason="nope", key="d-0")
    assert error["code"] == "NOT_FOUND"
    all_list = await graph.data(EXCEPTIONS, FINANCE)
    assert [e["node"]["legalEntity"] for e in all_list["integrationExceptions"]["edges"]] == ["EU01"]

    assert (await graph.error(DISMISS, SALES, id=eu_exception, reason="x", key="d-1"))["code"] == "FORBIDDEN"
    blank = await graph.error(DISMISS, ADMIN, id=eu_exception, reason="  ", key="d-1")
    assert blank["code"] == "VALIDATION_FAILED"

    dismissed = await graph.data(
        DISMISS,
        ADMIN,
        id=eu_exception,
        reason="address fixed in the CRM by hand",
        key="d-1",
        correlation_id="c-dismiss",
    )

    assert dismissed["dismissException"] == {
        "id": eu_exception,
        "status": "DISMISSED",
        "resolutionNote": "address fixed in the CRM by hand",
        "dismissedBy": "ops",
    }
    audit = await graph.data(AUDIT, FINANCE, filter={"operation": "dismissException"})
    entries = [e["node"] for e in audit["auditTrail"]["edges"]]
    assert [e["status"] for e in entries if e["correlationId"] == "c-dismiss"] == ["COMPLETED", "DISMISSED"]
    assert {e["principal"] for e in entries} == {"us", "sam", "ops"}


async def test_audit_trail_is_for_finance_admins_and_auditors_and_pages(graph: Graph, flow: Flow) -> None:
    await win(flow, DEAL)
    await graph.data(PROVISION, SALES, opp=DEAL, key="k-1", correlation_id="c-prov")
    for principal in (SALES, DELIVERY):
        assert (await graph.error(AUDIT, principal))["code"] == "FORBIDDEN"

    trail = (await graph.data(AUDIT, AUDITOR, filter={"correlationId": "c-prov"}))["auditTrail"]
    operations = [(e["node"]["operation"], e["node"]["status"]) for e in trail["edges"]]
    assert operations == [("provisionEngagement", "COMPLETED"), ("provision_engagement", "PROVISIONED")]
    mutation = trail["edges"][0]["node"]
    assert mutation["principal"] == "sam" and mutation["input"]["idempotencyKey"] == "k-1"

    first = (await graph.data(AUDIT, FINANCE, first=1, filter={"principal": "sam"}))["auditTrail"]
    assert first["pageInfo"]["hasNextPage"] is True and len(first["edges"]) == 1
    second = (
        await graph.data(
            AUDIT, FINANCE, first=1, after=first["pageInfo"]["endCursor"], filter={"principal": "sam"}
        )
    )["auditTrail"]
    assert second["pageInfo"]["hasNextPage"] is False
    assert [e["node"]["operation"] for e in first["edges"] + second["edges"]] == [
        "provisionEngagement",
        "provision_engagement",
    ]
    future = await graph.data(AUDIT, FINANCE, filter={"since": "2100-01-01T00:00:00"})
    assert future["auditTrail"]["edges"] == []
