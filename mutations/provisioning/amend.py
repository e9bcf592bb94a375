"""Change orders: a closed-won opportunity of ``Type`` "Change Order" whose ``Parent_Opportunity__c`` was
provisioned amends that engagement — never a second project.

Steps (each idempotent: what the change order already added is found by its id and not added again):

    erp:contractAmendment:<contract id>:<change order crm id>   amendment on the contract (sales order),
                                                                contract value = original + Σ amendments
    erp:billingSchedule:<schedule id>:<change order crm id>     new billing events (fixed fee, milestone,
                                                                retainer, subscription: one per line) or
                                                                new rate-card lines (time and materials)
    erp:milestones:<project id>:<change order crm id>           a project milestone per new billing event
    crm:opportunity:<change order crm id>:provisioned           Provisioning_Status__c = "Amended"
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from canonical.entities import Opportunity
from canonical.errors import Problem, ValidationFailed
from canonical.ids import step_key
from mutations.deps import FlowDeps
from mutations.governance import FlowRunner, StepFailed, jsonable
from mutations.provisioning.outcomes import FLOW, ProvisionResult, amendment_required, failed
from mutations.provisioning.plan import Ids, milestone_id, rate_card
from mutations.provisioning.validate import Deal, check_commercials
from subgraphs.erp.wire import Record

AMENDED = "Amended"
Refuse = Callable[[FlowRunner, Deal, list[Problem]], Awaitable[ValidationFailed]]
_READ_ONLY = ("id", "links", "lastModifiedDate", "refName")


@dataclass(frozen=True)
class ChangeOrder:
    deal: Deal
    opportunity: Opportunity
    parent: ProvisionResult
    parent_ids: Ids

    @property
    def crm_id(self) -> str:
        return self.deal.crm_id


async def check_change_order(deps: FlowDeps, deal: Deal) -> tuple[ChangeOrder | None, list[Problem]]:
    problems: list[Problem] = []
    opportunity = check_commercials(deal, problems)
    parent_id = deal.opportunity.get("Parent_Opportunity__c")
    parent: ProvisionResult | None = None
    field = "opportunity.Parent_Opportunity__c"
    if not parent_id:
        problems.append(Problem(field, "a change order needs its parent opportunity", "MISSING"))
    else:
        runner = FlowRunner(deps, flow=FLOW, subject=str(parent_id))
        latest = await runner.latest()
        done = await runner.done(step_key("crm", "opportunity", str(parent_id), "provisioned"))
        if latest is None or latest[1] != "SUCCEEDED" or done is None:
            problems.append(Problem(field, f"{parent_id} is not provisioned", "NOT_PROVISIONED"))
        else:
            parent = ProvisionResult.from_json(done)
            currency = deal.opportunity.get("CurrencyIsoCode")
            if currency != parent.currency:
                problems.append(
                    Problem(
                        "opportunity.CurrencyIsoCode",
                        f"{currency} differs from the contract's {parent.currency}",
                        "INVALID",
                    )
                )
    for n, line in enumerate(deal.lines):
        if line.get("ProductCode") not in deps.mapping.service_items:
            problems.append(
                Problem(
                    f"opportunity.lines[{n}].ProductCode",
                    f"no service item for {line.get('ProductCode')!r}",
                    "MAPPING_MISSING",
                )
            )
    if problems or opportunity is None or parent is None:
        return None, problems
    ids = Ids(str(parent_id), "", "", parent.account_id or "")
    return ChangeOrder(deal, opportunity, parent, ids), []


def _writable(record: Record) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in _READ_ONLY}


async def _amend_contract(deps: FlowDeps, co: ChangeOrder) -> Mapping[str, Any]:
    contract_id = co.parent_ids.contract_id
    current = await deps.erp.get_by_external_id("salesOrder", contract_id)
    if current is None:
        raise ValidationFailed([Problem("contract", f"ERP contract {contract_id} not found", "NOT_FOUND")])
    body = _writable(current)
    amendments = list(body.get("custbody_p2c_amendments") or [])
    mine = next((a for a in amendments if a.get("opportunity") == co.crm_id), None)
    if mine is None:
        mine = {
            "number": len(amendments) + 1,
            "opportunity": co.crm_id,
            "reason": co.opportunity.name,
            "effectiveDate": co.opportunity.close_date.isoformat(),
            "valueChange": str(co.opportunity.amount.rounded().amount),
        }
        amendments.append(mine)
    original = Decimal(str(body.get("custbody_p2c_original_value", body.get("total", 0))))
    value = original + sum((Decimal(str(a["valueChange"])) for a in amendments), Decimal(0))
    body.update(custbody_p2c_amendments=amendments, total=float(value))
    erp_id = await deps.erp.upsert("salesOrder", contract_id, body)
    return {"erp_id": erp_id, "number": mine["number"], "value": str(value)}


def _events(co: ChangeOrder) -> list[dict[str, Any]]:
    events = []
    for n, line in enumerate(co.opportunity.lines, start=1):
        name = f"Change order {co.opportunity.name}: {n}. {line.description or line.product_code}"
        due = line.service_date or co.opportunity.close_date
        events.append(
            {
                "id": milestone_id(co.crm_id, f"{n}. {line.product_code}"),
                "name": name,
                "amount": float(line.total.rounded().amount),
                "dueDate": due.isoformat(),
                "currency": line.total.currency,
                "completed": False,
                "billed": False,
            }
        )
    return events


async def _amend_schedule(deps: FlowDeps, co: ChangeOrder) -> Mapping[str, Any]:
    schedule_id = co.parent_ids.schedule_id
    current = await deps.erp.get_by_external_id("billingSchedule", schedule_id)
    if current is None:
        raise ValidationFailed(
            [Problem("billingSchedule", f"ERP schedule {schedule_id} not found", "NOT_FOUND")]
        )
    body = _writable(current)
    added: list[str] = []
    if co.parent.billing_method == "TIME_AND_MATERIALS":
        card = list(body.get("rateCard") or [])
        known = {c.get("labourCategory") for c in card}
        for line in rate_card(co.opportunity.lines, deps.mapping):
            if line.labour_category not in known:
                card.append(
                    {
                        "labourCategory": line.labour_category,
                        "rate": float(line.rate.amount),
                        "currency": line.rate.currency,
                        "productCode": line.product_code,
                    }
                )
                added.append(line.labour_category)
        body["rateCard"] = card
    else:
        events = list(body.get("milestones") or [])
        known = {e.get("id") for e in events}
        for event in _events(co):
            if event["id"] not in known:
                events.append(event)
                added.append(str(event["id"]))
        body["milestones"] = events
    erp_id = await deps.erp.upsert("billingSchedule", schedule_id, body)
    return {"erp_id": erp_id, "added": added}


async def _add_milestones(deps: FlowDeps, co: ChangeOrder) -> Mapping[str, Any]:
    ids = {}
    for event in _events(co):
        body: Record = {
            "externalId": event["id"],
            "company": {"id": co.parent.erp_job_id},
            "title": event["name"],
            "isMilestone": True,
            "status": "notStarted",
            "endDate": event["dueDate"],
            "custevent_p2c_amount": event["amount"],
        }
        ids[str(event["id"])] = await deps.erp.upsert("projectTask", str(event["id"]), body)
    return {"erp_ids": ids}


ERP_UNSUPPORTED = "ERP_UNSUPPORTED"


def tryton_change_order(entity: str) -> Problem:
    return Problem(
        field="opportunity.Type",
        message=(
            f"change orders of {entity} (booked in Tryton) are not amended automatically: add the new "
            "tasks or raise the planned effort of the Tryton project by hand, then dismiss this exception "
            "with the Tryton project's reference"
        ),
        reason=ERP_UNSUPPORTED,
    )


async def apply_change_order(
    deps: FlowDeps, runner: FlowRunner, deal: Deal, *, refuse: Refuse
) -> ProvisionResult:
    latest = await runner.latest()
    if latest is not None and latest[1] == "SUCCEEDED":
        provisioned = latest[2] if isinstance(latest[2], dict) else {}
        if provisioned.get("fingerprint") != deal.fingerprint():
            return await amendment_required(runner, deal, provisioned)
        done = await runner.done(step_key("crm", "opportunity", deal.crm_id, "provisioned"))
        stored = ProvisionResult.from_json(done or {"status": "", "opportunity_crm_id": deal.crm_id})
        return replace(stored, status="ALREADY_PROVISIONED")
    entity = deal.account.get("Legal_Entity__c")
    if deps.erp_of(str(entity) if entity else None) == "tryton":
        # The steps below amend a NetSuite sales order and billing schedule; a Tryton project has
        # neither. Refused before any write, with the way to do it by hand, rather than booked in the
        # wrong ERP.
        raise await refuse(runner, deal, [tryton_change_order(str(entity))])
    co, problems = await check_change_order(deps, deal)
    if co is None:
        raise await refuse(runner, deal, problems)
    await runner.attach(
        {
            "opportunity": deal.crm_id,
            "parent": co.parent.opportunity_crm_id,
            "input": jsonable(runner.payload),
            "fingerprint": deal.fingerprint(),
        }
    )
    try:
        return await _run(deps, runner, co)
    except StepFailed as failure:
        return failed(deal.crm_id, failure, runner.run_id)


async def _run(deps: FlowDeps, runner: FlowRunner, co: ChangeOrder) -> ProvisionResult:
    parent_ids = co.parent_ids
    amendment = await runner.step(
        "contract_amendment",
        step_key("erp", "contractAmendment", parent_ids.contract_id, co.crm_id),
        lambda: _amend_contract(deps, co),
    )
    await runner.step(
        "schedule_amendment",
        step_key("erp", "billingSchedule", parent_ids.schedule_id, co.crm_id),
        lambda: _amend_schedule(deps, co),
    )
    if co.parent.billing_method != "TIME_AND_MATERIALS":
        await runner.step(
            "milestones_amendment",
            step_key("erp", "milestones", co.parent.engagement_id or "", co.crm_id),
            lambda: _add_milestones(deps, co),
        )
    result = replace(
        co.parent,
        status="AMENDED",
        opportunity_crm_id=co.crm_id,
        parent_opportunity_crm_id=co.parent.opportunity_crm_id,
        value=str(amendment["value"]),
        amendment_number=int(amendment["number"]),
        run_id=runner.run_id,
        customer_reused=True,
        exception_id=None,
        reason_code=None,
        failed_step=None,
    )

    async def write_back() -> Mapping[str, Any]:
        await deps.crm.update(
            "Opportunity",
            co.crm_id,
            {
                "P2C_Id__c": co.opportunity.id,
                "ERP_Customer_Id__c": co.parent.erp_customer_id,
                "Provisioning_Status__c": AMENDED,
            },
        )
        return result.to_json()

    await runner.step("crm_opportunity", step_key("crm", "opportunity", co.crm_id, "provisioned"), write_back)
    await runner.finish()
    return result
