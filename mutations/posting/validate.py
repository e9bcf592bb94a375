"""Validation before any ERP write: the project open in both systems, the task open in the ERP, an open
accounting period for the entry's date under its legal entity's policy, and no change to billed work.

    checked = validate(ready, snap, deps.mapping)        # Posting (date + period) | Failure

``NEXT_OPEN`` moves a transaction dated in a closed period to the first day of the next open period
(the original date stays on the record); ``EXCEPTION`` refuses with ``PERIOD_CLOSED``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from canonical.entities import AccountingPeriod, PeriodClosed, posting_period
from canonical.mapping import MappingMissing, MappingSet
from mutations.posting.enrich import Enriched, missing
from mutations.posting.model import (
    ALREADY_BILLED,
    PERIOD_CLOSED,
    PROJECT_CLOSED,
    TASK_CLOSED,
    Failure,
)
from mutations.posting.snapshot import Snapshot
from subgraphs.erp.wire import Record

ERP_CLOSED_JOB = frozenset({"closed", "CLOSED", "completed"})
ERP_CLOSED_TASK = frozenset({"completed", "COMPLETE", "closed"})


@dataclass(frozen=True)
class Posting:
    tran_date: date
    period: AccountingPeriod
    moved: bool  # NEXT_OPEN moved it out of a closed period


def project_closed(ready: Enriched, snap: Snapshot) -> Failure | None:
    psa_id = int(ready.item.entry["project"]["id"])
    psa = snap.psa_projects.get(psa_id)
    where = None
    if psa is not None and not psa.get("is_active", True):
        where = "PSA"
    elif str(ready.job.get("status") or "") in ERP_CLOSED_JOB:
        where = "ERP"
    if where is None:
        return None
    return Failure(
        PROJECT_CLOSED,
        f"project {ready.project_code} is closed in the {where}; nothing was posted",
        f"reopen project {ready.project_code} in the {where} and replay, or dismiss this exception if the "
        "time should not be posted",
        {"system": where.lower(), "erpJobId": ready.job_id, "psaProjectId": psa_id},
    )


def period_for(ready: Enriched, snap: Snapshot, mapping: MappingSet, on: date) -> Posting | Failure:
    try:
        policy = mapping.period_policy(ready.legal_entity)
    except MappingMissing as exc:
        return missing(exc)
    try:
        period = posting_period(snap.reference.periods, on, policy)
    except PeriodClosed as exc:
        name = exc.extensions.get("period")
        return Failure(
            PERIOD_CLOSED,
            f"{exc.message} ({ready.legal_entity}, policy {policy.value})",
            (
                f"reopen period {name} in the ERP, or set legal_entities.{ready.legal_entity}.period_policy "
                "to NEXT_OPEN in the mapping file, then replay"
                if name
                else f"open an ERP accounting period covering {on.isoformat()}, then replay"
            ),
            {"date": on.isoformat(), "period": name, "policy": policy.value},
        )
    moved = not period.contains(on)
    return Posting(period.start if moved else on, period, moved)


def validate(ready: Enriched, snap: Snapshot, mapping: MappingSet) -> Posting | Failure:
    closed = project_closed(ready, snap)
    if closed is not None:
        return closed
    task = ready.erp_task
    if task is not None and str(task.get("status") or "") in ERP_CLOSED_TASK:
        return Failure(
            TASK_CLOSED,
            f"task '{ready.task_name}' of project {ready.project_code} is closed in the ERP",
            f"reopen task '{ready.task_name}' on ERP project {ready.project_code}, or move the entry to an "
            "open task in the PSA, then replay",
            {"erpTaskId": str(task.get("id")), "task": ready.task_name},
        )
    return period_for(ready, snap, mapping, ready.spent_date)


def billed(record: Record | None) -> bool:
    value: Any = None if record is None else record.get("billed")
    return value is True or str(value).upper() in ("T", "TRUE")


def already_billed(ready_code: str, entry_id: int, posted_eid: str, record: Record | None) -> Failure:
    invoice = None if record is None else record.get("invoice")
    return Failure(
        ALREADY_BILLED,
        f"entry {entry_id} of project {ready_code} was edited in the PSA after its time bill {posted_eid} "
        "was billed; the ERP was not changed",
        "revert the edit in the PSA, or correct the invoice in the ERP (credit memo) and post the "
        "difference by hand; then dismiss this exception",
        {"externalId": posted_eid, "invoice": invoice},
    )
