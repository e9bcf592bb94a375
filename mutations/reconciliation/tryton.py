"""The ERP side of a reconciliation for a legal entity booked in Tryton, in the record shapes the checks read.

The checks (``work``, ``money``) were written against NetSuite's SuiteQL rows; rather than teach them a
second vocabulary, this reader hands them Tryton's records under the same column names (the contract is in
``model``'s docstring), with every Tryton id prefixed ``tryton:`` so that, in a report over every entity,
a Tryton record is never mistaken for a NetSuite one with the same number:

    job          ← project.work of type project  id tryton:<work>, externalid = our project id (from the
                                                  comment "p2c:<project id>"), parent = tryton:<party>
    time bill    ← timesheet.line dated in the   id tryton:<line>, externalid = the posting's reference
                   period                        (the description's first word, psa:<entry>:v<n>), customer
                                                  = the line's project (tasks roll up to it); always live:
                                                  a correction or unapproval deletes the old line
    invoice      ← account.invoice (out) dated   id = externalid = tryton:<invoice> (the CRM's P2C_Id__c),
                   in the period                  entity = tryton:<party>, fingerprint = the Tryton billing
                                                  poller's own (``mutations.billing.tryton``)
    totals       ← every customer invoice dated  billed to date and open receivables per party and
                   up to as_of                    currency, by the write-back's formulas
                                                  (``canonical.analytics``)
    reference    a ``Reference`` that names the company's legal entity (subsidiary ``tryton:company:<id>``),
                 its currencies by code, and its employees by e-mail (the employee's party code)

Upstream cost: four paged ``search_read`` (works, lines, invoices, employees — the last one cached by the
connector), whatever the period; the company is the connector's (one Tryton connector books one company).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date
from typing import Any

from canonical import analytics
from mutations.billing.state import fingerprint_of
from subgraphs.erp.refdata import Reference
from subgraphs.erp_tryton.client import TrytonClient
from subgraphs.erp_tryton.loaders import search_invoices
from subgraphs.erp_tryton.mapping import INVOICE_FIELDS, invoice_from_row, logged_hours, parse_reference

Record = dict[str, Any]
PREFIX = "tryton:"
SYSTEM = "tryton"
WORK_FIELDS = ("type", "name", "comment", "party", "parent", "timesheet_works")
LINE_FIELDS = ("work", "employee", "date", "duration", "description")


def tid(value: Any) -> str | None:
    """A Tryton record id as the reconciliation names it (``tryton:<id>``); None stays None."""
    return None if value in (None, "", 0) else f"{PREFIX}{value}"


def owns(erp: str, reference: str | None) -> bool:
    """Whether an ERP id copied somewhere (a CRM field, a cross-reference) names a record of ``erp``."""
    if not reference:
        return False
    return str(reference).startswith(PREFIX) == (erp == SYSTEM)


@dataclass
class TrytonSide:
    reference: Reference
    subsidiary: str
    jobs: list[Record]
    time_bills: list[Record]
    invoices: list[Record]
    totals: list[Record]


def _code_of(name: str) -> str:
    code, _, _rest = name.partition(" ")
    return code if code.startswith("P2C-") else name


def jobs_of(works: list[Record], subsidiary: str) -> tuple[list[Record], dict[int, str]]:
    """The project works as jobs, and ``{timesheet work id: job id}`` (a task's time is its project's)."""
    by_id = {int(w["id"]): w for w in works}

    def project_of(work: Record) -> Record:
        seen: set[int] = set()
        while work.get("type") != "project" and work.get("parent") and int(work["parent"]) not in seen:
            seen.add(int(work["parent"]))
            parent = by_id.get(int(work["parent"]))
            if parent is None:
                break
            work = parent
        return work

    jobs: list[Record] = []
    job_of_timesheet: dict[int, str] = {}
    for work in works:
        if work.get("type") == "project":
            name = str(work.get("name") or "")
            jobs.append({
                "id": tid(work["id"]),
                "externalid": parse_reference(work.get("comment"))[0],
                "entityid": _code_of(name),
                "companyname": name,
                "parent": tid(work.get("party")),
                "subsidiary": subsidiary,
                "status": None,
            })  # fmt: skip
        root = project_of(work)
        if root.get("type") == "project":
            for timesheet in work.get("timesheet_works") or []:
                job_of_timesheet[int(timesheet)] = str(tid(root["id"]))
    return jobs, job_of_timesheet


def time_bill(line: Record, job_of_timesheet: dict[int, str]) -> Record:
    description = str(line.get("description") or "")
    first = description.split(" ", 1)[0]
    return {
        "id": tid(line["id"]),
        "externalid": first if first.startswith("psa:") and first.count(":") == 2 else None,
        "employee": tid(line.get("employee")),
        "customer": job_of_timesheet.get(int(line.get("work") or 0)),
        "trandate": line["date"].isoformat() if isinstance(line.get("date"), date) else line.get("date"),
        "hours": logged_hours(line),
        "approvalstatus": "approved",  # Tryton keeps only live lines: the posting deletes the others
        "memo": description,
    }


def invoice_record(row: Record, subsidiary: str, entity: str) -> Record:
    invoice = invoice_from_row(row, legal_entity=entity)
    return {
        "id": tid(row["id"]),
        "externalid": invoice.id,  # tryton:<id>, what the write-back stamps as P2C_Id__c
        "tranid": invoice.number,
        "type": "CustInvc",
        "entity": tid(row.get("party")),
        "job": None,
        "trandate": invoice.tran_date.isoformat(),
        "duedate": invoice.due_date.isoformat(),
        "currency": invoice.currency,
        "foreigntotal": invoice.total.amount,
        "amountpaid": invoice.amount_paid.amount,
        "amountremaining": invoice.amount_remaining.amount,
        "status": row.get("state"),
        "subsidiary": subsidiary,
        "fingerprint": fingerprint_of(invoice),
    }


def totals_of(rows: list[Record], as_of: date) -> list[Record]:
    """Billed to date and open receivables per (party, currency), as the CRM write-back computes them."""
    grouped: dict[tuple[str, str], list[Any]] = {}
    for row in rows:
        invoice = invoice_from_row(row, legal_entity=None)
        grouped.setdefault((str(tid(row.get("party"))), invoice.currency), []).append(invoice)
    return [
        {
            "entity": party,
            "currency": currency,
            "type": "CustInvc",
            "total": analytics.billed_to_date(invoices, currency, as_of=as_of).amount,
            "remaining": analytics.open_receivables(invoices, currency, as_of=as_of).amount,
        }
        for (party, currency), invoices in sorted(grouped.items())
    ]


async def read_tryton(
    client: TrytonClient, *, entity: str, period_start: date, period_end: date, as_of: date
) -> TrytonSide:
    """The Tryton company's jobs, time, invoices and per-customer totals (see the module docstring)."""
    subsidiary = f"{PREFIX}company:{client.config.company}"
    works, lines, invoices, employees = await asyncio.gather(
        client.search_all("project.work", [], WORK_FIELDS),
        client.search_all(
            "timesheet.line", [["date", ">=", period_start], ["date", "<=", period_end]], LINE_FIELDS
        ),
        search_invoices(
            client,
            [["type", "=", "out"], ["invoice_date", "<=", max(as_of, period_end)]],
            (*INVOICE_FIELDS, "invoice_date"),
        ),
        client.employees(),
    )
    jobs, job_of_timesheet = jobs_of(works, subsidiary)
    dated = [r for r in invoices if isinstance(r.get("invoice_date"), date)]
    in_period = [r for r in dated if period_start <= r["invoice_date"] <= period_end]
    records = [invoice_record(r, subsidiary, entity) for r in in_period]
    currencies = {str(r["currency"]) for r in records} | {
        str((r.get("currency.") or {}).get("code") or "EUR") for r in dated
    }
    reference = Reference(
        subsidiaries={subsidiary: {"id": subsidiary, "externalid": entity}},
        currencies={c: c for c in sorted(currencies)},
        rates=(),
        items={},
        periods=(),
        employees={str(tid(i)): {"id": tid(i), "email": email} for email, i in employees.items()},
        legal_entities={subsidiary: entity},
    )
    return TrytonSide(
        reference,
        subsidiary,
        jobs,
        [time_bill(line, job_of_timesheet) for line in lines],
        records,
        totals_of([r for r in dated if r["invoice_date"] <= as_of], as_of),
    )


__all__ = ["PREFIX", "SYSTEM", "TrytonSide", "owns", "read_tryton", "tid"]
