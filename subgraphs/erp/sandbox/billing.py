"""The billing run: what NetSuite's invoicing of projects does, reduced to its effects.

``run_billing(records, as_of)`` invoices (1) unbilled, billable, approved time bills of time-and-materials
jobs dated on or before ``as_of``, one invoice per job and month, amount = Σ hours × rate, marking the time
bills billed; (2) billing schedule events that are due: milestones once completed (fixed-fee events also
once their date has passed), recurring fees per month — retainers in arrears (after the month ends),
subscriptions in advance (once the month starts). Every invoice has a deterministic external id, and what
it billed is marked, so a second run creates nothing new.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from typing import Any

from subgraphs.erp.sandbox.records import Records
from subgraphs.erp.sandbox.state import Body, SandboxError, Stored, ref_id

PAYMENT_DAYS = 30


def run_billing(records: Records, as_of: date) -> dict[str, Any]:
    created: list[str] = []
    errors: list[dict[str, str]] = []
    _bill_time(records, as_of, created, errors)
    for schedule in list(records.store.iter_type("billingSchedule")):
        _bill_schedule(records, schedule, as_of, created, errors)
    return {"asOf": as_of.isoformat(), "invoices": created, "errors": errors}


def _invoice(
    records: Records,
    external_id: str,
    job: Stored,
    as_of: date,
    lines: list[Body],
    memo: str,
    errors: list[dict[str, str]],
) -> int | None:
    body: Body = {
        "entity": job.body.get("parent"),
        "job": {"id": str(job.id)},
        "tranDate": as_of.isoformat(),
        "dueDate": (as_of + timedelta(days=PAYMENT_DAYS)).isoformat(),
        "currency": job.body.get("currency"),
        "subsidiary": job.body.get("subsidiary"),
        "memo": memo,
        "item": {"items": lines},
    }
    if records.store.get_by_eid("invoice", external_id) is not None:
        return None
    try:
        return records.upsert("invoice", external_id, body)
    except SandboxError as exc:
        errors.append({"externalId": external_id, "code": exc.code, "detail": exc.detail})
        return None


def _bill_time(records: Records, as_of: date, created: list[str], errors: list[dict[str, str]]) -> None:
    store = records.store
    rows = store.db.execute(
        "SELECT tb.id FROM ns_timebill tb JOIN ns_job j ON j.id = tb.customer WHERE tb.isbillable = 'T' "
        "AND tb.billed = 'F' AND tb.approvalstatus = 'approved' AND tb.trandate <= ? "
        "AND j.jobbillingtype = 'timeAndMaterials' ORDER BY tb.id",
        (as_of.isoformat(),),
    ).fetchall()
    groups: dict[tuple[int, str], list[Stored]] = defaultdict(list)
    for (tb_id,) in rows:
        bill = store.get("timeBill", tb_id)
        if bill is not None:
            groups[(ref_id(bill.body["customer"]) or 0, str(bill.body["tranDate"])[:7])].append(bill)
    for (job_id, month), bills in sorted(groups.items()):
        job = store.get("job", job_id)
        if job is None:
            continue
        lines = [
            {
                "item": b.body.get("item"),
                "quantity": b.body["hours"],
                "rate": b.body.get("rate", 0),
                "amount": round(float(b.body["hours"]) * float(b.body.get("rate") or 0), 2),
                "timeBill": {"id": str(b.id)},
            }
            for b in bills
        ]
        invoice_id = _invoice(
            records,
            f"p2c-billing:time:{job_id}:{month}:{bills[0].id}",
            job,
            as_of,
            lines,
            f"Time {month}",
            errors,
        )
        if invoice_id is None:
            continue
        created.append(str(invoice_id))
        for bill in bills:
            bill.body.update(billed=True, invoice={"id": str(invoice_id)})
            store.replace("timeBill", bill.id, bill.body, bill.external_id)


def _bill_schedule(
    records: Records, schedule: Stored, as_of: date, created: list[str], errors: list[dict[str, str]]
) -> None:
    store = records.store
    job = store.get("job", ref_id(schedule.body.get("job")) or 0)
    if job is None:
        return
    body = schedule.body
    changed = False
    for event in body.get("milestones", []):
        due_by_date = body.get("scheduleType") == "fixedFee" and str(event.get("dueDate", "9999")) <= str(
            as_of
        )
        if event.get("billed") or not (event.get("completed") or due_by_date):
            continue
        line = {
            "description": event.get("name"),
            "quantity": 1,
            "rate": event["amount"],
            "amount": event["amount"],
        }
        invoice_id = _invoice(
            records,
            f"p2c-billing:event:{schedule.id}:{event.get('id', event.get('name'))}",
            job,
            as_of,
            [line],
            f"Billing event {event.get('name')}",
            errors,
        )
        if invoice_id is not None:
            event.update(billed=True, invoice={"id": str(invoice_id)})
            created.append(str(invoice_id))
            changed = True
    recurrence = body.get("recurrence")
    if isinstance(recurrence, dict):
        billed = set(body.get("billedPeriods", []))
        for start in _months(recurrence, as_of):
            key = start.strftime("%Y-%m")
            end = _month_end(start)
            due = end <= as_of if recurrence.get("inArrears") else start <= as_of
            if key in billed or not due:
                continue
            line = {
                "description": f"{body.get('name', 'Fee')} {key}",
                "quantity": 1,
                "rate": recurrence["amount"],
                "amount": recurrence["amount"],
            }
            invoice_id = _invoice(
                records,
                f"p2c-billing:recurring:{schedule.id}:{key}",
                job,
                as_of,
                [line],
                f"Recurring fee {key}",
                errors,
            )
            if invoice_id is not None:
                billed.add(key)
                created.append(str(invoice_id))
                changed = True
        body["billedPeriods"] = sorted(billed)
    if changed:
        store.replace("billingSchedule", schedule.id, body, schedule.external_id)


def _months(recurrence: Body, as_of: date) -> list[date]:
    start = date.fromisoformat(str(recurrence["startDate"])).replace(day=1)
    stop = min(as_of, date.fromisoformat(str(recurrence.get("endDate") or as_of.isoformat())))
    months = []
    while start <= stop:
        months.append(start)
        start = _month_end(start) + timedelta(days=1)
    return months


def _month_end(day: date) -> date:
    return date(day.year + (day.month == 12), day.month % 12 + 1, 1) - timedelta(days=1)
