"""The ops console's types: the project-setup form (options, input, problems, result), the audit trail,
the exception queue and integration runs.

Store rows become plain strawberry objects here (``of``), so nothing lazy of SQLAlchemy outlives its
session. Payloads, step results and upstream errors are free-form JSON as the store holds them.
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry.scalars import JSON

from canonical.errors import Problem as CanonicalProblem
from mutations.provision import (
    EngagementInput as FlowEngagementInput,
)
from mutations.provision import (
    Overrides,
    ProvisioningOptions,
    ProvisionResult,
)
from store.models import AuditEntry as AuditRow
from store.models import IntegrationException as ExceptionRow
from store.models import IntegrationRun as RunRow
from store.models import IntegrationStep as StepRow

# --- the project-setup form ------------------------------------------------------------------------------


@strawberry.type
class Choice:
    value: str
    label: str


@strawberry.type
class PersonChoice:
    erp_employee_id: strawberry.ID
    name: str
    email: str | None
    title: str | None
    legal_entity: str | None
    psa_user_id: str | None


@strawberry.type(name="ProvisioningOptions")
class ProvisioningOptionsType:
    opportunity_id: strawberry.ID
    business_line: str | None
    legal_entity: str | None
    default_template: str | None
    default_billing_method: str | None
    default_payment_terms: str | None
    templates: list[Choice]
    billing_methods: list[Choice]
    subsidiaries: list[Choice]
    payment_terms: list[Choice]
    project_managers: list[PersonChoice]

    @classmethod
    def of(cls, o: ProvisioningOptions) -> ProvisioningOptionsType:
        def choices(items: list[Any]) -> list[Choice]:
            return [Choice(value=c.value, label=c.label) for c in items]

        return cls(
            opportunity_id=strawberry.ID(o.opportunity_crm_id),
            business_line=o.business_line,
            legal_entity=o.legal_entity,
            default_template=o.default_template,
            default_billing_method=o.default_billing_method,
            default_payment_terms=o.default_payment_terms,
            templates=choices(o.templates),
            billing_methods=choices(o.billing_methods),
            subsidiaries=choices(o.subsidiaries),
            payment_terms=choices(o.payment_terms),
            project_managers=[
                PersonChoice(
                    erp_employee_id=strawberry.ID(p.erp_employee_id),
                    name=p.name,
                    email=p.email,
                    title=p.title,
                    legal_entity=p.legal_entity,
                    psa_user_id=p.psa_user_id,
                )
                for p in o.project_managers
            ],
        )


@strawberry.input(description="What the form may change against the deal's defaults")
class EngagementOverrides:
    billing_method: str | None = None
    payment_terms: str | None = None
    legal_entity: str | None = None


@strawberry.input(description="The project-setup form's choices; every field defaults to the deal's")
class EngagementInput:
    template: str | None = None
    project_manager: strawberry.ID | None = strawberry.field(
        default=None, description="ERP employee internal id (see provisioningOptions.projectManagers)"
    )
    start_date: date | None = None
    billing_contact: str | None = None
    overrides: EngagementOverrides | None = None

    def to_flow(self) -> FlowEngagementInput:
        o = self.overrides or EngagementOverrides()
        return FlowEngagementInput(
            template=self.template,
            project_manager=None if self.project_manager is None else str(self.project_manager),
            start_date=self.start_date,
            billing_contact=self.billing_contact,
            overrides=Overrides(o.billing_method, o.payment_terms, o.legal_entity),
        )


def flow_input(input: EngagementInput | None) -> FlowEngagementInput:
    return input.to_flow() if input is not None else FlowEngagementInput()


@strawberry.type
class Problem:
    field: str
    message: str
    reason: str

    @classmethod
    def of(cls, p: CanonicalProblem) -> Problem:
        return cls(field=p.field, message=p.message, reason=p.reason)


@strawberry.type
class EngagementValidation:
    valid: bool
    problems: list[Problem]


@strawberry.type(name="ProvisionResult", description="What provisionEngagement did; ERP and PSA ids")
class ProvisionResultType:
    status: str = strawberry.field(description="PROVISIONED | ALREADY_PROVISIONED | AMENDED | EXCEPTION")
    opportunity_id: strawberry.ID
    engagement_id: strawberry.ID | None
    account_id: strawberry.ID | None
    contract_id: strawberry.ID | None
    billing_method: str | None
    value: str | None = strawberry.field(description="Decimal string in `currency`, the deal's")
    currency: str | None
    exchange_rate: str | None
    erp_customer_id: str | None
    customer_reused: bool
    customer_matched_by: str | None
    erp_job_id: str | None
    erp_contract_id: str | None
    erp_billing_schedule_id: str | None
    psa_project_id: str | None
    project_code: str | None
    parent_opportunity_id: strawberry.ID | None
    amendment_number: int | None
    run_id: strawberry.ID | None
    exception_id: strawberry.ID | None
    reason_code: str | None
    failed_step: str | None

    @classmethod
    def of(cls, r: ProvisionResult) -> ProvisionResultType:
        values = dataclasses.asdict(r)
        values["opportunity_id"] = values.pop("opportunity_crm_id")
        values["parent_opportunity_id"] = values.pop("parent_opportunity_crm_id")
        return cls(**values)


# --- audit trail -----------------------------------------------------------------------------------------


@strawberry.input
class AuditFilter:
    operation: str | None = None
    principal: str | None = None
    correlation_id: str | None = None
    since: datetime | None = strawberry.field(default=None, description="inclusive; no offset means UTC")
    until: datetime | None = strawberry.field(default=None, description="exclusive; no offset means UTC")


@strawberry.type
class AuditEntry:
    id: strawberry.ID
    at: datetime
    principal: str
    roles: list[str]
    operation: str
    status: str
    correlation_id: str | None
    input: JSON | None
    result: JSON | None

    @classmethod
    def of(cls, row: AuditRow) -> AuditEntry:
        return cls(
            id=strawberry.ID(str(row.id)),
            at=row.at,
            principal=row.principal,
            roles=list(row.roles or []),
            operation=row.operation,
            status=row.status,
            correlation_id=row.correlation_id,
            input=row.input,
            result=row.result,
        )


# --- exception queue and runs ----------------------------------------------------------------------------


@strawberry.enum
class IntegrationExceptionStatus(Enum):
    OPEN = "OPEN"
    REPLAYING = "REPLAYING"
    RESOLVED = "RESOLVED"
    DISMISSED = "DISMISSED"


@strawberry.input
class IntegrationExceptionFilter:
    status: list[IntegrationExceptionStatus] | None = strawberry.field(
        default=None, description="any of these; default: every status"
    )
    flow: str | None = None
    reason_code: str | None = None
    legal_entity: str | None = None
    older_than: int | None = strawberry.field(
        default=None, description="seconds: only exceptions raised at least this long ago"
    )
    subject: str | None = strawberry.field(default=None, description="what failed, e.g. an opportunity id")
    correlation_id: str | None = None


@strawberry.type
class IntegrationStep:
    name: str
    key: str
    status: str
    attempts: int
    result: JSON | None
    error: JSON | None
    started_at: datetime | None
    finished_at: datetime | None
    correlation_id: str | None = strawberry.field(
        description="The correlation id of the attempt that last claimed this step."
    )

    @classmethod
    def of(cls, row: StepRow) -> IntegrationStep:
        return cls(
            name=row.name,
            key=row.key,
            status=row.status,
            attempts=row.attempts,
            result=row.result,
            error=row.error,
            started_at=row.started_at,
            finished_at=row.finished_at,
            correlation_id=row.correlation_id,
        )


@strawberry.type
class IntegrationRun:
    id: strawberry.ID
    flow: str
    subject: str | None
    status: str
    legal_entity: str | None
    correlation_id: str | None
    attempts: int
    input: JSON | None
    started_at: datetime
    finished_at: datetime | None
    steps: list[IntegrationStep] = strawberry.field(description="in the order they were first recorded")

    @classmethod
    def of(cls, row: RunRow, steps: list[StepRow]) -> IntegrationRun:
        return cls(
            id=strawberry.ID(row.id),
            flow=row.flow,
            subject=row.subject,
            status=row.status,
            legal_entity=row.legal_entity,
            correlation_id=row.correlation_id,
            attempts=row.attempts,
            input=row.input,
            started_at=row.started_at,
            finished_at=row.finished_at,
            steps=[IntegrationStep.of(s) for s in steps],
        )


@strawberry.input
class IntegrationRunFilter:
    correlation_id: str | None = None
    flow: str | None = None
    subject: str | None = None
    status: str | None = strawberry.field(default=None, description="RUNNING, SUCCEEDED or FAILED")
    legal_entity: str | None = None


@strawberry.type(description="Who the token says you are, and what you may do")
class Viewer:
    subject: str
    roles: list[str]
    legal_entities: list[str] = strawberry.field(description='entity codes; ["*"] for every one')
    permissions: list[str] = strawberry.field(description="e.g. replay_exception, read_audit")


@strawberry.type
class IntegrationException:
    id: strawberry.ID
    flow: str
    reason_code: str
    status: IntegrationExceptionStatus
    step: str | None
    subject: str | None
    legal_entity: str | None
    correlation_id: str | None
    run_id: strawberry.ID | None
    occurrences: int
    payload: JSON | None
    upstream_error: JSON | None
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    resolution_note: str | None
    dismissed_by: str | None
    age_seconds: int = strawberry.field(description="since it was first raised")

    @classmethod
    def of(cls, row: ExceptionRow, now: datetime) -> IntegrationException:
        return cls(
            id=strawberry.ID(row.id),
            flow=row.flow,
            reason_code=row.reason_code,
            status=IntegrationExceptionStatus(row.status),
            step=row.step,
            subject=row.subject,
            legal_entity=row.legal_entity,
            correlation_id=row.correlation_id,
            run_id=None if row.run_id is None else strawberry.ID(row.run_id),
            occurrences=row.occurrences,
            payload=row.payload,
            upstream_error=row.upstream_error,
            created_at=row.created_at,
            updated_at=row.updated_at,
            resolved_at=row.resolved_at,
            resolution_note=row.resolution_note,
            dismissed_by=row.dismissed_by,
            age_seconds=max(0, int((now - row.created_at).total_seconds())),
        )


@strawberry.type
class ReplayOutcome:
    exception: IntegrationException = strawberry.field(description="after the replay: RESOLVED or OPEN")
    result: JSON | None = strawberry.field(description="what the replayed flow answered")


__all__ = [
    "AuditEntry",
    "AuditFilter",
    "Choice",
    "EngagementInput",
    "EngagementOverrides",
    "EngagementValidation",
    "IntegrationException",
    "IntegrationExceptionFilter",
    "IntegrationExceptionStatus",
    "IntegrationRun",
    "IntegrationRunFilter",
    "IntegrationStep",
    "PersonChoice",
    "Problem",
    "ProvisionResultType",
    "ProvisioningOptionsType",
    "ReplayOutcome",
    "Viewer",
    "flow_input",
]
