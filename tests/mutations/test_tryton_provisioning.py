"""Provisioning on Tryton end to end: the CRM and PSA sandboxes, a real trytond for the EU01 entity.

Same assertions as the NetSuite scenarios where they apply: one customer and one project with its tasks,
the invoice method from the billing method, the PSA project, the ERP ids back on the CRM, and a second
run writes nothing. NetSuite (US01) is untouched.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from mutations.identity import account_canonical_id, provisioned_project_canonical_id
from mutations.provision import ProvisionResult, provision_engagement
from store.repositories import CrossReferenceRepo, ExceptionRepo
from subgraphs.erp_tryton.mapping import parse_reference, reference_domain
from tests.mutations.conftest import ADMIN, Flow
from tests.mutations.tryton_flow import tryton_of

TM = "006000000000032AAA"  # account 10, EU01, Consulting, T&M
FIXED_FEE = "006000000000059AAA"  # account 19, EU01, Managed Services
MILESTONE = "006000000000033AAA"  # account 10 again: the party is reused


async def _win_and_provision(flow: Flow, opportunity: str) -> ProvisionResult:
    await flow.deps.crm.update("Opportunity", opportunity, {"StageName": "Closed Won"})
    await flow.reset_counters()
    result = await provision_engagement(flow.deps, opportunity, principal=ADMIN, correlation_id="c-tryton")
    if result.exception_id is not None:  # say why in the failure
        async with flow.deps.sessionmaker() as session:
            exception = await ExceptionRepo(session).get(result.exception_id)
        pytest.fail(f"{result.reason_code} at {result.failed_step}: {exception.upstream_error}")
    return result


async def test_time_and_materials_deal_becomes_a_party_and_a_timesheet_project(on_tryton: Flow) -> None:
    flow, client = on_tryton, tryton_of(on_tryton)
    result = await _win_and_provision(flow, TM)

    assert result.status == "PROVISIONED", result
    account_id = account_canonical_id(flow.firm.accounts[10].crm_id)
    (party,) = await client.search_read("party.party", [["code", "=", account_id]], ["name", "addresses"])
    assert str(party["id"]) == result.erp_customer_id
    assert party["name"] == flow.firm.accounts[10].name and party["addresses"]
    project_id = provisioned_project_canonical_id(TM)
    (project,) = await client.search_read(
        "project.work",
        [reference_domain(project_id)],
        [
            "party",
            "project_invoice_method",
            "children.name",
            "children.timesheet_works",
            "list_price",
            "comment",
        ],
    )
    assert str(project["id"]) == result.erp_job_id
    # Tryton has no business-line field: the canonical one rides on the comment, under the reference
    opportunity = await flow.deps.crm.get("Opportunity", TM)
    line = opportunity["Business_Line__c"]
    assert line and parse_reference(project["comment"]) == (project_id, {"business_line": line})
    assert project["party"] == party["id"] and project["project_invoice_method"] == "timesheet"
    tasks = {c["name"]: c for c in project["children."]}
    assert tasks and all(c["timesheet_works"] for c in tasks.values())
    psa = await flow.deps.psa.project(int(str(result.psa_project_id)))
    assert psa["code"] == result.project_code
    assert len(await flow.deps.psa.task_assignments(int(psa["id"]))) == len(tasks)
    opportunity = await flow.deps.crm.get("Opportunity", TM)
    assert opportunity["ERP_Project_Id__c"] == f"tryton:{project['id']}"
    assert opportunity["Provisioning_Status__c"] == "Provisioned"
    async with flow.deps.sessionmaker() as session:
        links = await CrossReferenceRepo(session).links_of(project_id)
    assert links["tryton"] == str(project["id"]) and "erp" not in links
    assert "erp" not in await flow.writes()  # NetSuite untouched

    calls = client.calls
    again = await provision_engagement(flow.deps, TM, principal=ADMIN, correlation_id="c-again")
    assert again.status == "ALREADY_PROVISIONED"
    assert client.calls == calls  # nothing read or written in Tryton the second time
    assert len(await client.search_read("party.party", [["code", "=", account_id]], ["id"])) == 1


async def test_fixed_fee_invoices_effort_and_milestones_progress_on_the_same_party(on_tryton: Flow) -> None:
    flow, client = on_tryton, tryton_of(on_tryton)
    fixed = await _win_and_provision(flow, FIXED_FEE)
    milestone = await _win_and_provision(flow, MILESTONE)

    assert fixed.status == milestone.status == "PROVISIONED"
    rows = await client.read(
        "project.work",
        [int(fixed.erp_job_id), int(milestone.erp_job_id)],
        ["project_invoice_method", "effort_duration", "list_price", "children.effort_duration"],
    )
    methods = {r["project_invoice_method"] for r in rows}
    assert methods == {"effort", "progress"}
    effort = next(r for r in rows if r["project_invoice_method"] == "effort")
    hours = Decimal(effort["effort_duration"].total_seconds()) / 3600
    assert (hours * effort["list_price"]).quantize(Decimal("1")) == Decimal(fixed.value).quantize(
        Decimal("1")
    )
    progress = next(r for r in rows if r["project_invoice_method"] == "progress")
    assert any(c["effort_duration"] for c in progress["children."])  # milestones carry their share
    account_10 = account_canonical_id(flow.firm.accounts[10].crm_id)
    assert len(await client.search_read("party.party", [["code", "=", account_10]], ["id"])) == 1
