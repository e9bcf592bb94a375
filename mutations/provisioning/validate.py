"""Read a deal and check its master data before anything is written; every problem is reported at once.

``read_deal`` is three CRM reads (opportunity, lines, account). ``check`` reads ERP reference data (cached)
and the PSA clients, and answers ``(plan, problems)``: a ``Plan`` only when there is no problem. Field
names say which record is wrong: ``account.BillingStreet``, ``opportunity.lines[2].ProductCode``,
``input.payment_terms`` ...

The ERP's master data is the entity's ERP's (``deps.tryton_for``): NetSuite's reference data, or Tryton's
(``provisioning.tryton.MasterData``: company, currencies, employees, products, payment terms) for an
entity that books in Tryton — behind one small ``MasterData`` protocol, so every rule is written once and
a case that is the same on both ERPs gets the same field and code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Protocol

from canonical.entities import Account, LegalEntity, Opportunity
from canonical.enums import BillingMethod, OpportunityStage
from canonical.errors import GatewayError, NotFound, Problem
from canonical.mapping import MappingMissing, PaymentTerms, ProjectTemplate, ScheduleKind
from mutations.deps import FlowDeps
from mutations.identity import account_id_of
from mutations.provisioning.plan import (
    EngagementInput,
    Ids,
    Plan,
    rate_card,
    schedule_and_milestones,
    tasks_of,
)
from store.repositories import CrossReferenceRepo, fingerprint
from subgraphs.crm.mapping import account_from_wire, opportunity_from_wire
from subgraphs.erp.refdata import Reference


class MasterData(Protocol):
    """The ERP master data validation checks a deal against."""

    def entity_missing(self, entity: LegalEntity) -> str | None: ...
    def currency_known(self, code: str) -> bool: ...
    def rate(self, base: str, quote: str, on: date) -> Decimal | None: ...
    def employee_known(self, key: str) -> bool: ...
    def product_known(self, code: str) -> bool: ...
    def terms_known(self, terms: PaymentTerms) -> bool: ...


@dataclass(frozen=True)
class NetSuiteData:
    """NetSuite's reference data; products and terms are the mapping's ERP ids, checked by the mapping."""

    reference: Reference

    def entity_missing(self, entity: LegalEntity) -> str | None:
        if self.reference.subsidiary_id(entity.code) is None:
            return f"subsidiary of {entity.code} does not exist in the ERP"
        return None

    def currency_known(self, code: str) -> bool:
        return self.reference.currency_id(code) is not None

    def rate(self, base: str, quote: str, on: date) -> Decimal | None:
        return self.reference.rate(base, quote, on)

    def employee_known(self, key: str) -> bool:
        return key in self.reference.employees

    def product_known(self, code: str) -> bool:
        return True

    def terms_known(self, terms: PaymentTerms) -> bool:
        return True


async def master_data(deps: FlowDeps, legal_entity: str | None) -> MasterData:
    """The master data of the ERP that books ``legal_entity`` (NetSuite when unknown)."""
    tryton = deps.tryton_for(legal_entity)
    if tryton is not None:
        from mutations.provisioning.tryton import MasterData as TrytonData

        return await TrytonData.load(tryton)
    return NetSuiteData(await deps.erp.reference_data())


CHANGE_ORDER = "Change Order"
ADDRESS_FIELDS = ("BillingStreet", "BillingCity", "BillingPostalCode", "BillingCountry")


@dataclass(frozen=True)
class Deal:
    opportunity: dict[str, Any]
    lines: list[dict[str, Any]]
    account: dict[str, Any]

    @property
    def crm_id(self) -> str:
        return str(self.opportunity["Id"])

    @property
    def is_change_order(self) -> bool:
        return self.opportunity.get("Type") == CHANGE_ORDER

    def fingerprint(self) -> str:
        """What was sold: provisioning stores it, and a deal that differs later needs an amendment."""
        o = self.opportunity
        return fingerprint(
            {
                "amount": str(o.get("Amount")),
                "currency": o.get("CurrencyIsoCode"),
                "billingMethod": o.get("Billing_Method__c"),
                "businessLine": o.get("Business_Line__c"),
                "lines": sorted(
                    (
                        str(ln.get("ProductCode")),
                        str(ln.get("Quantity")),
                        str(ln.get("UnitPrice")),
                        str(ln.get("ServiceDate")),
                    )
                    for ln in self.lines
                ),
            }
        )


async def read_deal(deps: FlowDeps, opportunity_crm_id: str) -> Deal:
    found = await deps.crm.opportunities_by_ids([opportunity_crm_id])
    if not found:
        raise NotFound("opportunity", opportunity_crm_id)
    opportunity = dict(found[0])
    lines = [dict(r) for r in await deps.crm.lines_for_opportunities([opportunity_crm_id])]
    accounts = await deps.crm.accounts_by_ids([str(opportunity.get("AccountId"))])
    return Deal(opportunity, lines, dict(accounts[0]) if accounts else {})


def _missing(problems: list[Problem], record: dict[str, Any], prefix: str, *names: str) -> None:
    for name in names:
        if record.get(name) in (None, ""):
            problems.append(Problem(f"{prefix}.{name}", "is required", "MISSING"))


async def psa_client_for(deps: FlowDeps, account_id: str, name: str | None) -> int | None:
    """The account's PSA client: the store's cross-reference, else the one client with its exact name."""
    async with deps.sessionmaker() as session:
        linked = (await CrossReferenceRepo(session).system_ids_for("psa", [account_id])).get(account_id)
    if linked is not None:
        return int(linked)
    named = [c for c in await deps.psa.clients() if c.get("name") == name]
    return int(named[0]["id"]) if len(named) == 1 else None


def check_commercials(deal: Deal, problems: list[Problem]) -> Opportunity | None:
    """Stage, amount and lines, then the canonical opportunity (None when it cannot be built)."""
    o = deal.opportunity
    if o.get("StageName") != OpportunityStage.CLOSED_WON.value:
        problems.append(
            Problem("opportunity.StageName", f"is {o.get('StageName')!r}, not Closed Won", "NOT_CLOSED_WON")
        )
    _missing(problems, o, "opportunity", "CurrencyIsoCode", "CloseDate")
    if not o.get("Amount"):
        problems.append(Problem("opportunity.Amount", "must not be zero", "ZERO_AMOUNT"))
    if not deal.lines:
        problems.append(Problem("opportunity.lines", "needs at least one priced line item", "MISSING"))
    for n, line in enumerate(deal.lines):
        if not line.get("UnitPrice"):
            problems.append(Problem(f"opportunity.lines[{n}].UnitPrice", "must be priced", "MISSING"))
    try:
        return opportunity_from_wire(o, deal.lines)  # type: ignore[arg-type]
    except (GatewayError, ValueError) as exc:
        if not problems:
            problems.append(Problem("opportunity", str(exc), "INVALID"))
        return None


async def check(deps: FlowDeps, deal: Deal, input: EngagementInput) -> tuple[Plan | None, list[Problem]]:
    mapping, problems = deps.mapping, list[Problem]()
    o, a, over = deal.opportunity, deal.account, input.overrides
    opportunity = check_commercials(deal, problems)

    # --- account master data ---------------------------------------------------------------------------
    if not a:
        problems.append(Problem("opportunity.AccountId", "names no account", "MISSING"))
    entity_code = over.legal_entity or a.get("Legal_Entity__c")
    entity = None
    if not entity_code:
        problems.append(Problem("account.Legal_Entity__c", "is required", "MISSING"))
    else:
        try:
            entity = mapping.legal_entity(str(entity_code))
        except MappingMissing:
            problems.append(
                Problem("account.Legal_Entity__c", f"unknown legal entity {entity_code!r}", "MAPPING_MISSING")
            )
    erp = await master_data(deps, entity.code if entity is not None else None)
    if entity is not None:
        gone = erp.entity_missing(entity)
        if gone is not None:
            problems.append(Problem("account.Legal_Entity__c", gone, "INVALID"))
    _missing(problems, a, "account", "Name", "CurrencyIsoCode", *ADDRESS_FIELDS)
    if entity is not None and entity.requires_tax_id and not a.get("Tax_Id__c"):
        problems.append(
            Problem("account.Tax_Id__c", f"{entity.code} requires the {entity.tax_id_label}", "MISSING")
        )
    currency = o.get("CurrencyIsoCode")
    if currency and not erp.currency_known(str(currency)):
        problems.append(
            Problem("opportunity.CurrencyIsoCode", f"{currency} is not an ERP currency", "INVALID")
        )
    close = date.fromisoformat(str(o["CloseDate"])) if o.get("CloseDate") else None
    rate = None
    if entity is not None and currency and close is not None:
        rate = erp.rate(str(currency), entity.currency, close)
        if rate is None:
            problems.append(
                Problem(
                    "opportunity.CurrencyIsoCode",
                    f"no {currency}/{entity.currency} rate on {close}",
                    "NO_RATE",
                )
            )

    # --- commercial terms and mapping ---------------------------------------------------------------------
    method_name = over.billing_method or o.get("Billing_Method__c")
    method = rule = None
    if not method_name:
        problems.append(Problem("opportunity.Billing_Method__c", "is required", "MISSING"))
    else:
        try:
            rule = mapping.billing_rule(str(method_name))
            method = BillingMethod(str(method_name))
        except MappingMissing:
            field = (
                "input.overrides.billing_method" if over.billing_method else "opportunity.Billing_Method__c"
            )
            problems.append(Problem(field, f"no billing rule for {method_name!r}", "MAPPING_MISSING"))
    line_name = o.get("Business_Line__c") or a.get("Business_Line__c")
    business_line = template = None
    try:
        business_line = mapping.business_line(str(line_name)) if line_name else None
        if business_line is None:
            problems.append(Problem("opportunity.Business_Line__c", "is required", "MISSING"))
        elif input.template is not None:
            template = mapping.project_templates.get(input.template)
            if template is None:
                problems.append(Problem("input.template", f"unknown template {input.template!r}", "INVALID"))
        else:
            template = mapping.project_template(business_line.name)
    except MappingMissing as exc:
        problems.append(Problem("opportunity.Business_Line__c", exc.message, "MAPPING_MISSING"))
    if template is not None and rule is not None and method is not BillingMethod.MILESTONE:
        if rule.schedule.kind is ScheduleKind.MILESTONE and not template.milestones:
            problems.append(
                Problem("input.template", f"{template.name} has no milestones", "MAPPING_MISSING")
            )
        if rule.schedule.kind is not ScheduleKind.MILESTONE:
            template = ProjectTemplate(template.name, template.tasks, ())
    for n, line in enumerate(deal.lines):
        code = line.get("ProductCode")
        if not code or code not in mapping.service_items:
            problems.append(
                Problem(
                    f"opportunity.lines[{n}].ProductCode", f"no service item for {code!r}", "MAPPING_MISSING"
                )
            )
        elif method is BillingMethod.MILESTONE and not line.get("ServiceDate"):
            problems.append(
                Problem(f"opportunity.lines[{n}].ServiceDate", "a milestone needs a date", "MISSING")
            )
        if code and code in mapping.service_items and not erp.product_known(str(code)):
            problems.append(
                Problem(f"opportunity.lines[{n}].ProductCode", f"{code!r} is not an ERP product", "INVALID")
            )
    terms_code = over.payment_terms or (
        mapping.entity_settings(entity.code).payment_terms if entity else None
    )
    terms = mapping.payment_terms.get(terms_code) if terms_code else None
    if terms_code and terms is None:
        problems.append(
            Problem("input.overrides.payment_terms", f"unknown payment terms {terms_code!r}", "INVALID")
        )
    elif terms is not None and not erp.terms_known(terms):
        problems.append(
            Problem(
                "input.overrides.payment_terms",
                f"payment terms {terms.code!r} do not exist in the ERP",
                "INVALID",
            )
        )
    if input.project_manager is not None and not erp.employee_known(input.project_manager):
        problems.append(
            Problem("input.project_manager", f"no ERP employee {input.project_manager!r}", "INVALID")
        )
    if template is not None:
        for name in template.tasks:  # a task's labour category names the product its time is billed at
            category = mapping.tasks[name].labour_category if name in mapping.tasks else None
            product = mapping.labour_categories.get(category) if category else None
            if product and not erp.product_known(product):
                problems.append(
                    Problem(
                        f"input.template.tasks[{name}]",
                        f"labour category {category!r} bills product {product!r}, not an ERP product",
                        "INVALID",
                    )
                )

    # --- the PSA side ---------------------------------------------------------------------------------
    account_id = account_id_of(a) if a else ""
    client = await psa_client_for(deps, account_id, a.get("Name")) if a else None
    if a and client is None:
        problems.append(
            Problem("account.Name", "no PSA client (by cross-reference or exact name)", "MISSING")
        )

    if problems:
        return None, problems
    if (
        opportunity is None
        or entity is None
        or method is None
        or rule is None
        or business_line is None
        or template is None
        or terms is None
        or close is None
        or client is None
    ):
        raise RuntimeError("validation passed without a complete deal")  # unreachable: each adds a problem
    account: Account = account_from_wire(a)  # type: ignore[arg-type]
    ids = Ids(deal.crm_id, opportunity.id, str(a["Id"]), account_id)
    lines = opportunity.lines
    start = input.start_date or min((ln.service_date for ln in lines if ln.service_date), default=close)
    schedule, milestones, end = schedule_and_milestones(
        ids, method, rule, template, opportunity.amount, lines, start
    )
    plan = Plan(
        ids=ids,
        name=str(o.get("Name")),
        account=account,
        erp_customer_hint=a.get("ERP_Customer_Id__c"),
        psa_client_id=client,
        legal_entity=entity,
        business_line=business_line,
        method=method,
        rule=rule,
        template=template,
        terms=terms,
        value=opportunity.amount,
        lines=lines,
        close_date=close,
        start=start,
        end=end,
        exchange_rate=rate if rate != 1 else None,
        schedule=schedule,
        rate_card=rate_card(lines, mapping) if method is BillingMethod.TIME_AND_MATERIALS else (),
        tasks=tasks_of(ids, template, mapping),
        milestones=milestones,
        project_manager=input.project_manager,
        billing_contact=input.billing_contact,
        fingerprint=deal.fingerprint(),
    )
    return plan, problems
