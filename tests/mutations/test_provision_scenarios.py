"""Provisioning scenarios 1–5 and 7 end to end through the sandboxes, on SQLite and PostgreSQL.

Deals come from the 30-account demo firm (seed 7): opportunities with k > 0 have no project yet; the test
sets ``StageName`` to Closed Won through the CRM client where the firm did not.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from canonical.errors import ValidationFailed
from mutations.identity import account_canonical_id, provisioned_project_canonical_id
from mutations.provision import (
    EngagementInput,
    ProvisionResult,
    provision_engagement,
    provisioning_options,
    validate_engagement,
)
from store.repositories import ExceptionRepo, RunRepo
from tests.mutations.conftest import ADMIN, Flow

NEW_CUSTOMER_FIXED_FEE = "006000000000057AAA"  # account 18: not in the ERP, Implementation
EXISTING_FIXED_FEE = "006000000000044AAA"  # account 14: ERP customer 1014, known to the CRM
TAX_ID_MATCH_TM = "006000000000075AAA"  # account 24: ERP customer 1024, the CRM does not know it
TM = "006000000000030AAA"  # account 9, Implementation, US01
MILESTONE = "006000000000033AAA"  # account 10, EU01, EUR
RETAINER = "006000000000051AAA"  # account 16
SUBSCRIPTION = "006000000000069AAA"  # account 22
US_FIXED_FEE = "006000000000072AAA"  # account 23, US01, Consulting
NO_STREET = "006000000000042AAA"  # account 13, EU01, no billing street


async def win(flow: Flow, opportunity: str, **fields: Any) -> None:
    await flow.deps.crm.update("Opportunity", opportunity, {"StageName": "Closed Won", **fields})
    await flow.reset_counters()


async def provision(flow: Flow, opportunity: str, input: EngagementInput | None = None) -> ProvisionResult:
    return await provision_engagement(flow.deps, opportunity, input, principal=ADMIN, correlation_id="c-1")


async def job_of(flow: Flow, opportunity: str) -> dict[str, Any]:
    job = await flow.deps.erp.get_by_external_id("job", provisioned_project_canonical_id(opportunity))
    assert job is not None
    return job


async def schedule_of(flow: Flow, result: ProvisionResult) -> dict[str, Any]:
    assert result.erp_billing_schedule_id is not None
    return await flow.deps.erp.get("billingSchedule", result.erp_billing_schedule_id)


async def milestones_of(flow: Flow, result: ProvisionResult) -> list[dict[str, Any]]:
    return await flow.deps.erp.suiteql(
        f"SELECT id, title FROM projecttask WHERE company = {result.erp_job_id} "
        "AND ismilestone = 'T' ORDER BY id"
    )


async def test_fixed_fee_deal_creates_customer_contract_fixed_bid_schedule_and_project(flow: Flow) -> None:
    await win(flow, NEW_CUSTOMER_FIXED_FEE)
    customers = await flow.erp_count("customer")

    result = await provision(flow, NEW_CUSTOMER_FIXED_FEE)

    assert result.status == "PROVISIONED", result
    assert result.customer_reused is False and result.customer_matched_by == "created"
    assert await flow.erp_count("customer") == customers + 1
    account_id = account_canonical_id(flow.firm.accounts[18].crm_id)
    customer = await flow.deps.erp.get_by_external_id("customer", account_id)
    assert customer is not None and str(customer["id"]) == result.erp_customer_id
    job = await job_of(flow, NEW_CUSTOMER_FIXED_FEE)
    assert job["jobBillingType"] == "fixedBidMilestone" and str(job["parent"]["id"]) == result.erp_customer_id
    contract = await flow.deps.erp.get_by_external_id("salesOrder", str(result.contract_id))
    assert contract is not None and Decimal(str(contract["total"])) == Decimal(str(result.value))
    schedule = await schedule_of(flow, result)
    assert schedule["scheduleType"] == "fixedFee"
    events = schedule["milestones"]
    assert [e["name"] for e in events] == [
        "Design sign-off",
        "Build complete",
        "Go-live",
        "Training delivered",
    ]
    assert sum(Decimal(str(e["amount"])) for e in events) == Decimal(str(result.value))
    assert len(await milestones_of(flow, result)) == 4
    psa = await flow.deps.psa.project(int(str(result.psa_project_id)))
    assert psa["code"] == result.project_code and psa["is_fixed_fee"]
    assignments = await flow.deps.psa.task_assignments(int(str(result.psa_project_id)))
    assert len(assignments) == 7
    opportunity = await flow.deps.crm.get("Opportunity", NEW_CUSTOMER_FIXED_FEE)
    assert opportunity["ERP_Project_Id__c"] == result.erp_job_id
    assert opportunity["Provisioning_Status__c"] == "Provisioned"


async def test_time_and_materials_deal_gets_a_rate_card_and_no_milestones(flow: Flow) -> None:
    await win(flow, TM)
    result = await provision(flow, TM)

    assert result.status == "PROVISIONED", result
    assert (await job_of(flow, TM))["jobBillingType"] == "timeAndMaterials"
    schedule = await schedule_of(flow, result)
    assert schedule["milestones"] == [] and schedule.get("recurrence") is None
    card = {line["labourCategory"]: Decimal(str(line["rate"])) for line in schedule["rateCard"]}
    assert card == {
        "Senior Consultant": Decimal(220),
        "Architect": Decimal(220),
        "Consultant": Decimal(160),
        "Project Manager": Decimal(180),
    }
    assert await milestones_of(flow, result) == []


@pytest.mark.parametrize(
    ("opportunity", "schedule_type", "recurring", "in_arrears"),
    [
        (MILESTONE, "milestone", False, False),
        (RETAINER, "retainer", True, True),
        (SUBSCRIPTION, "subscription", True, False),
    ],
)
async def test_milestone_retainer_and_subscription_schedules(
    flow: Flow, opportunity: str, schedule_type: str, recurring: bool, in_arrears: bool
) -> None:
    await win(flow, opportunity)
    result = await provision(flow, opportunity)

    assert result.status == "PROVISIONED", result
    schedule = await schedule_of(flow, result)
    assert schedule["scheduleType"] == schedule_type
    deal = next(o for o in flow.firm.opportunities if o.crm_id == opportunity)
    if recurring:
        recurrence = schedule["recurrence"]
        assert Decimal(str(recurrence["amount"])) == deal.lines[0].unit_price
        assert recurrence["inArrears"] is in_arrears
        assert schedule["milestones"] == []
    else:  # a milestone per line, on the line's date, for the line's amount
        events = schedule["milestones"]
        assert [Decimal(str(e["amount"])) for e in events] == [line.total for line in deal.lines]
        assert [e["dueDate"] for e in events] == [line.service_date.isoformat() for line in deal.lines]
        assert len(await milestones_of(flow, result)) == len(deal.lines)


async def test_eur_deal_for_a_usd_subsidiary_keeps_deal_currency_and_records_the_close_date_rate(
    flow: Flow,
) -> None:
    await flow.deps.crm.update("Opportunity", US_FIXED_FEE, {"CurrencyIsoCode": "EUR"})
    for line in await flow.deps.crm.lines_for_opportunities(
        [US_FIXED_FEE]
    ):  # lines follow on their next write
        await flow.deps.crm.update(
            "OpportunityLineItem", str(line["Id"]), {"Description": line["Description"]}
        )
    await win(flow, US_FIXED_FEE)

    result = await provision(flow, US_FIXED_FEE)

    assert result.status == "PROVISIONED", result
    deal = next(o for o in flow.firm.opportunities if o.crm_id == US_FIXED_FEE)
    reference = await flow.deps.erp.reference_data()
    rate = reference.rate("EUR", "USD", deal.close_date)
    assert rate is not None and result.exchange_rate == str(rate) and result.currency == "EUR"
    contract = await flow.deps.erp.get_by_external_id("salesOrder", str(result.contract_id))
    assert contract is not None
    assert str(contract["currency"]["id"]) == reference.currency_id("EUR")
    assert Decimal(str(contract["total"])) == deal.amount
    assert Decimal(str(contract["exchangeRate"])) == rate
    assert Decimal(str(contract["custbody_p2c_functional_value"])) == (deal.amount * rate).quantize(
        Decimal("0.01")
    )


@pytest.mark.parametrize(
    ("opportunity", "matched_by"), [(EXISTING_FIXED_FEE, "crm_erp_id"), (TAX_ID_MATCH_TM, "tax_id")]
)
async def test_customer_already_in_the_erp_is_reused(flow: Flow, opportunity: str, matched_by: str) -> None:
    await win(flow, opportunity)
    customers = await flow.erp_count("customer")

    result = await provision(flow, opportunity)

    assert result.status == "PROVISIONED", result
    assert result.customer_reused and result.customer_matched_by == matched_by
    assert await flow.erp_count("customer") == customers
    index = next(
        a.index
        for a in flow.firm.accounts
        if a.crm_id == next(o.account_crm_id for o in flow.firm.opportunities if o.crm_id == opportunity)
    )
    assert result.erp_customer_id == str(flow.firm.accounts[index].erp_customer_id)
    customer = await flow.deps.erp.get("customer", str(result.erp_customer_id))
    assert customer["externalId"] == result.account_id  # stamped: the next match is by external id


async def test_missing_master_data_names_every_field_and_creates_nothing(flow: Flow) -> None:
    account = flow.firm.accounts[13]
    await flow.deps.crm.update("Account", account.crm_id, {"Tax_Id__c": None, "BillingCity": None})
    await win(flow, NO_STREET, Amount=0)

    with pytest.raises(ValidationFailed) as raised:
        await provision(flow, NO_STREET)

    fields = {p.field for p in raised.value.problems}
    assert {
        "account.BillingStreet",
        "account.BillingCity",
        "account.Tax_Id__c",
        "opportunity.Amount",
    } <= fields
    assert await flow.writes() == {}
    async with flow.deps.sessionmaker() as session:
        [exception] = await ExceptionRepo(session).list(subject=NO_STREET)
        assert exception.reason_code == "VALIDATION_FAILED"
        assert {p["field"] for p in exception.payload["problems"]} == fields
        assert await RunRepo(session).latest("provision_engagement", NO_STREET) is None
    assert raised.value.extensions["exceptionId"] == exception.id


async def test_unknown_subsidiary_and_no_lines_are_refused(flow: Flow) -> None:
    account = flow.firm.accounts[14]
    await flow.deps.crm.update("Account", account.crm_id, {"Legal_Entity__c": "XX99"})
    for line in await flow.deps.crm.lines_for_opportunities([EXISTING_FIXED_FEE]):
        await flow.deps.crm.delete("OpportunityLineItem", str(line["Id"]))
    await flow.reset_counters()

    problems = await validate_engagement(flow.deps, EXISTING_FIXED_FEE)

    reasons = {p.field: p.reason for p in problems}
    assert reasons["account.Legal_Entity__c"] == "MAPPING_MISSING"
    assert reasons["opportunity.lines"] == "MISSING"
    with pytest.raises(ValidationFailed):
        await provision(flow, EXISTING_FIXED_FEE)
    assert await flow.writes() == {}


async def test_validate_engagement_is_a_dry_run_reporting_form_problems(flow: Flow) -> None:
    await win(flow, TM)
    bad = EngagementInput(template="nope", project_manager="999999")
    problems = await validate_engagement(flow.deps, TM, bad)
    assert {p.field for p in problems} == {"input.template", "input.project_manager"}
    assert await validate_engagement(flow.deps, TM) == []
    assert await flow.writes() == {}


async def test_provisioning_options_offer_templates_methods_terms_and_people(flow: Flow) -> None:
    options = await provisioning_options(flow.deps, TM)
    assert options.business_line == "Implementation" and options.default_template == "implementation"
    assert options.templates[0].value == "implementation"
    assert {c.value for c in options.billing_methods} >= {"FIXED_FEE", "TIME_AND_MATERIALS"}
    assert {c.value for c in options.subsidiaries} == {"US01", "EU01"}
    assert options.default_payment_terms == "NET30"
    assert options.project_managers and options.project_managers[0].legal_entity == "US01"
    assert any(p.psa_user_id for p in options.project_managers)
    assert await flow.writes() == {}


async def test_project_manager_and_start_date_from_the_form(flow: Flow) -> None:
    await win(flow, TM)
    options = await provisioning_options(flow.deps, TM)
    manager = options.project_managers[0].erp_employee_id
    start = flow.firm.as_of
    result = await provision(flow, TM, EngagementInput(project_manager=manager, start_date=start))
    assert result.status == "PROVISIONED", result
    job = await job_of(flow, TM)
    assert str(job["projectManager"]["id"]) == manager and job["startDate"] == start.isoformat()
