"""Provisioning scenarios 6, 8 and 9, upstream faults, replay and change orders, on SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

from canonical.principal import Principal
from mutations.identity import provisioned_project_canonical_id
from mutations.provision import ProvisionResult, provision_engagement
from mutations.replay import dismiss_exception, replay_exception
from store.repositories import AuditRepo, ExceptionRepo
from tests.mutations.conftest import ADMIN, Flow
from tests.mutations.test_provision_scenarios import EXISTING_FIXED_FEE, NEW_CUSTOMER_FIXED_FEE, TM, win

SALES = Principal("alice", roles=frozenset({"sales"}), all_entities=True)


async def provision(flow: Flow, opportunity: str) -> ProvisionResult:
    return await provision_engagement(flow.deps, opportunity, principal=ADMIN, correlation_id="c-9")


async def count_by_external_id(flow: Flow, table: str, external_id: str) -> int:
    return await flow.erp_count(table, f"externalid = '{external_id}'")


async def exactly_one_of_everything(flow: Flow, result: ProvisionResult) -> None:
    assert await count_by_external_id(flow, "customer", str(result.account_id)) == 1
    assert await count_by_external_id(flow, "job", str(result.engagement_id)) == 1
    assert await count_by_external_id(flow, "transaction", str(result.contract_id)) == 1
    schedules = await flow.erp_count("billingschedule", f"job = {result.erp_job_id}")
    assert schedules == 1
    account = (await flow.deps.crm.get("Opportunity", result.opportunity_crm_id))["AccountId"]
    client = next(a for a in flow.firm.accounts if a.crm_id == account).psa_client_id
    projects = [
        p
        async for page in flow.deps.psa.projects(client_id=client)
        for p in page
        if p["code"] == result.project_code
    ]
    assert len(projects) == 1


async def test_the_same_event_twice_or_a_day_later_provisions_exactly_once(flow: Flow) -> None:
    await win(flow, NEW_CUSTOMER_FIXED_FEE)
    first = await provision(flow, NEW_CUSTOMER_FIXED_FEE)
    await flow.reset_counters()

    again = await provision(flow, NEW_CUSTOMER_FIXED_FEE)

    assert again.status == "ALREADY_PROVISIONED"
    assert again.erp_job_id == first.erp_job_id and again.psa_project_id == first.psa_project_id
    assert await flow.writes() == {}
    await exactly_one_of_everything(flow, first)


async def test_store_lost_then_replayed_upserts_by_external_id(flow: Flow, flow_firm: object) -> None:
    """Guard (b): with no store at all, the vendor records are found by external id / project code."""
    from tests.mutations.conftest import build_apps, close_flow, make_flow

    await win(flow, TM)
    first = await provision(flow, TM)
    import os
    import tempfile

    from sqlalchemy.ext.asyncio import async_sessionmaker

    from store.db import make_engine
    from store.migrate import upgrade_to_head_async

    path = os.path.join(tempfile.mkdtemp(), "fresh.db")
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade_to_head_async(url)
    engine = make_engine(url)
    fresh = await make_flow(flow.apps, flow.firm, async_sessionmaker(engine, expire_on_commit=False))
    try:
        second = await provision(fresh, TM)
        assert second.status == "PROVISIONED" and second.erp_job_id == first.erp_job_id
        assert second.psa_project_id == first.psa_project_id
        await exactly_one_of_everything(fresh, second)
    finally:
        await close_flow(fresh)
        await engine.dispose()
    assert build_apps  # imported for symmetry with the fixture


async def test_amount_changed_after_provisioning_needs_an_amendment_never_a_second_project(
    flow: Flow,
) -> None:
    await win(flow, TM)
    first = await provision(flow, TM)
    await flow.deps.crm.update("Opportunity", TM, {"Amount": 123456})
    await flow.reset_counters()

    changed = await provision(flow, TM)

    assert changed.status == "EXCEPTION" and changed.reason_code == "AMENDMENT_REQUIRED"
    assert await flow.writes() == {}
    await exactly_one_of_everything(flow, first)
    async with flow.deps.sessionmaker() as session:
        exception = await ExceptionRepo(session).get(str(changed.exception_id))
        assert exception.status == "OPEN"
        assert Decimal(exception.payload["current"]["amount"]) == 123456
    dismissed = await dismiss_exception(
        flow.deps, str(changed.exception_id), "handled by a change order", principal=ADMIN
    )
    assert dismissed.status == "DISMISSED"


async def test_erp_fails_after_the_customer_then_replay_finishes_without_duplicates(flow: Flow) -> None:
    await win(flow, NEW_CUSTOMER_FIXED_FEE)
    project_id = provisioned_project_canonical_id(NEW_CUSTOMER_FIXED_FEE)
    await flow.faults("erp", fail_records={project_id: 400})

    failed = await provision(flow, NEW_CUSTOMER_FIXED_FEE)

    assert failed.status == "EXCEPTION" and failed.failed_step == f"erp:job:{project_id}"
    assert failed.reason_code == "UPSTREAM_REJECTED"
    async with flow.deps.sessionmaker() as session:
        exception = await ExceptionRepo(session).get(str(failed.exception_id))
        assert exception.step == failed.failed_step and exception.correlation_id == "c-9"
        assert exception.upstream_error["system"] == "erp"
    await flow.faults("erp")
    assert await count_by_external_id(flow, "job", project_id) == 0

    replayed = await replay_exception(
        flow.deps, str(failed.exception_id), principal=ADMIN, correlation_id="c-10"
    )

    assert replayed.exception.status == "RESOLVED"
    assert isinstance(replayed.result, ProvisionResult) and replayed.result.status == "PROVISIONED"
    await exactly_one_of_everything(flow, replayed.result)
    async with flow.deps.sessionmaker() as session:
        audit = await AuditRepo(session).query(operation="replayException")
        assert [a.status for a in audit] == ["RESOLVED"]


async def test_erp_503_and_429_are_retried_within_budget_beyond_it_an_exception(flow: Flow) -> None:
    await win(flow, TM)
    await flow.faults("erp", error_rates={"429": 0.3}, seed=3)
    result = await provision(flow, TM)  # retried within budget
    assert result.status == "PROVISIONED", result
    assert (await flow.counters("erp"))["total"] > 0

    await win(flow, EXISTING_FIXED_FEE)
    await flow.faults("erp", error_rates={"503": 1.0})
    failed = await provision(flow, EXISTING_FIXED_FEE)
    assert failed.status == "EXCEPTION" and failed.reason_code == "UPSTREAM_UNAVAILABLE"
    assert await flow.writes() == {}  # every write was refused by the sandbox before it happened ...
    await flow.faults("erp")
    replayed = await replay_exception(flow.deps, str(failed.exception_id), principal=ADMIN)
    assert replayed.exception.status == "RESOLVED"
    await exactly_one_of_everything(flow, replayed.result)


async def test_change_order_amends_the_contract_schedule_and_milestones(flow: Flow) -> None:
    await win(flow, NEW_CUSTOMER_FIXED_FEE)
    parent = await provision(flow, NEW_CUSTOMER_FIXED_FEE)
    account = (await flow.deps.crm.get("Opportunity", NEW_CUSTOMER_FIXED_FEE))["AccountId"]
    change = await flow.deps.crm.create(
        "Opportunity",
        {
            "AccountId": account,
            "Name": "Extra training",
            "StageName": "Closed Won",
            "Amount": 4800,
            "CloseDate": "2026-11-20",
            "CurrencyIsoCode": "USD",
            "Type": "Change Order",
            "Parent_Opportunity__c": NEW_CUSTOMER_FIXED_FEE,
            "Billing_Method__c": "FIXED_FEE",
        },
    )
    await flow.deps.crm.create(
        "OpportunityLineItem",
        {
            "OpportunityId": change,
            "ProductCode": "TRAINING",
            "Quantity": 2,
            "UnitPrice": 2400,
            "ServiceDate": "2026-12-15",
            "Description": "Training day",
        },
    )
    jobs = await flow.erp_count("job")

    amended = await provision(flow, change)
    again = await provision(flow, change)

    assert amended.status == "AMENDED" and amended.amendment_number == 1
    assert Decimal(str(amended.value)) == Decimal(str(parent.value)) + 4800
    assert again.status == "ALREADY_PROVISIONED"
    assert await flow.erp_count("job") == jobs
    contract = await flow.deps.erp.get("salesOrder", str(parent.erp_contract_id))
    assert len(contract["custbody_p2c_amendments"]) == 1
    assert Decimal(str(contract["total"])) == Decimal(str(amended.value))
    schedule = await flow.deps.erp.get("billingSchedule", str(parent.erp_billing_schedule_id))
    assert len(schedule["milestones"]) == 5 and schedule["milestones"][-1]["amount"] == 4800
    async with flow.deps.sessionmaker() as session:
        audit = await AuditRepo(session).query(operation="provision_engagement")
        assert [a.status for a in audit][:2] == ["ALREADY_PROVISIONED", "AMENDED"]


async def test_a_change_order_without_a_provisioned_parent_is_refused(flow: Flow) -> None:
    await flow.deps.crm.update(
        "Opportunity", TM, {"Type": "Change Order", "Parent_Opportunity__c": EXISTING_FIXED_FEE}
    )
    await win(flow, TM)
    from canonical.errors import ValidationFailed

    try:
        await provision(flow, TM)
    except ValidationFailed as exc:
        assert {p.field for p in exc.problems} == {"opportunity.Parent_Opportunity__c"}
    else:
        raise AssertionError("expected ValidationFailed")
    assert await flow.writes() == {}


async def test_a_change_order_of_an_entity_booked_in_tryton_is_refused_before_any_write(flow: Flow) -> None:
    import dataclasses

    from canonical.errors import ValidationFailed

    eu_deal = "006000000000032AAA"  # account 10, EU01
    await flow.deps.crm.update(
        "Opportunity", eu_deal, {"Type": "Change Order", "Parent_Opportunity__c": EXISTING_FIXED_FEE}
    )
    await win(flow, eu_deal)
    flow.deps = dataclasses.replace(flow.deps, erp_by_entity={"EU01": "tryton"})
    await flow.reset_counters()
    try:
        await provision(flow, eu_deal)
    except ValidationFailed as exc:
        assert [(p.field, p.reason) for p in exc.problems] == [("opportunity.Type", "ERP_UNSUPPORTED")]
        assert "booked in Tryton" in exc.problems[0].message
        assert exc.extensions["reasonCode"] == "VALIDATION_FAILED" and exc.extensions["exceptionId"]
    else:
        raise AssertionError("expected ValidationFailed")
    assert await flow.writes() == {}  # nothing in NetSuite, the PSA or the CRM


async def test_sales_may_provision_but_not_replay(flow: Flow) -> None:
    from canonical.errors import PermissionDenied

    await win(flow, TM)
    result = await provision_engagement(flow.deps, TM, principal=SALES)
    assert result.status == "PROVISIONED"
    try:
        await replay_exception(flow.deps, "nope", principal=SALES)
    except PermissionDenied:
        pass
    else:
        raise AssertionError("expected PermissionDenied")
