"""What provisioning will write, worked out before anything is written: pure functions, no I/O.

A ``Plan`` is built from the deal (CRM opportunity, its lines and account), the form input and the
mapping. Its ids are deterministic (``canonical_id``), so the same deal always plans the same records:

    contract        canonical_id("crm", "Contract", <opportunity id>)
    billingSchedule canonical_id("crm", "BillingSchedule", <opportunity id>)
    project (job)   mutations.identity.provisioned_project_canonical_id(<opportunity id>)
    task            canonical_id("crm", "ProjectTask", "<opportunity id>:<task name>")
    milestone       canonical_id("crm", "Milestone", "<opportunity id>:<milestone name>")

Billing by method: fixed fee → one billing event per template milestone (share × value, the last takes
the rounding remainder); milestone → one event (and one milestone) per line, on its service date;
time and materials → a rate card from the lines, no events; retainer / subscription → a monthly recurrence
(fee = the lines' unit prices, as many months as the lines' quantity), in arrears as the mapping says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from canonical.entities import (
    Account,
    BillingEvent,
    BillingSchedule,
    LegalEntity,
    Milestone,
    OpportunityLine,
    RateCardLine,
    Recurrence,
    Task,
    _add_months,
)
from canonical.enums import BillingMethod
from canonical.ids import canonical_id
from canonical.mapping import (
    BillingRule,
    BusinessLine,
    MappingSet,
    PaymentTerms,
    ProjectTemplate,
    ScheduleKind,
)
from canonical.money import Money
from mutations.identity import provisioned_project_canonical_id

#: The firm's price list sells consulting by the day; the rate card is per hour.
HOURS_PER_UNIT = Decimal(8)
DEFAULT_DURATION = timedelta(days=90)
DEFAULT_MONTHS = 12


@dataclass(frozen=True)
class Overrides:
    """What the project-setup form may change against the deal."""

    billing_method: str | None = None
    payment_terms: str | None = None
    legal_entity: str | None = None


@dataclass(frozen=True)
class EngagementInput:
    """The project-setup form. Every field is optional: a webhook provisions with the defaults."""

    template: str | None = None  # project template name; default: the business line's
    project_manager: str | None = None  # ERP employee internal id
    start_date: date | None = None  # default: the earliest line service date, else the close date
    billing_contact: str | None = None
    overrides: Overrides = field(default_factory=Overrides)

    @classmethod
    def from_json(cls, data: Any) -> EngagementInput:
        if not isinstance(data, dict):
            return cls()
        start = data.get("start_date")
        return cls(
            template=data.get("template"),
            project_manager=data.get("project_manager"),
            start_date=date.fromisoformat(start) if start else None,
            billing_contact=data.get("billing_contact"),
            overrides=Overrides(**(data.get("overrides") or {})),
        )


@dataclass(frozen=True)
class Ids:
    opportunity_crm_id: str
    opportunity_id: str
    account_crm_id: str
    account_id: str

    @property
    def project_id(self) -> str:
        return provisioned_project_canonical_id(self.opportunity_crm_id)

    @property
    def contract_id(self) -> str:
        return canonical_id("crm", "Contract", self.opportunity_crm_id)

    @property
    def schedule_id(self) -> str:
        return canonical_id("crm", "BillingSchedule", self.opportunity_crm_id)


@dataclass(frozen=True)
class Plan:
    ids: Ids
    name: str
    account: Account
    erp_customer_hint: str | None  # the CRM's ERP_Customer_Id__c
    psa_client_id: int
    legal_entity: LegalEntity
    business_line: BusinessLine
    method: BillingMethod
    rule: BillingRule
    template: ProjectTemplate
    terms: PaymentTerms
    value: Money  # in the deal's currency
    lines: tuple[OpportunityLine, ...]
    close_date: date
    start: date
    end: date
    exchange_rate: Decimal | None  # deal currency → the entity's currency on the close date
    schedule: BillingSchedule
    rate_card: tuple[RateCardLine, ...]
    tasks: tuple[Task, ...]
    milestones: tuple[Milestone, ...]
    project_manager: str | None
    billing_contact: str | None
    fingerprint: str

    @property
    def currency(self) -> str:
        return self.value.currency


def task_id(opportunity_crm_id: str, name: str) -> str:
    return canonical_id("crm", "ProjectTask", f"{opportunity_crm_id}:{name}")


def milestone_id(opportunity_crm_id: str, name: str) -> str:
    return canonical_id("crm", "Milestone", f"{opportunity_crm_id}:{name}")


def rate_card(lines: tuple[OpportunityLine, ...], mapping: MappingSet) -> tuple[RateCardLine, ...]:
    """One line per labour category a product is sold as (``labour_categories`` maps category → product)."""
    card: dict[str, RateCardLine] = {}
    for line in lines:
        rate = Money(line.unit_price.amount / HOURS_PER_UNIT, line.unit_price.currency)
        categories = [c for c, code in mapping.labour_categories.items() if code == line.product_code]
        for category in categories or [mapping.service_item(line.product_code).name]:
            card.setdefault(category, RateCardLine(category, rate.rounded(), line.product_code))
    return tuple(card.values())


def schedule_and_milestones(
    ids: Ids,
    method: BillingMethod,
    rule: BillingRule,
    template: ProjectTemplate,
    value: Money,
    lines: tuple[OpportunityLine, ...],
    start: date,
) -> tuple[BillingSchedule, tuple[Milestone, ...], date]:
    """The billing schedule, the project milestones and the projected end date."""
    opp, project = ids.opportunity_crm_id, ids.project_id
    kind = rule.schedule.kind
    end = start + DEFAULT_DURATION
    milestones: list[Milestone] = []
    recurrence: Recurrence | None = None
    if kind is ScheduleKind.MILESTONE and method is BillingMethod.MILESTONE:
        for n, line in enumerate(lines, start=1):
            name = f"{n}. {line.description or line.product_code}"
            due = line.service_date or start
            milestones.append(Milestone(milestone_id(opp, name), project, name, due, line.total))
    elif kind is ScheduleKind.MILESTONE:
        amounts = value.allocate([m.billing_percent for m in template.milestones])
        for pattern, amount in zip(template.milestones, amounts, strict=True):
            due = start + timedelta(days=pattern.due_after_days or 0)
            milestones.append(
                Milestone(
                    milestone_id(opp, pattern.name),
                    project,
                    pattern.name,
                    due,
                    amount,
                    task_id=task_id(opp, pattern.task),
                )
            )
    elif kind is ScheduleKind.RECURRING:
        fee = Money.sum((line.unit_price for line in lines), value.currency)
        months = max((int(line.quantity) for line in lines), default=0) or DEFAULT_MONTHS
        recurrence = Recurrence(
            fee, start, _add_months(start, months) - timedelta(days=1), rule.schedule.every_months
        )
        end = recurrence.end or end
    events = tuple(
        BillingEvent(
            m.name, m.due_date or start, m.amount or Money.zero(value.currency), milestone_id=m.id, id=m.id
        )
        for m in milestones
    )
    if milestones:
        end = max(end, *(m.due_date or start for m in milestones))
    schedule = BillingSchedule(
        method, events, recurrence, rule.schedule.in_arrears, erp_billing_type=rule.erp_billing_type.value
    )
    return schedule, tuple(milestones), end


def tasks_of(ids: Ids, template: ProjectTemplate, mapping: MappingSet) -> tuple[Task, ...]:
    return tuple(
        Task(
            task_id(ids.opportunity_crm_id, name),
            ids.project_id,
            name,
            labour_category=mapping.tasks[name].labour_category if name in mapping.tasks else None,
        )
        for name in template.tasks
    )
