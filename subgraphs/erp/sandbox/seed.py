"""Seed the sandbox from the demo firm: the parts the ERP owns, with the ids ``generate_firm`` assigned.

Day-one records carry no external id (they predate the gateway). Bulk inserts keep a 10,000-account firm
to a few seconds.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from canonical.enums import BillingMethod
from canonical.mapping import demo_mapping
from subgraphs.demo import LABOUR, LEGAL_ENTITIES, Firm
from subgraphs.erp.mapping import job_billing_type
from subgraphs.erp.sandbox.state import Body, Store

CURRENCY_IDS = {"USD": 1, "EUR": 2, "GBP": 3}
SERVICE_ITEM_BASE = 200
#: ``jobBillingType`` of the seeded jobs by billing method: the demo firm's mapping set decides (fixed fee
#: and milestone → fixed-bid milestone, retainer and subscription → fixed-bid interval), the same table
#: the gateway's ``job_body`` writes with — no second table here to drift from it.
JOB_BILLING_TYPE = {method.value: job_billing_type(method, demo_mapping()) for method in BillingMethod}
SCHEDULE_TYPE = {
    "FIXED_FEE": "fixedFee",
    "MILESTONE": "milestone",
    "RETAINER": "retainer",
    "SUBSCRIPTION": "subscription",
}


def ref(id_: int | str | None) -> dict[str, str] | None:
    return None if id_ is None else {"id": str(id_)}


def money(value: Decimal) -> float:
    return float(value)


def seed_reference(store: Store) -> None:
    """Subsidiaries, currencies and service items exist even in an empty sandbox."""
    store.bulk_insert(
        "currency", [(i, code, {"symbol": code, "name": code}) for code, i in CURRENCY_IDS.items()]
    )
    store.bulk_insert(
        "subsidiary",
        [
            (
                int(str(e["subsidiary"])),
                code,
                {
                    "name": e["name"],
                    "currency": ref(CURRENCY_IDS[str(e["currency"])]),
                    "country": e["country"],
                },
            )
            for code, e in LEGAL_ENTITIES.items()
        ],
    )
    store.bulk_insert(
        "serviceItem",
        [
            (
                SERVICE_ITEM_BASE + i,
                None,
                {"itemId": _item_code(cat), "displayName": cat, "itemType": "Service", "rate": money(bill)},
            )
            for i, (cat, (bill, _cost)) in enumerate(LABOUR.items())
        ],
    )


def _item_code(category: str) -> str:
    return "SVC-" + category.upper().replace(" ", "-")


def service_item_id(category: str) -> int:
    return SERVICE_ITEM_BASE + list(LABOUR).index(category)


def seed_firm(store: Store, firm: Firm) -> None:
    entities = firm.legal_entities
    sub = {code: int(str(e["subsidiary"])) for code, e in entities.items()}
    store.bulk_insert(
        "employee",
        [
            (
                e.erp_employee_id,
                None,
                {
                    "entityId": e.name,
                    "email": e.email,
                    "subsidiary": ref(sub[e.legal_entity]),
                    "title": e.labour_category,
                    "laborCost": money(e.cost_rate),
                },
            )
            for e in firm.employees
        ],
    )

    customers: list[tuple[int, str | None, Body]] = []
    for a in firm.accounts:
        if a.erp_customer_id is not None:
            customers.append((a.erp_customer_id, None, _customer(a, sub)))
    for erp_id, index in firm.duplicate_erp_customers:
        customers.append((erp_id, None, _customer(firm.accounts[index], sub)))
    store.bulk_insert("customer", customers)

    jobs: list[tuple[int, str | None, Body]] = []
    tasks: list[tuple[int, str | None, Body]] = []
    schedules: list[tuple[int, str | None, Body]] = []
    for n, p in enumerate(firm.projects):
        acc = firm.accounts[p.account_index]
        jobs.append(
            (
                p.erp_job_id,
                None,
                {
                    "entityId": p.code,
                    "companyName": p.name,
                    "parent": ref(acc.erp_customer_id),
                    "jobBillingType": JOB_BILLING_TYPE[p.billing_method],
                    "custentity_p2c_billing_method": p.billing_method,
                    "status": "inProgress" if p.is_active else "closed",
                    "startDate": p.starts_on.isoformat(),
                    "projectedEndDate": p.ends_on.isoformat(),
                    "currency": ref(CURRENCY_IDS[p.currency]),
                    "subsidiary": ref(sub[acc.legal_entity]),
                    "custentity_business_line": p.business_line,
                    "projectedBudget": money(p.budget_amount),
                },
            )
        )
        tasks.extend(
            (
                t.erp_task_id,
                None,
                {
                    "company": ref(p.erp_job_id),
                    "title": t.name,
                    "status": "progress" if t.is_open else "completed",
                    "isMilestone": False,
                },
            )
            for t in p.tasks
        )
        schedule = _schedule(p, firm)
        if schedule is not None:
            schedules.append((70000 + n, None, schedule))
    store.bulk_insert("job", jobs)
    store.bulk_insert("projectTask", tasks)
    store.bulk_insert("billingSchedule", schedules)

    by_index = {e.index: e for e in firm.employees}
    store.bulk_insert(
        "timeBill",
        [
            (
                t.erp_time_bill_id,
                None,
                {
                    "employee": ref(by_index[t.employee_index].erp_employee_id),
                    "customer": ref(firm.project(t.project_code).erp_job_id),
                    "tranDate": t.spent_date.isoformat(),
                    "hours": money(t.hours),
                    "rate": money(t.billable_rate),
                    "isBillable": t.billable,
                    "billed": t.is_billed,
                    "item": ref(service_item_id(by_index[t.employee_index].labour_category)),
                    "approvalStatus": "approved",
                    "subsidiary": ref(sub[by_index[t.employee_index].legal_entity]),
                    "memo": t.notes,
                },
            )
            for t in firm.time_entries
            if t.erp_time_bill_id is not None
        ],
    )
    store.bulk_insert(
        "expenseReport",
        [
            (
                x.erp_expense_report_id,
                None,
                {
                    "entity": ref(by_index[x.employee_index].erp_employee_id),
                    "job": ref(firm.project(x.project_code).erp_job_id),
                    "tranDate": x.spent_date.isoformat(),
                    "total": money(x.total_cost),
                    "memo": x.category,
                    "isBillable": x.billable,
                    "currency": ref(CURRENCY_IDS[firm.project(x.project_code).currency]),
                },
            )
            for x in firm.expenses
            if x.erp_expense_report_id is not None
        ],
    )
    _seed_receivables(store, firm, sub)
    store.bulk_insert(
        "accountingPeriod",
        [
            (
                p.erp_id,
                None,
                {
                    "periodName": p.name,
                    "startDate": p.start.isoformat(),
                    "endDate": p.end.isoformat(),
                    "closed": p.closed,
                },
            )
            for p in firm.periods
        ],
    )
    store.bulk_insert(
        "currencyRate",
        [
            (
                i + 1,
                None,
                {
                    "baseCurrency": base,
                    "transactionCurrency": quote,
                    "exchangeRate": float(rate),
                    "effectiveDate": on.isoformat(),
                },
            )
            for i, (on, base, quote, rate) in enumerate(firm.rates)
        ],
    )


def _customer(a: Any, sub: dict[str, int]) -> Body:
    return {
        "entityId": a.account_number,
        "accountNumber": a.account_number,
        "companyName": a.name,
        "subsidiary": ref(sub[a.legal_entity]),
        "currency": ref(CURRENCY_IDS[a.currency]),
        "terms": ref(2),
        "vatRegNumber": a.tax_id,
        "isInactive": False,
        "custentity_industry": a.industry,
        "defaultBillingAddress": {
            "addr1": a.street,
            "city": a.city,
            "zip": a.postal_code,
            "country": a.country,
        },
    }


def _schedule(p: Any, firm: Firm) -> Body | None:
    if p.billing_method == "TIME_AND_MATERIALS":
        return None
    body: Body = {
        "job": ref(p.erp_job_id),
        "scheduleType": SCHEDULE_TYPE[p.billing_method],
        "name": f"{p.code} billing",
        "currency": ref(CURRENCY_IDS[p.currency]),
    }
    if p.milestones:
        body["milestones"] = [
            {
                "id": str(m.erp_id),
                "name": m.name,
                "amount": money(m.amount),
                "dueDate": m.due_date.isoformat(),
                "completed": m.completed,
                "billed": m.completed,
            }
            for m in p.milestones
        ]
    if p.billing_method in ("RETAINER", "SUBSCRIPTION"):
        start = p.starts_on.replace(day=1)
        billed, month = [], start
        while month < firm.as_of.replace(day=1):
            billed.append(month.strftime("%Y-%m"))
            month = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
        body["recurrence"] = {
            "amount": money((p.budget_amount / 12).quantize(Decimal("0.01"))),
            "startDate": start.isoformat(),
            "endDate": p.ends_on.isoformat(),
            "frequency": "monthly",
            "inArrears": p.billing_method == "RETAINER",
        }
        body["billedPeriods"] = billed
    return body


def _seed_receivables(store: Store, firm: Firm, sub: dict[str, int]) -> None:
    invoices: list[tuple[int, str | None, Body]] = []
    payments: list[tuple[int, str | None, Body]] = []
    credits: list[tuple[int, str | None, Body]] = []
    for inv in firm.invoices:
        acc = firm.accounts[inv.account_index]
        project = firm.project(inv.project_code)
        status = {"PAID": "paidInFull", "PARTIALLY_PAID": "partiallyPaid"}.get(inv.status, "open")
        invoices.append(
            (
                inv.erp_id,
                None,
                {
                    "tranId": inv.number,
                    "entity": ref(acc.erp_customer_id),
                    "job": ref(project.erp_job_id),
                    "tranDate": inv.tran_date.isoformat(),
                    "dueDate": inv.due_date.isoformat(),
                    "currency": ref(CURRENCY_IDS[inv.currency]),
                    "total": money(inv.total),
                    "amountPaid": money(inv.amount_paid),
                    "amountRemaining": money(inv.amount_remaining),
                    "status": status,
                    "subsidiary": ref(sub[acc.legal_entity]),
                },
            )
        )
        for pay in inv.payments:
            payments.append(
                (
                    pay.erp_id,
                    None,
                    {
                        "customer": ref(acc.erp_customer_id),
                        "tranDate": pay.tran_date.isoformat(),
                        "payment": money(pay.amount),
                        "currency": ref(CURRENCY_IDS[pay.currency]),
                        "status": "deposited",
                        "apply": {"items": [{"doc": ref(inv.erp_id), "amount": money(pay.amount)}]},
                    },
                )
            )
        for erp_id, amount in inv.credit_memos:
            credits.append(
                (
                    erp_id,
                    None,
                    {
                        "entity": ref(acc.erp_customer_id),
                        "tranDate": inv.tran_date.isoformat(),
                        "total": money(amount),
                        "currency": ref(CURRENCY_IDS[inv.currency]),
                        "status": "applied",
                        "apply": {"items": [{"doc": ref(inv.erp_id), "amount": money(amount)}]},
                    },
                )
            )
    store.bulk_insert("invoice", invoices)
    store.bulk_insert("customerPayment", payments)
    store.bulk_insert("creditMemo", credits)
