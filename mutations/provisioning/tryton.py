"""Provisioning for a legal entity that books in Tryton: the ERP steps of ``provision.py`` on Tryton.

The CRM, the PSA and the plan are the same as for NetSuite; only the ERP writes differ:

    tryton:party:<account id>      party.party, ``code`` = the canonical account id (found by it first)
    tryton:project:<project id>    project.work with its tasks in one create (atomic in Tryton), found first
                                   by ``comment`` ("p2c:<project id>", then tags such as the business line);
                                   the invoice method comes from the billing method (T&M → timesheet,
                                   fixed fee → effort, milestone → progress)

Tryton has no external-id upsert, so each write searches by our reference before it creates; the step
record makes a finished step never run again. Tryton has no sales order or billing schedule in these
modules: the project itself is the contract and its invoice method the schedule, so the result names the
project for both. Cross-references use the system name ``tryton``.

Validation (``validate.check``) asks ``MasterData.load`` instead of NetSuite's reference data: the company
of the connector, its currencies and rates, employees (by id or e-mail), the service products by code and
the payment terms by name — what the steps above look up, so a deal they could not provision honestly (a
missing product used to fall back to any product, a missing term to none) is refused before anything is
written, with the codes NetSuite's validation uses (``INVALID`` for master data the ERP lacks).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from canonical.entities import LegalEntity
from canonical.enums import BillingMethod
from canonical.ids import step_key
from canonical.mapping import PaymentTerms
from mutations.deps import FlowDeps
from mutations.governance import FlowRunner
from mutations.identity import ACCOUNT, PROJECT
from mutations.provisioning import steps
from mutations.provisioning.outcomes import ProvisionResult
from mutations.provisioning.plan import Plan
from store.repositories import CrossReferenceRepo
from subgraphs.erp_tryton.client import TrytonClient
from subgraphs.erp_tryton.errors import TrytonRejected
from subgraphs.erp_tryton.mapping import (
    effort_and_price,
    party_values,
    project_values,
    reference_domain,
    task_values,
)

SYSTEM = "tryton"
PREFIX = "tryton:"  # on CRM fields that hold an ERP id, so a NetSuite id and a Tryton id never mix


def keys(plan: Plan) -> dict[str, str]:
    k = steps.keys(plan)
    k.update(
        customer=step_key(SYSTEM, "party", plan.ids.account_id),
        job=step_key(SYSTEM, "project", plan.ids.project_id),
    )
    return k


@dataclass(frozen=True)
class MasterData:
    """Tryton's master data as provisioning needs it (one load per validation; products and employees come
    from the connector's reference cache)."""

    company: Mapping[str, Any] | None  # the connector's company: name, currency
    currencies: frozenset[str]
    rates: Mapping[str, list[tuple[date, Decimal]]]  # currency → (date, rate) newest first
    employees: frozenset[str]  # ids and e-mails
    products: frozenset[str]
    terms: frozenset[str]

    @classmethod
    async def load(cls, client: TrytonClient) -> MasterData:
        try:
            rows = await client.read(
                "company.company", [client.config.company], ["currency.code", "rec_name"]
            )
        except TrytonRejected:  # a company id that is not there: Tryton refuses the read
            rows = []
        if not rows:  # every other read is in that company's context and would be refused too
            return cls(None, frozenset(), {}, frozenset(), frozenset(), frozenset())
        currencies = await client.search_all("currency.currency", [], ["code"])
        codes = {int(c["id"]): str(c["code"]) for c in currencies}
        rates: dict[str, list[tuple[date, Decimal]]] = {}
        for r in await client.search_all("currency.currency.rate", [], ["currency", "date", "rate"]):
            rates.setdefault(codes.get(int(r["currency"]), ""), []).append((r["date"], Decimal(r["rate"])))
        employees = await client.employees()
        terms = await client.search_all("account.invoice.payment_term", [], ["name"])
        return cls(
            company=rows[0] if rows else None,
            currencies=frozenset(codes.values()),
            rates={c: sorted(found, reverse=True) for c, found in rates.items()},
            employees=frozenset([*employees, *(str(i) for i in employees.values())]),
            products=frozenset(await client.products()),
            terms=frozenset(str(t["name"]) for t in terms),
        )

    def entity_missing(self, entity: LegalEntity) -> str | None:
        if self.company is None:
            return f"the Tryton company of {entity.code} does not exist in Tryton"
        currency = str((self.company.get("currency.") or {}).get("code") or "")
        if currency != entity.currency:
            return f"the Tryton company of {entity.code} keeps its books in {currency}, not {entity.currency}"
        return None

    # Without its company nothing else of Tryton can be judged: the entity's problem is the one reported.

    def currency_known(self, code: str) -> bool:
        return self.company is None or code in self.currencies

    def _rate(self, currency: str, on: date) -> Decimal | None:
        return next((rate for day, rate in self.rates.get(currency, []) if day <= on), None)

    def rate(self, base: str, quote: str, on: date) -> Decimal | None:
        """Units of ``quote`` per ``base`` on ``on`` (Tryton keeps each currency's rate to the same unit)."""
        if base == quote or self.company is None:
            return Decimal(1)
        from_rate, to_rate = self._rate(base, on), self._rate(quote, on)
        return None if not from_rate or to_rate is None else to_rate / from_rate

    def employee_known(self, key: str) -> bool:
        return self.company is None or key.lower() in self.employees or key in self.employees

    def product_known(self, code: str) -> bool:
        return self.company is None or code in self.products

    def terms_known(self, terms: PaymentTerms) -> bool:
        return self.company is None or terms.code in self.terms


