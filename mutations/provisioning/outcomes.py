"""What provisioning answers — ``ProvisionResult``, plain data that round-trips through JSON (it is stored as
the idempotent response) — and the three ways it ends early: refused, amendment required, step failed."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from canonical.errors import Problem, ValidationFailed
from canonical.ids import step_key
from mutations.governance import (
    AMENDMENT_REQUIRED,
    MAPPING_MISSING,
    VALIDATION_FAILED,
    FlowRunner,
    StepFailed,
)
from mutations.provisioning.validate import Deal

FLOW = "provision_engagement"


@dataclass(frozen=True)
class ProvisionResult:
    status: str  # PROVISIONED | ALREADY_PROVISIONED | AMENDED | EXCEPTION
    opportunity_crm_id: str
    engagement_id: str | None = None  # the project's canonical id
    account_id: str | None = None
    contract_id: str | None = None
    billing_method: str | None = None
    value: str | None = None  # decimal text, in ``currency`` (the deal's)
    currency: str | None = None
    exchange_rate: str | None = None  # deal currency → the legal entity's, at the close date
    erp_customer_id: str | None = None
    customer_reused: bool = False
    customer_matched_by: str | None = None
    erp_job_id: str | None = None
    erp_contract_id: str | None = None
    erp_billing_schedule_id: str | None = None
    psa_project_id: str | None = None
    project_code: str | None = None
    parent_opportunity_crm_id: str | None = None  # change orders
    amendment_number: int | None = None
    run_id: str | None = None
    exception_id: str | None = None
    reason_code: str | None = None
    failed_step: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> ProvisionResult:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in dict(data).items() if k in names})


def failed(deal_id: str, failure: StepFailed, run_id: str | None) -> ProvisionResult:
    return ProvisionResult(
        "EXCEPTION",
        deal_id,
        run_id=run_id,
        exception_id=failure.exception_id,
        reason_code=failure.code,
        failed_step=failure.step,
    )


async def refuse(runner: FlowRunner, deal: Deal, problems: list[Problem]) -> ValidationFailed:
    """Open the exception naming every problem; the caller raises what this returns."""
    mapping_only = all(p.reason == MAPPING_MISSING for p in problems)
    reason = MAPPING_MISSING if mapping_only else VALIDATION_FAILED
    runner.payload = {**(runner.payload or {}), "problems": [p.as_dict() for p in problems]}
    exception_id = await runner.fail(step_key("crm", "opportunity", deal.crm_id, "validate"), reason)
    error = ValidationFailed(problems, subject=f"opportunity {deal.crm_id}")
    error.extensions.update(exceptionId=exception_id, reasonCode=reason)
    return error


async def amendment_required(
    runner: FlowRunner, deal: Deal, provisioned: Mapping[str, Any]
) -> ProvisionResult:
    runner.payload = {
        **(runner.payload or {}),
        "provisioned": {"fingerprint": provisioned.get("fingerprint")},
        "current": {
            "fingerprint": deal.fingerprint(),
            "stage": deal.opportunity.get("StageName"),
            "amount": deal.opportunity.get("Amount"),
        },
    }
    exception_id = await runner.fail(
        step_key("crm", "opportunity", deal.crm_id, "amendment"), AMENDMENT_REQUIRED
    )
    return ProvisionResult(
        "EXCEPTION",
        deal.crm_id,
        exception_id=exception_id,
        reason_code=AMENDMENT_REQUIRED,
        failed_step=step_key("crm", "opportunity", deal.crm_id, "amendment"),
    )
