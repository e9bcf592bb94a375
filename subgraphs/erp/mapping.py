"""NetSuite records ⇄ canonical entities.

Readers accept a REST record or a SuiteQL row (see ``wire``). Writers produce the body for ``upsert``;
every body carries the canonical id as ``externalId`` so a retried write upserts instead of duplicating.
Ids of records first seen in NetSuite are ``canonical_id("erp", <type>, <internal id>)``; ids of records we
wrote are their external id. Internal ids of referenced records (customer, job, employee, item) are
resolved by the caller (cross-references in the store) and passed in: mapping does no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal

from canonical.entities import (
    Account,
    AccountingPeriod,
    Address,
    BillingEvent,
    BillingSchedule,
    CreditMemo,
    Invoice,
    Payment,
    PaymentApplication,
    Project,
    Recurrence,
    Task,
    TimeEntry,
)
from canonical.enums import (
    ApprovalStatus,
    BillingMethod,
    InvoiceStatus,
    PaymentStatus,
    PostingStatus,
    ProjectStatus,
    TaskStatus,
)
from canonical.ids import canonical_id
from canonical.mapping import ErpBillingType, MappingSet, demo_mapping
from canonical.money import Money
from subgraphs.erp.refdata import Reference
from subgraphs.erp.wire import (
    CreditMemoBody,
    CustomerBody,
    JobBody,
    PaymentBody,
    Record,
    TimeBillBody,
    boolean,
    day,
    decimal,
    field,
    ref_id,
    text,
)

#: NetSuite ``job.jobBillingType`` values by the mapping file's code. Which code a billing method gets is
#: the firm's choice, made in its mapping set (``billing_methods.<method>.erp_billing_type``) — there is
#: no second table here to disagree with it.
JOB_BILLING_TYPE_VALUE = {
    ErpBillingType.CHARGE_BASED: "chargeBased",
    ErpBillingType.FIXED_BID_INTERVAL: "fixedBidInterval",
    ErpBillingType.FIXED_BID_MILESTONE: "fixedBidMilestone",
    ErpBillingType.TIME_AND_MATERIALS: "timeAndMaterials",
}


def job_billing_type(method: BillingMethod, mapping: MappingSet | None = None) -> str:
    """The ``jobBillingType`` of a job billed by ``method`` under ``mapping`` (default: the demo firm's)."""
    return JOB_BILLING_TYPE_VALUE[(mapping or demo_mapping()).erp_billing_type(method)]


def billing_method_of_job_type(value: str, mapping: MappingSet | None = None) -> BillingMethod | None:
    """The billing method a ``jobBillingType`` stands for, when only one method maps to it (several may:
    fixed fee and milestone are both fixed-bid milestone in the demo mapping) — else None."""
    mapping = mapping or demo_mapping()
    methods = [
        m for m in BillingMethod if m in mapping.billing_methods and job_billing_type(m, mapping) == value
    ]
    return methods[0] if len(methods) == 1 else None


SCHEDULE_TYPE = {
    BillingMethod.FIXED_FEE: "fixedFee",
    BillingMethod.MILESTONE: "milestone",
    BillingMethod.RETAINER: "retainer",
    BillingMethod.SUBSCRIPTION: "subscription",
    BillingMethod.TIME_AND_MATERIALS: "timeAndMaterials",
}
JOB_STATUS = {
    ProjectStatus.PLANNED: "notStarted",
    ProjectStatus.ACTIVE: "inProgress",
    ProjectStatus.ON_HOLD: "onHold",
    ProjectStatus.CLOSED: "closed",
}
INVOICE_STATUS = {
    "open": InvoiceStatus.OPEN,
    "partiallyPaid": InvoiceStatus.PARTIALLY_PAID,
    "paidInFull": InvoiceStatus.PAID,
    "voided": InvoiceStatus.VOIDED,
    "draft": InvoiceStatus.DRAFT,
}


def record_id(record: Record, record_type: str) -> str:
    """The canonical id of a NetSuite record: our external id, or derived from its internal id."""
    return text(record, "externalId") or canonical_id("erp", record_type, str(field(record, "id")))


def _money(amount: Decimal | None, currency: str) -> Money:
    return Money(amount if amount is not None else Decimal(0), currency)


def _number(money: Money) -> float:
    return float(money.rounded().amount)


def _currency(record: Record, reference: Reference, default: str = "USD") -> str:
    return reference.currency_code(ref_id(record, "currency")) or default


# --- customer ⇄ account (the legal view) -----------------------------------------------------------------


def account_from_customer(record: Record, reference: Reference) -> Account:
    address = field(record, "defaultBillingAddress")
    return Account(
        id=record_id(record, "customer"),
        name=str(field(record, "companyName")),
        legal_entity=reference.legal_entities.get(ref_id(record, "subsidiary") or "", "")
        or str(ref_id(record, "subsidiary")),
        currency=_currency(record, reference),
        account_number=text(record, "accountNumber") or text(record, "entityId"),
        industry=text(record, "custentity_industry"),
        billing_address=Address(
            street=address.get("addr1"),
            city=address.get("city"),
            state=address.get("state"),
            postal_code=address.get("zip"),
            country=address.get("country"),
        )
        if isinstance(address, dict)
        else None,
        tax_id=text(record, "vatRegNumber"),
        erp_id=str(field(record, "id")),
    )


def customer_body(account: Account, reference: Reference) -> CustomerBody:
    body: CustomerBody = {
        "externalId": account.id,
        "companyName": account.name,
        "entityId": account.account_number or account.id,
        "accountNumber": account.account_number or account.id,
        "subsidiary": {"id": reference.subsidiary_id(account.legal_entity) or account.legal_entity},
        "currency": {"id": reference.currency_id(account.currency) or account.currency},
        "vatRegNumber": account.tax_id,
        "custentity_industry": account.industry,
    }
    if account.billing_address is not None:
        a = account.billing_address
        body["defaultBillingAddress"] = {
            "addr1": a.street,
            "city": a.city,
            "state": a.state,
            "zip": a.postal_code,
            "country": a.country,
        }
    return body


# --- job ⇄ project, projectTask ⇄ task -------------------------------------------------------------------


def project_from_job(
    record: Record,
    reference: Reference,
    *,
    account_id: str | None = None,
    mapping: MappingSet | None = None,
) -> Project:
    method: str | None = text(record, "custentity_p2c_billing_method")
    if method is None:  # a job the gateway did not write: its billing type is a hint at best
        method = billing_method_of_job_type(str(field(record, "jobBillingType")), mapping)
    status = {v: k for k, v in JOB_STATUS.items()}.get(str(field(record, "status")), ProjectStatus.ACTIVE)
    budget = decimal(record, "projectedBudget")
    currency = _currency(record, reference)
    return Project(
        id=record_id(record, "job"),
        name=str(field(record, "companyName")),
        account_id=account_id or canonical_id("erp", "customer", str(ref_id(record, "parent"))),
        code=text(record, "entityId"),
        business_line=text(record, "custentity_business_line"),
        legal_entity=reference.legal_entities.get(ref_id(record, "subsidiary") or ""),
        billing_method=BillingMethod(method) if method else None,
        status=status,
        start_date=day(record, "startDate"),
        end_date=day(record, "projectedEndDate"),
        budget=None if budget is None else Money(budget, currency),
        erp_id=str(field(record, "id")),
    )


def job_body(
    project: Project, customer_id: str, reference: Reference, mapping: MappingSet | None = None
) -> JobBody:
    """The job for ``project``; its ``jobBillingType`` is the one ``mapping`` (the firm's mapping set in
    force; default the demo firm's) gives the project's billing method."""
    body: JobBody = {
        "externalId": project.id,
        "entityId": project.code or project.id,
        "companyName": project.name,
        "parent": {"id": customer_id},
        "status": JOB_STATUS[project.status],
        "custentity_business_line": project.business_line,
        "startDate": project.start_date.isoformat() if project.start_date else None,
        "projectedEndDate": project.end_date.isoformat() if project.end_date else None,
    }
    if project.billing_method is not None:
        body["jobBillingType"] = job_billing_type(project.billing_method, mapping)
        body["custentity_p2c_billing_method"] = project.billing_method.value
    if project.legal_entity is not None:
        body["subsidiary"] = {"id": reference.subsidiary_id(project.legal_entity) or project.legal_entity}
    if project.budget is not None:
        body["projectedBudget"] = _number(project.budget)
        body["currency"] = {"id": reference.currency_id(project.budget.currency) or project.budget.currency}
    return body


def task_from_project_task(record: Record, *, project_id: str) -> Task:
    closed = str(field(record, "status")) == "completed"
    return Task(
        id=record_id(record, "projectTask"),
        project_id=project_id,
        name=str(field(record, "title")),
        status=TaskStatus.CLOSED if closed else TaskStatus.OPEN,
        erp_id=str(field(record, "id")),
    )


def project_task_body(task: Task, job_id: str) -> Record:
    return {
        "externalId": task.id,
        "company": {"id": job_id},
        "title": task.name,
        "status": "completed" if task.status is TaskStatus.CLOSED else "progress",
    }


# --- time -------------------------------------------------------------------------------------------------


def time_bill_body(
    entry: TimeEntry, *, employee_id: str, job_id: str, item_id: str | None = None, task_id: str | None = None
) -> TimeBillBody:
    body: TimeBillBody = {
        "externalId": entry.id,
        "employee": {"id": employee_id},
        "customer": {"id": job_id},
        "tranDate": entry.spent_date.isoformat(),
        "hours": float(entry.hours),
        "isBillable": entry.billable,
        "memo": entry.notes,
    }
    if entry.bill_rate is not None:
        body["rate"] = _number(entry.bill_rate)
    if item_id is not None:
        body["item"] = {"id": item_id}
    if task_id is not None:
        body["projectTask"] = {"id": task_id}
    extra: Record = dict(body)
    extra["custcol_p2c_version"] = entry.version
    if entry.bill_rate is not None:
        extra["custcol_p2c_currency"] = entry.bill_rate.currency
    return extra  # type: ignore[return-value]


def time_entry_from_time_bill(
    record: Record, *, project_id: str, task_id: str, user: str, currency: str | None = None
) -> TimeEntry:
    rate = decimal(record, "rate")
    currency = currency or text(record, "custcol_p2c_currency") or "USD"
    billed = boolean(record, "billed")
    version = field(record, "custcol_p2c_version")
    return TimeEntry(
        id=record_id(record, "timeBill"),
        project_id=project_id,
        task_id=task_id,
        user=user,
        spent_date=day(record, "tranDate") or date.min,
        hours=decimal(record, "hours") or Decimal(0),
        billable=boolean(record, "isBillable", True),
        bill_rate=None if rate is None else Money(rate, currency),
        approval_status=ApprovalStatus.APPROVED,
        posting_status=PostingStatus.BILLED if billed else PostingStatus.POSTED,
        version=int(version) if version is not None else 1,
        is_billed=billed,
        notes=text(record, "memo") or "",
        erp_id=str(field(record, "id")),
    )


# --- receivables ----------------------------------------------------------------------------------------


def invoice_from_record(
    record: Record, reference: Reference, *, account_id: str | None = None, project_id: str | None = None
) -> Invoice:
    currency = _currency(record, reference)
    total = decimal(record, "total")
    total = decimal(record, "foreigntotal") if total is None else total
    job = ref_id(record, "job")
    return Invoice(
        id=record_id(record, "invoice"),
        number=text(record, "tranId") or str(field(record, "id")),
        account_id=account_id or canonical_id("erp", "customer", str(ref_id(record, "entity"))),
        tran_date=day(record, "tranDate") or date.min,
        due_date=day(record, "dueDate") or date.min,
        total=_money(total, currency),
        amount_paid=_money(decimal(record, "amountPaid"), currency),
        amount_remaining=_money(decimal(record, "amountRemaining"), currency),
        status=INVOICE_STATUS.get(str(field(record, "status")), InvoiceStatus.OPEN),
        project_id=project_id or (canonical_id("erp", "job", job) if job else None),
        legal_entity=reference.legal_entities.get(ref_id(record, "subsidiary") or ""),
        erp_id=str(field(record, "id")),
    )


def payment_body(
    payment: Payment, *, customer_id: str, invoice_ids: Mapping[str, str], reference: Reference
) -> PaymentBody:
    """``invoice_ids`` maps canonical invoice ids to NetSuite internal ids. Applied amounts travel in the
    payment's currency; NetSuite converts at the rate of the payment date."""
    return {
        "externalId": payment.id,
        "customer": {"id": customer_id},
        "tranDate": payment.date.isoformat(),
        "payment": _number(payment.amount),
        "currency": {"id": reference.currency_id(payment.amount.currency) or payment.amount.currency},
        "apply": {
            "items": [
                {"doc": {"id": invoice_ids[a.invoice_id]}, "amount": _number(a.amount), "apply": True}
                for a in payment.applications
            ]
        },
    }


def payment_from_record(
    record: Record,
    reference: Reference,
    *,
    account_id: str | None = None,
    invoice_ids: Mapping[str, str] | None = None,
) -> Payment:
    """``invoice_ids`` maps NetSuite internal ids back to canonical invoice ids."""
    currency = _currency(record, reference)
    items = ((field(record, "apply") or {}).get("items")) or []
    back = invoice_ids or {}
    applications = tuple(
        PaymentApplication(
            back.get(str(i["doc"]["id"]), canonical_id("erp", "invoice", str(i["doc"]["id"]))),
            Money(Decimal(str(i["amount"])), currency),
        )
        for i in items
    )
    return Payment(
        id=record_id(record, "customerPayment"),
        account_id=account_id or canonical_id("erp", "customer", str(ref_id(record, "customer"))),
        date=day(record, "tranDate") or date.min,
        amount=_money(decimal(record, "payment"), currency),
        status=PaymentStatus.APPLIED if applications else PaymentStatus.RECEIVED,
        applications=applications,
        erp_id=str(field(record, "id")),
    )


def credit_memo_body(
    memo: CreditMemo, *, customer_id: str, invoice_erp_id: str | None, reference: Reference
) -> CreditMemoBody:
    body: CreditMemoBody = {
        "externalId": memo.id,
        "entity": {"id": customer_id},
        "tranDate": memo.date.isoformat(),
        "total": _number(memo.amount),
        "memo": memo.reason,
        "currency": {"id": reference.currency_id(memo.amount.currency) or memo.amount.currency},
    }
    if invoice_erp_id is not None:
        body["apply"] = {"items": [{"doc": {"id": invoice_erp_id}, "amount": _number(memo.amount)}]}
    return body


def credit_memo_from_record(
    record: Record, reference: Reference, *, invoice_id: str | None = None
) -> CreditMemo:
    items = ((field(record, "apply") or {}).get("items")) or []
    doc = str(items[0]["doc"]["id"]) if items else None
    return CreditMemo(
        id=record_id(record, "creditMemo"),
        number=text(record, "tranId") or str(field(record, "id")),
        account_id=canonical_id("erp", "customer", str(ref_id(record, "entity"))),
        date=day(record, "tranDate") or date.min,
        amount=_money(decimal(record, "total"), _currency(record, reference)),
        invoice_id=invoice_id or (canonical_id("erp", "invoice", doc) if doc else None),
        reason=text(record, "memo") or "",
        erp_id=str(field(record, "id")),
    )


# --- books and billing ----------------------------------------------------------------------------------


def period_from_record(record: Record) -> AccountingPeriod:
    return AccountingPeriod(
        name=str(field(record, "periodName")),
        start=day(record, "startDate") or date.min,
        end=day(record, "endDate") or date.min,
        closed=boolean(record, "closed"),
        erp_id=str(field(record, "id")),
    )


def billing_schedule_body(schedule: BillingSchedule, *, job_id: str, external_id: str) -> Record:
    body: Record = {
        "externalId": external_id,
        "job": {"id": job_id},
        "scheduleType": SCHEDULE_TYPE[schedule.method],
        "name": external_id,
        "milestones": [
            {
                "id": e.id or e.name,
                "name": e.name,
                "amount": _number(e.amount),
                "dueDate": e.date.isoformat(),
                "currency": e.amount.currency,
                "completed": False,
                "billed": False,
            }
            for e in schedule.events
        ],
    }
    if schedule.recurrence is not None:
        r = schedule.recurrence
        body["recurrence"] = {
            "amount": _number(r.amount),
            "currency": r.amount.currency,
            "startDate": r.start.isoformat(),
            "endDate": r.end.isoformat() if r.end else None,
            "frequency": "monthly",
            "everyMonths": r.every_months,
            "inArrears": schedule.in_arrears,
        }
    return body


def billing_schedule_from_record(
    record: Record, currency: str, mapping: MappingSet | None = None
) -> BillingSchedule:
    method = {v: k for k, v in SCHEDULE_TYPE.items()}[str(field(record, "scheduleType"))]
    events = tuple(
        BillingEvent(
            name=str(e["name"]),
            date=date.fromisoformat(str(e["dueDate"])),
            amount=Money(Decimal(str(e["amount"])), str(e.get("currency") or currency)),
            id=str(e["id"]),
        )
        for e in field(record, "milestones") or []
    )
    recurrence = None
    raw = field(record, "recurrence")
    if isinstance(raw, dict):
        recurrence = Recurrence(
            amount=Money(Decimal(str(raw["amount"])), str(raw.get("currency") or currency)),
            start=date.fromisoformat(str(raw["startDate"])),
            end=date.fromisoformat(str(raw["endDate"])) if raw.get("endDate") else None,
            every_months=int(raw.get("everyMonths", 1)),
        )
    return BillingSchedule(
        method=method,
        events=events,
        recurrence=recurrence,
        in_arrears=bool(raw.get("inArrears")) if isinstance(raw, dict) else False,
        erp_billing_type=(mapping or demo_mapping()).erp_billing_type(method).value,  # the code, as plan.py
        erp_id=str(field(record, "id")),
    )
