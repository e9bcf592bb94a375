"""What the project-setup form may offer for one deal: templates, billing methods, subsidiaries, payment
terms and the people who can manage the project (ERP employees, with their PSA user when one matches by
e-mail). Reads only."""

from __future__ import annotations

from dataclasses import dataclass, replace

from mutations.deps import FlowDeps
from mutations.provisioning.validate import read_deal


@dataclass(frozen=True)
class Choice:
    value: str
    label: str


@dataclass(frozen=True)
class PersonChoice:
    erp_employee_id: str
    name: str
    email: str | None
    title: str | None
    legal_entity: str | None
    psa_user_id: str | None


@dataclass(frozen=True)
class ProvisioningOptions:
    opportunity_crm_id: str
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


async def provisioning_options(deps: FlowDeps, opportunity_crm_id: str) -> ProvisioningOptions:
    mapping = deps.mapping
    deal = await read_deal(deps, opportunity_crm_id)
    o, a = deal.opportunity, deal.account
    line = str(o.get("Business_Line__c") or a.get("Business_Line__c") or "") or None
    entity = str(a.get("Legal_Entity__c") or "") or None
    default_template = (
        mapping.business_lines[line].project_template if line and line in mapping.business_lines else None
    )
    templates = sorted(mapping.project_templates, key=lambda name: (name != default_template, name))
    reference = await deps.erp.reference_data()
    psa_by_email = {
        str(u.get("email", "")).lower(): str(u["id"]) for u in await deps.psa.users(is_active=True)
    }
    people = []
    for erp_id, employee in sorted(reference.employees.items(), key=lambda item: int(item[0])):
        email = employee.get("email")
        subsidiary = employee.get("subsidiary")
        people.append(
            PersonChoice(
                erp_employee_id=erp_id,
                name=str(employee.get("entityid")),
                email=email,
                title=employee.get("title"),
                legal_entity=reference.legal_entities.get(str(subsidiary))
                if subsidiary is not None
                else None,
                psa_user_id=psa_by_email.get(str(email).lower()) if email else None,
            )
        )
    tryton = deps.tryton_for(entity)
    if tryton is not None:  # validation checks a Tryton entity's manager against Tryton: offer its employees
        in_tryton = await tryton.employees()
        people = [
            replace(p, erp_employee_id=str(in_tryton[p.email.lower()]))
            for p in people
            if p.email and p.email.lower() in in_tryton
        ]
    if entity:  # the entity's own people first
        people.sort(key=lambda p: p.legal_entity != entity)
    terms = (
        mapping.entity_settings(entity).payment_terms if entity and entity in mapping.legal_entities else None
    )
    return ProvisioningOptions(
        opportunity_crm_id=opportunity_crm_id,
        business_line=line,
        legal_entity=entity,
        default_template=default_template,
        default_billing_method=o.get("Billing_Method__c"),
        default_payment_terms=terms,
        templates=[Choice(name, name.replace("_", " ").title()) for name in templates],
        billing_methods=[Choice(m.value, m.value.replace("_", " ").title()) for m in mapping.billing_methods],
        subsidiaries=[
            Choice(code, f"{s.entity.name} (subsidiary {s.entity.subsidiary})")
            for code, s in mapping.legal_entities.items()
        ],
        payment_terms=[Choice(code, f"{code} ({t.days} days)") for code, t in mapping.payment_terms.items()],
        project_managers=people,
    )
