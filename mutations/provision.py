"""Closed-won deal → ERP customer, contract, billing schedule, project (job) with tasks and milestones, PSA
project with its tasks, and the ERP ids back on the CRM opportunity.

    result = await provision_engagement(deps, "006000000000002AAA", principal=p, correlation_id="c-1")
    problems = await validate_engagement(deps, "006000000000002AAA", EngagementInput(...))   # dry run
    options = await provisioning_options(deps, "006000000000002AAA")                          # the form

Outcomes (``ProvisionResult.status``):

* ``PROVISIONED`` — every step done (steps already done by an earlier attempt are skipped).
* ``ALREADY_PROVISIONED`` — the same deal again (a duplicate or late event): nothing written.
* ``AMENDED`` — a change order (``Type`` "Change Order", ``Parent_Opportunity__c``) amended its parent.
* ``EXCEPTION`` — a step failed, or the deal changed after it was provisioned (``AMENDMENT_REQUIRED``,
  never a second project); ``exception_id`` names the exception to fix and replay.

Master data is checked before any write: missing or invalid fields raise ``ValidationFailed`` naming every
one, after opening a ``VALIDATION_FAILED`` (or ``MAPPING_MISSING``) exception for the opportunity. Every
call is audited (operation ``provision_engagement``). See ``provisioning/steps.py`` for the step keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from canonical.errors import GatewayError, Problem
from canonical.ids import step_key
from canonical.principal import Permission, Principal
from mutations.deps import FlowDeps
from mutations.governance import (
    FlowRunner,
    StepFailed,
    audit,
    jsonable,
)
from mutations.provisioning import steps
from mutations.provisioning import tryton as tryton_steps
from mutations.provisioning.amend import apply_change_order, check_change_order
from mutations.provisioning.options import Choice, PersonChoice, ProvisioningOptions, provisioning_options
from mutations.provisioning.outcomes import FLOW, ProvisionResult, amendment_required, failed, refuse
from mutations.provisioning.plan import EngagementInput, Overrides, Plan
from mutations.provisioning.validate import Deal, check, read_deal
from mutations.replay import ExceptionSummary, register_replay

ACTION = "provisionEngagement"


async def provision_engagement(
    deps: FlowDeps,
    opportunity_crm_id: str,
    input: EngagementInput | None = None,
    *,
    principal: Principal,
    correlation_id: str | None = None,
) -> ProvisionResult:
    input = input or EngagementInput()
    audited = {"opportunity": opportunity_crm_id, "input": input}
    try:
        principal.require(Permission.PROVISION, action=ACTION)
        deal = await read_deal(deps, opportunity_crm_id)
        entity = input.overrides.legal_entity or deal.account.get("Legal_Entity__c")
        if entity:
            principal.require_entity(str(entity), action=ACTION)
        runner = FlowRunner(
            deps,
            flow=FLOW,
            subject=opportunity_crm_id,
            correlation_id=correlation_id,
            legal_entity=str(entity) if entity else None,
        )
        runner.payload = {"opportunity": opportunity_crm_id, "input": jsonable(input)}
        if deal.is_change_order:
            result = await apply_change_order(deps, runner, deal, refuse=refuse)
        else:
            result = await _provision(deps, runner, deal, input)
    except GatewayError as exc:
        await audit(
            deps,
            principal,
            FLOW,
            exc.code,
            input=audited,
            result=exc.as_extensions(),
            correlation_id=correlation_id,
        )
        raise
    await audit(
        deps, principal, FLOW, result.status, input=audited, result=result, correlation_id=correlation_id
    )
    return result


async def _provision(
    deps: FlowDeps, runner: FlowRunner, deal: Deal, input: EngagementInput
) -> ProvisionResult:
    latest = await runner.latest()
    if latest is not None and latest[1] == "SUCCEEDED":
        provisioned = latest[2] if isinstance(latest[2], dict) else {}
        won = deal.opportunity.get("StageName") == "Closed Won"
        if not won or provisioned.get("fingerprint") != deal.fingerprint():
            return await amendment_required(runner, deal, provisioned)
        done = await runner.done(step_key("crm", "opportunity", deal.crm_id, "provisioned"))
        stored = ProvisionResult.from_json(done or {"status": "", "opportunity_crm_id": deal.crm_id})
        return dataclasses.replace(stored, status="ALREADY_PROVISIONED")
    plan, problems = await check(deps, deal, input)
    if plan is None:
        raise await refuse(runner, deal, problems)
    await runner.attach(
        {"opportunity": deal.crm_id, "input": jsonable(input), "fingerprint": plan.fingerprint}
    )
    try:
        return await _run_steps(deps, runner, plan)
    except StepFailed as failure:
        return failed(deal.crm_id, failure, runner.run_id)


async def _run_steps(deps: FlowDeps, runner: FlowRunner, plan: Plan) -> ProvisionResult:
    tryton = deps.tryton_for(plan.legal_entity.code)
    if tryton is not None:  # the entity books in Tryton: same plan, the ERP steps of that adapter
        return await tryton_steps.run(deps, tryton, runner, plan)
    k = steps.keys(plan)

    def step(name: str, action: Callable[[], Awaitable[Mapping[str, Any]]]) -> Awaitable[dict[str, Any]]:
        return runner.step(name, k[name], action)

    customer = await step("customer", lambda: steps.customer(deps, plan))
    customer_id = str(customer["erp_id"])
    job = await step("job", lambda: steps.job(deps, plan, customer_id))
    job_id = str(job["erp_id"])
    contract = await step("contract", lambda: steps.contract(deps, plan, customer_id, job_id))
    schedule = await step(
        "schedule", lambda: steps.billing_schedule(deps, plan, job_id, str(contract["erp_id"]))
    )
    await step("tasks", lambda: steps.project_tasks(deps, plan, job_id))
    if plan.milestones:
        await step("milestones", lambda: steps.milestones(deps, plan, job_id))
    records = steps.ErpRecords(
        customer=customer,
        customer_id=customer_id,
        job_id=job_id,
        contract_id=str(contract["erp_id"]),
        schedule_id=str(schedule["erp_id"]),
        project_code=str(job["code"]),
        crm_customer_ref=customer_id,
        crm_project_ref=job_id,
        account_changed=customer.get("reused") is False or plan.erp_customer_hint != customer_id,
    )
    return await steps.finish(deps, runner, plan, step, records)


async def validate_engagement(
    deps: FlowDeps, opportunity_crm_id: str, input: EngagementInput | None = None
) -> list[Problem]:
    """Dry run of the master-data checks: every problem, field by field; writes nothing anywhere."""
    deal = await read_deal(deps, opportunity_crm_id)
    if deal.is_change_order:
        return (await check_change_order(deps, deal))[1]
    return (await check(deps, deal, input or EngagementInput()))[1]


async def _replay(
    deps: FlowDeps, exception: ExceptionSummary, principal: Principal, correlation_id: str | None
) -> tuple[ProvisionResult, str | None]:
    """The opportunity again, with the input stored on the exception. ``principal`` is the one
    ``replay_exception`` runs flows as (``system:replay`` in the exception's legal entity), not the
    caller, who needed only ``REPLAY_EXCEPTION`` — see ``mutations.replay``."""
    async with deps.sessionmaker() as session:
        from store.repositories import ExceptionRepo

        payload = (await ExceptionRepo(session).get(exception.id)).payload
    stored = payload.get("input") if isinstance(payload, dict) else None
    result = await provision_engagement(
        deps,
        str(exception.subject),
        EngagementInput.from_json(stored),
        principal=principal,
        correlation_id=correlation_id,
    )
    return result, result.exception_id if result.status == "EXCEPTION" else None


register_replay(FLOW, _replay)

__all__ = [
    "FLOW",
    "Choice",
    "EngagementInput",
    "Overrides",
    "PersonChoice",
    "ProvisionResult",
    "ProvisioningOptions",
    "provision_engagement",
    "provisioning_options",
    "validate_engagement",
]
