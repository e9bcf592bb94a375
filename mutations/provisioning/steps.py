"""The writes of provisioning, one function per step. Each is safe to run again: ERP records are PUT by
external id (our canonical id), the PSA project is found by its code before one is created, task
assignments that exist are skipped, and CRM write-backs are plain field updates.

Step keys (``canonical.ids.step_key``):

    erp:customer:<account id>            erp:job:<project id>             erp:projectTasks:<project id>
    erp:milestones:<project id>          erp:contract:<contract id>       erp:billingSchedule:<schedule id>
    psa:project:<project id>             psa:taskAssignments:<project id>
    crm:account:<account id>:erpCustomer crm:opportunity:<opportunity crm id>:provisioned
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from canonical.entities import Project
from canonical.enums import BillingMethod, ProjectStatus
from canonical.errors import GatewayError, UpstreamNotFound
from canonical.ids import step_key
from canonical.money import Money
from mutations.deps import FlowDeps
from mutations.governance import FlowRunner
from mutations.identity import ACCOUNT, PROJECT
from mutations.provisioning.outcomes import ProvisionResult
from mutations.provisioning.plan import Plan
from store.repositories import CrossReferenceRepo
from subgraphs.erp.mapping import billing_schedule_body, customer_body, job_body, project_task_body
from subgraphs.erp.wire import Record

PROVISIONED = "Provisioned"


class CustomerAmbiguous(GatewayError):
    code = "MATCH_AMBIGUOUS"
    http_status = 409

    def __init__(self, account_id: str, tax_id: str, customers: list[str]) -> None:
        super().__init__(
            f"account {account_id}: ERP customers {', '.join(customers)} all carry tax id {tax_id}",
            accountId=account_id,
            customers=customers,
        )


def keys(plan: Plan) -> dict[str, str]:
    i = plan.ids
    return {
        "customer": step_key("erp", "customer", i.account_id),
        "job": step_key("erp", "job", i.project_id),
        "tasks": step_key("erp", "projectTasks", i.project_id),
        "milestones": step_key("erp", "milestones", i.project_id),
        "contract": step_key("erp", "contract", i.contract_id),
        "schedule": step_key("erp", "billingSchedule", i.schedule_id),
        "psa_project": step_key("psa", "project", i.project_id),
        "psa_tasks": step_key("psa", "taskAssignments", i.project_id),
        "crm_account": step_key("crm", "account", i.account_id, "erpCustomer"),
        "crm_opportunity": step_key("crm", "opportunity", i.opportunity_crm_id, "provisioned"),
    }


def project_code(plan: Plan) -> str:
    return "P2C-" + plan.ids.project_id[:8].upper()


async def _link(deps: FlowDeps, canonical: str, entity: str, system: str, system_id: str, plan: Plan) -> None:
    async with deps.sessionmaker.begin() as session:
        await CrossReferenceRepo(session, clock=deps.clock).link(
            canonical, entity, system, system_id, legal_entity=plan.legal_entity.code
        )


async def _sole_customer_by_tax_id(deps: FlowDeps, plan: Plan) -> str | None:
    tax_id = plan.account.tax_id
    if not tax_id:
        return None
    literal = tax_id.replace("'", "''")
    rows = await deps.erp.suiteql(
        f"SELECT id, externalid FROM customer WHERE vatregnumber = '{literal}' ORDER BY id"
    )
    free = [
        str(r["id"]) for r in rows if not r.get("externalid") or r.get("externalid") == plan.ids.account_id
    ]
    if len(free) > 1:
        raise CustomerAmbiguous(plan.ids.account_id, tax_id, free)
    return free[0] if free else None


async def _existing_customer(deps: FlowDeps, plan: Plan) -> tuple[Record | None, str]:
    """The ERP customer the account already has, and the rule that found it."""
    account_id = plan.ids.account_id
    async with deps.sessionmaker() as session:
        linked = (await CrossReferenceRepo(session).system_ids_for("erp", [account_id])).get(account_id)
    candidates = [("cross_reference", linked), ("crm_erp_id", plan.erp_customer_hint)]
    for rule, erp_id in candidates:
        if erp_id:
            try:
                return await deps.erp.get("customer", str(erp_id)), rule
            except UpstreamNotFound:
                continue
    by_eid = await deps.erp.get_by_external_id("customer", account_id)
    if by_eid is not None:
        return by_eid, "external_id"
    by_tax = await _sole_customer_by_tax_id(deps, plan)
    if by_tax is not None:
        return await deps.erp.get("customer", by_tax), "tax_id"
    return None, "created"


async def customer(deps: FlowDeps, plan: Plan) -> Mapping[str, Any]:
    found, rule = await _existing_customer(deps, plan)
    if found is not None:
        erp_id = str(found["id"])
        if not found.get("externalId"):  # stamp it, so the next match is by external id even without a store
            await deps.erp.update("customer", erp_id, {"externalId": plan.ids.account_id})
    else:
        reference = await deps.erp.reference_data()
        body: dict[str, Any] = dict(customer_body(plan.account, reference))
        body["terms"] = {"id": plan.terms.erp_id}
        erp_id = await deps.erp.upsert("customer", plan.ids.account_id, body)
    await _link(deps, plan.ids.account_id, ACCOUNT, "erp", erp_id, plan)
    return {"erp_id": erp_id, "reused": found is not None, "matched_by": rule}


def canonical_project(plan: Plan) -> Project:
    """The canonical project a plan provisions, in whichever ERP books its legal entity."""
    return Project(
        id=plan.ids.project_id,
        name=plan.name,
        account_id=plan.ids.account_id,
        code=project_code(plan),
        business_line=plan.business_line.name,
        legal_entity=plan.legal_entity.code,
        billing_method=plan.method,
        status=ProjectStatus.ACTIVE,
        start_date=plan.start,
        end_date=plan.end,
        budget=plan.value,
        manager=plan.project_manager,
    )


async def job(deps: FlowDeps, plan: Plan, customer_id: str) -> Mapping[str, Any]:
    reference = await deps.erp.reference_data()
    project = canonical_project(plan)
    # jobBillingType comes from the mapping in force (fixed fee → fixed-bid milestone in the demo firm's)
    body: dict[str, Any] = dict(job_body(project, customer_id, reference, deps.mapping))
    body.update(
        department={"id": plan.business_line.department},
        **{"class": {"id": plan.business_line.class_}},
        custentity_p2c_opportunity=plan.ids.opportunity_crm_id,
    )
    if plan.project_manager is not None:
        body["projectManager"] = {"id": plan.project_manager}
    erp_id = await deps.erp.upsert("job", plan.ids.project_id, body)
    await _link(deps, plan.ids.project_id, PROJECT, "erp", erp_id, plan)
    return {"erp_id": erp_id, "code": project.code}


async def project_tasks(deps: FlowDeps, plan: Plan, job_id: str) -> Mapping[str, Any]:
    ids = {}
    for task in plan.tasks:
        ids[task.name] = await deps.erp.upsert("projectTask", task.id, project_task_body(task, job_id))
    return {"erp_ids": ids}


async def milestones(deps: FlowDeps, plan: Plan, job_id: str) -> Mapping[str, Any]:
    ids = {}
    for m in plan.milestones:
        body: Record = {
            "externalId": m.id,
            "company": {"id": job_id},
            "title": m.name,
            "isMilestone": True,
            "status": "notStarted",
            "endDate": m.due_date.isoformat() if m.due_date else None,
            "custevent_p2c_amount": float(m.amount.rounded().amount) if m.amount else None,
        }
        ids[m.name] = await deps.erp.upsert("projectTask", m.id, body)
    return {"erp_ids": ids}


def _number(money: Money) -> float:
    return float(money.rounded().amount)


async def contract(deps: FlowDeps, plan: Plan, customer_id: str, job_id: str) -> Mapping[str, Any]:
    """The contract is a sales order on the job: value, lines, terms, rate card, conversion rate."""
    reference = await deps.erp.reference_data()
    body: Record = {
        "externalId": plan.ids.contract_id,
        "entity": {"id": customer_id},
        "job": {"id": job_id},
        "tranDate": plan.close_date.isoformat(),
        "startDate": plan.start.isoformat(),
        "endDate": plan.end.isoformat(),
        "currency": {"id": reference.currency_id(plan.currency)},
        "subsidiary": {"id": reference.subsidiary_id(plan.legal_entity.code)},
        "terms": {"id": plan.terms.erp_id},
        "total": _number(plan.value),
        "memo": plan.name,
        "item": {
            "items": [
                {
                    "item": {"id": deps.mapping.service_item(ln.product_code).erp_item},
                    "quantity": float(ln.quantity),
                    "rate": _number(ln.unit_price),
                    "amount": _number(ln.total),
                    "description": ln.description,
                }
                for ln in plan.lines
            ]
        },
        "custbody_p2c_billing_method": plan.method.value,
        "custbody_p2c_opportunity": plan.ids.opportunity_crm_id,
        "custbody_p2c_rate_card": [
            {"labourCategory": r.labour_category, "rate": _number(r.rate), "productCode": r.product_code}
            for r in plan.rate_card
        ],
        "custbody_p2c_amendments": [],
        "custbody_p2c_original_value": _number(plan.value),
    }
    if plan.exchange_rate is not None:
        # The deal's amounts stay in its currency; the close-date rate to the entity's currency is recorded.
        body["exchangeRate"] = float(plan.exchange_rate)
        body["custbody_p2c_functional_value"] = _number(
            plan.value.convert(plan.legal_entity.currency, plan.exchange_rate)
        )
    if plan.billing_contact is not None:
        body["custbody_p2c_billing_contact"] = plan.billing_contact
    erp_id = await deps.erp.upsert("salesOrder", plan.ids.contract_id, body)
    return {"erp_id": erp_id}


async def billing_schedule(deps: FlowDeps, plan: Plan, job_id: str, contract_id: str) -> Mapping[str, Any]:
    reference = await deps.erp.reference_data()
    body = billing_schedule_body(plan.schedule, job_id=job_id, external_id=plan.ids.schedule_id)
    body.update(
        contract={"id": contract_id},
        currency={"id": reference.currency_id(plan.currency)},
        rateCard=[
            {
                "labourCategory": r.labour_category,
                "rate": _number(r.rate),
                "currency": r.rate.currency,
                "productCode": r.product_code,
            }
            for r in plan.rate_card
        ],
    )
    erp_id = await deps.erp.upsert("billingSchedule", plan.ids.schedule_id, body)
    return {"erp_id": erp_id}


async def psa_project(deps: FlowDeps, plan: Plan) -> Mapping[str, Any]:
    code = project_code(plan)
    existing = [
        p
        async for page in deps.psa.projects(client_id=plan.psa_client_id)
        for p in page
        if p.get("code") == code
    ]
    if existing:
        psa_id = str(existing[0]["id"])
    else:
        fixed = plan.method in (BillingMethod.FIXED_FEE, BillingMethod.MILESTONE)
        body: dict[str, Any] = {
            "client_id": plan.psa_client_id,
            "name": plan.name,
            "code": code,
            "is_billable": True,
            "is_fixed_fee": fixed,
            "bill_by": "Tasks" if plan.rate_card else "Project",
            "budget_by": "project",
            "budget": _number(plan.value),
            "starts_on": plan.start.isoformat(),
            "ends_on": plan.end.isoformat(),
            "notes": f"p2c:{plan.ids.project_id}",
        }
        if fixed:
            body["fee"] = _number(plan.value)
        psa_id = str((await deps.psa.create_project(body))["id"])
    await _link(deps, plan.ids.project_id, PROJECT, "psa", psa_id, plan)
    return {"psa_id": psa_id, "code": code}


async def psa_task_assignments(deps: FlowDeps, plan: Plan, psa_project_id: str) -> Mapping[str, Any]:
    by_name = {str(t["name"]): int(t["id"]) for t in await deps.psa.tasks()}
    assigned = {int(a["task"]["id"]) for a in await deps.psa.task_assignments(int(psa_project_id))}
    rates = {r.labour_category: r.rate for r in plan.rate_card}
    done: dict[str, int] = {}
    for task in plan.tasks:
        if task.name not in by_name:
            by_name[task.name] = int((await deps.psa.create_task({"name": task.name}))["id"])
        task_psa_id = by_name[task.name]
        if task_psa_id not in assigned:
            body: dict[str, Any] = {"task_id": task_psa_id, "billable": True}
            rate = rates.get(task.labour_category or "")
            if rate is not None:
                body["hourly_rate"] = _number(rate)
            await deps.psa.create_task_assignment(int(psa_project_id), body)
        done[task.name] = task_psa_id
    return {"psa_task_ids": done}


async def crm_account(deps: FlowDeps, plan: Plan, customer_id: str) -> Mapping[str, Any]:
    fields = {"ERP_Customer_Id__c": customer_id, "P2C_Id__c": plan.ids.account_id}
    await deps.crm.update("Account", plan.ids.account_crm_id, fields)
    return fields


async def crm_opportunity(deps: FlowDeps, plan: Plan, fields: Mapping[str, Any]) -> None:
    await deps.crm.update(
        "Opportunity", plan.ids.opportunity_crm_id, {"P2C_Id__c": plan.ids.opportunity_id, **fields}
    )


Action = Callable[[], Awaitable[Mapping[str, Any]]]
Step = Callable[[str, Action], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class ErpRecords:
    """What an ERP adapter's steps made: the ERP's own ids for the result, and the references written
    to the CRM (NetSuite's internal ids as they are; another ERP's prefixed, e.g. ``tryton:12``)."""

    customer: Mapping[str, Any]  # the customer step's result (``reused``, ``matched_by``)
    customer_id: str
    job_id: str
    contract_id: str
    schedule_id: str
    project_code: str
    crm_customer_ref: str
    crm_project_ref: str
    account_changed: bool  # the CRM account's ERP reference must be (re)written


async def finish(
    deps: FlowDeps, runner: FlowRunner, plan: Plan, step: Step, erp: ErpRecords
) -> ProvisionResult:
    """The steps after the ERP's, the same whichever ERP the entity books in: the PSA project and its
    assignments, the CRM account and opportunity, then the run's end."""
    psa = await step("psa_project", lambda: psa_project(deps, plan))
    await step("psa_tasks", lambda: psa_task_assignments(deps, plan, str(psa["psa_id"])))
    if erp.account_changed:
        await step("crm_account", lambda: crm_account(deps, plan, erp.crm_customer_ref))
    result = ProvisionResult(
        "PROVISIONED",
        plan.ids.opportunity_crm_id,
        engagement_id=plan.ids.project_id,
        account_id=plan.ids.account_id,
        contract_id=plan.ids.contract_id,
        billing_method=plan.method.value,
        value=str(plan.value.amount),
        currency=plan.currency,
        exchange_rate=None if plan.exchange_rate is None else str(plan.exchange_rate),
        erp_customer_id=erp.customer_id,
        customer_reused=bool(erp.customer.get("reused")),
        customer_matched_by=erp.customer.get("matched_by"),
        erp_job_id=erp.job_id,
        erp_contract_id=erp.contract_id,
        erp_billing_schedule_id=erp.schedule_id,
        psa_project_id=str(psa["psa_id"]),
        project_code=erp.project_code,
        run_id=runner.run_id,
    )

    async def write_back() -> Mapping[str, Any]:
        await crm_opportunity(
            deps,
            plan,
            {
                "ERP_Customer_Id__c": erp.crm_customer_ref,
                "ERP_Project_Id__c": erp.crm_project_ref,
                "Provisioning_Status__c": PROVISIONED,
            },
        )
        return result.to_json()

    await step("crm_opportunity", write_back)
    await runner.finish()
    return result