async def _link(deps: FlowDeps, canonical: str, entity: str, system_id: str, plan: Plan) -> None:
    async with deps.sessionmaker.begin() as session:
        await CrossReferenceRepo(session, clock=deps.clock).link(
            canonical, entity, SYSTEM, system_id, legal_entity=plan.legal_entity.code
        )


async def party(deps: FlowDeps, client: TrytonClient, plan: Plan) -> Mapping[str, Any]:
    account_id = plan.ids.account_id
    async with deps.sessionmaker() as session:
        linked = (await CrossReferenceRepo(session).system_ids_for(SYSTEM, [account_id])).get(account_id)
    hint = plan.erp_customer_hint or ""
    candidates = [("cross_reference", linked), ("crm_erp_id", hint.removeprefix(PREFIX) if hint else None)]
    found: tuple[int, str] | None = None
    for rule, tryton_id in candidates:
        if tryton_id and str(tryton_id).isdigit():
            rows = await client.search_read("party.party", [["id", "=", int(tryton_id)]], ["code"])
            if rows:
                found = (int(rows[0]["id"]), rule)
                break
    if found is None:
        rows = await client.search_read("party.party", [["code", "=", account_id]], ["id"], limit=1)
        if rows:
            found = (int(rows[0]["id"]), "external_id")
    if found is None:
        terms = await client.search_read(
            "account.invoice.payment_term", [["name", "=", plan.terms.code]], ["id"], limit=1
        )
        values = party_values(plan.account, int(terms[0]["id"]) if terms else None)
        (party_id,) = await client.create("party.party", [values])
        found = (party_id, "created")
    await _link(deps, account_id, ACCOUNT, str(found[0]), plan)
    return {"erp_id": str(found[0]), "reused": found[1] != "created", "matched_by": found[1]}


async def _product(
    client: TrytonClient, plan: Plan, deps: FlowDeps, category: str | None
) -> tuple[int, Decimal]:
    products = await client.products()
    code = deps.mapping.labour_categories.get(category or "") if category else None
    code = code or (plan.lines[0].product_code if plan.lines else next(iter(products)))
    product = products.get(code) or next(iter(products.values()))
    rates = {r.labour_category: r.rate.amount for r in plan.rate_card}
    price = rates.get(category or "") if category else None
    return int(product["id"]), Decimal(price if price is not None else product.get("list_price") or 0)


async def project(deps: FlowDeps, client: TrytonClient, plan: Plan, party_id: str) -> Mapping[str, Any]:
    code = steps.project_code(plan)
    existing = await client.search_read(
        "project.work",
        [reference_domain(plan.ids.project_id), ["type", "=", "project"]],
        ["children"],
        limit=1,
    )
    if existing:
        project_id = int(existing[0]["id"])
    else:
        canonical = steps.canonical_project(plan)
        product, price = await _product(client, plan, deps, None)
        effort: timedelta | None = None
        if plan.method is BillingMethod.TIME_AND_MATERIALS:
            price = plan.lines[0].unit_price.amount if plan.lines else price
        else:
            effort, price = effort_and_price(plan.value, sum((ln.quantity for ln in plan.lines), Decimal(0)))
        tasks = []
        for task in plan.tasks:
            task_product, task_price = await _product(client, plan, deps, task.labour_category)
            tasks.append(
                task_values(task.name, task.id, task_product, task_price, start=plan.start, end=plan.end)
            )
        for m in plan.milestones:  # progress invoicing: each milestone is a task worth its amount
            hours = (m.amount.amount / price) if m.amount is not None and price else Decimal(0)
            tasks.append(
                task_values(
                    m.name,
                    m.id,
                    product,
                    price,
                    start=plan.start,
                    end=plan.end,
                    effort=timedelta(hours=float(hours)),
                )
            )
        values = project_values(canonical, int(party_id), product, price, tasks, effort=effort)
        (project_id,) = await client.create("project.work", [values])
    (row,) = await client.read("project.work", [project_id], ["children.name", "children.timesheet_works"])
    children = {str(c["name"]): int(c["id"]) for c in row.get("children.") or []}
    await _link(deps, plan.ids.project_id, PROJECT, str(project_id), plan)
    return {"erp_id": str(project_id), "code": code, "task_ids": children}


async def run(deps: FlowDeps, client: TrytonClient, runner: FlowRunner, plan: Plan) -> ProvisionResult:
    k = keys(plan)

    def step(name: str, action: Callable[[], Awaitable[Mapping[str, Any]]]) -> Awaitable[dict[str, Any]]:
        return runner.step(name, k[name], action)

    customer = await step("customer", lambda: party(deps, client, plan))
    party_id = str(customer["erp_id"])
    job = await step("job", lambda: project(deps, client, plan, party_id))
    project_id = str(job["erp_id"])
    # Tryton has no contract or billing schedule records: the project carries the invoicing method.
    records = steps.ErpRecords(
        customer=customer,
        customer_id=party_id,
        job_id=project_id,
        contract_id=project_id,
        schedule_id=project_id,
        project_code=str(job["code"]),
        crm_customer_ref=PREFIX + party_id,
        crm_project_ref=PREFIX + project_id,
        account_changed=plan.erp_customer_hint != PREFIX + party_id,
    )
    return await steps.finish(deps, runner, plan, step, records)
