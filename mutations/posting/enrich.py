"""Enrichment: a PSA entry plus the batch snapshot and the mapping in force → everything an ERP posting
needs, or the ``Failure`` that names the missing piece and the fix.

    ready = enrich(item, snap, deps.mapping)      # Enriched | Failure

From the mapping: labour category (task, or role), service item, business line → cost center, department,
class; legal entity → subsidiary and period policy. From the ERP: the job (via the cross-reference of the
PSA project), its task, the employee (matched on the PSA user's e-mail), the contract's rate card (bill
rate; the PSA's own rate when the contract has no line for the category). Cost rate from the PSA.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from canonical.mapping import BusinessLine, MappingMissing, MappingSet
from mutations.posting.model import (
    MAPPING_MISSING,
    POST_TIME,
    UNKNOWN_PROJECT,
    Failure,
    PostItem,
)
from mutations.posting.snapshot import Snapshot
from subgraphs.erp.wire import Record

FIXES = {
    "tasks": "map task '{key}' to a labour category in the mapping file (tasks.{key}.labour_category), "
    "load the new mapping version, then replay",
    "roles": "map role '{key}' to a labour category in the mapping file (roles), load it, then replay",
    "labour_categories": "map labour category '{key}' to a service item in the mapping file "
    "(labour_categories.{key}.product_code), load it, then replay",
    "service_items": "add service item '{key}' with its ERP item id to the mapping file (service_items), "
    "load it, then replay",
    "business_lines": "add business line '{key}' with its cost center, department and class to the mapping "
    "file (business_lines), load it, then replay",
    "legal_entities": "add legal entity '{key}' (its subsidiary and period policy) to the mapping file "
    "(legal_entities), load it, then replay",
    "legal_entities.subsidiary": "add the legal entity of ERP subsidiary {key} to the mapping file "
    "(legal_entities.<code>.subsidiary), load it, then replay",
}


@dataclass(frozen=True)
class Enriched:
    item: PostItem
    job_id: str
    job: Record
    project_code: str
    legal_entity: str
    subsidiary: str
    line: BusinessLine
    employee: str
    spent_date: date
    currency: str
    labour_category: str | None = None
    erp_item: str | None = None
    task_name: str | None = None
    erp_task: Record | None = None
    bill_rate: Decimal | None = None
    cost_rate: Decimal | None = None
    hours: Decimal = Decimal(0)
    amount: Decimal = Decimal(0)  # expenses: total cost


def missing(exc: MappingMissing) -> Failure:
    fix = FIXES.get(exc.table, "add '{key}' to " + exc.table + " in the mapping file, load it, then replay")
    return Failure(
        MAPPING_MISSING,
        f"no mapping for {exc.table} '{exc.key}'",
        fix.format(key=exc.key),
        {"table": exc.table, "key": exc.key},
    )


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(repr(value) if isinstance(value, float) else str(value))


def enrich(item: PostItem, snap: Snapshot, mapping: MappingSet) -> Enriched | Failure:
    entry = item.entry
    project = entry["project"]
    psa_project = int(project["id"])
    code = str(project.get("code") or project.get("name") or psa_project)
    job_id = snap.jobs_by_psa_project.get(psa_project)
    job = snap.jobs.get(job_id) if job_id is not None else None
    if job_id is None or job is None:
        return Failure(
            UNKNOWN_PROJECT,
            f"PSA project {code} (id {psa_project}) is not linked to an ERP project",
            f"link PSA project {code} to its ERP job — run backfill, or provision the engagement — "
            "then replay",
            {"psaProjectId": psa_project},
        )
    try:
        return _enrich(item, snap, mapping, job_id, job, code)
    except MappingMissing as exc:
        return missing(exc)


def _enrich(
    item: PostItem, snap: Snapshot, mapping: MappingSet, job_id: str, job: Record, code: str
) -> Enriched | Failure:
    entry = item.entry
    subsidiary = str(job.get("subsidiary") or "")
    legal_entity = mapping.legal_entity_for_subsidiary(subsidiary).code
    line = mapping.business_line(str(job.get("custentity_business_line") or ""))
    user = snap.psa_users.get(int(entry["user"]["id"])) or {}
    email = str(user.get("email") or "").lower()
    employee = snap.employees_by_email.get(email)
    if employee is None:
        who = entry["user"].get("name") or entry["user"]["id"]
        return Failure(
            MAPPING_MISSING,
            f"no ERP employee for PSA user {who} ({email or 'no e-mail'})",
            f"create the ERP employee with e-mail {email or '<the PSA user’s e-mail>'} (or correct the "
            "PSA user's e-mail), then replay",
            {"table": "employees", "key": email},
        )
    currency = str((entry.get("client") or {}).get("currency") or "USD")
    common: dict[str, Any] = {
        "item": item,
        "job_id": job_id,
        "job": job,
        "project_code": code,
        "legal_entity": legal_entity,
        "subsidiary": subsidiary,
        "line": line,
        "employee": employee,
        "spent_date": date.fromisoformat(str(entry["spent_date"])),
        "currency": currency,
    }
    if item.spec.kind != POST_TIME:
        return Enriched(**common, amount=_decimal(entry.get("total_cost")) or Decimal(0))
    task = str(entry["task"]["name"])
    category = mapping.labour_category(task)
    service = mapping.time_service_item(task)
    erp_item = service.erp_item
    if erp_item not in snap.reference.items:
        return Failure(
            MAPPING_MISSING,
            f"service item '{service.product_code}' (ERP item {service.erp_item}) is not in the ERP",
            f"set service_items.{service.product_code}.erp_item in the mapping file to the ERP item's "
            "internal id, load it, then replay",
            {"table": "service_items", "key": service.product_code},
        )
    card = snap.rates.get(job_id, {})
    bill = card.get(category, _decimal(entry.get("billable_rate")))
    erp_task = next((t for t in snap.tasks.get(job_id, []) if str(t.get("title")) == task), None)
    return Enriched(
        **common,
        labour_category=category,
        erp_item=erp_item,
        task_name=task,
        erp_task=erp_task,
        bill_rate=bill,
        cost_rate=_decimal(entry.get("cost_rate")),
        hours=_decimal(entry.get("hours")) or Decimal(0),
    )

