"""Harvest payloads ⇄ canonical entities.

Ids: a canonical entity names its neighbours by canonical id, Harvest by integer. ``IdMap`` converts
both ways; the default ``PsaIds`` derives ``canonical_id("psa", kind, id)`` and remembers the pairs it
has seen, which is right for records the PSA introduces (time entries, expenses). Projects, tasks and
clients are often introduced elsewhere (a CRM account, an ERP job): the gateway passes an ``IdMap``
backed by its cross-references instead.

Versions: ``version`` is ``updated_at`` in microseconds since the epoch — stable for a given state of the
record, greater after every change (the sandbox guarantees strictly increasing ``updated_at``).

Approval: ``is_closed`` means approved. Harvest has no "rejected" on the wire (a rejected timesheet goes
back to unsubmitted), so every open entry maps to ``SUBMITTED`` — what matters for posting is "not
approved".
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any, Protocol

from canonical.entities import Expense, Milestone, Project, Task, TimeEntry
from canonical.enums import ApprovalStatus, BillingMethod, MilestoneStatus, ProjectStatus, TaskStatus
from canonical.errors import ValidationFailed
from canonical.ids import canonical_id
from canonical.money import Money
from subgraphs.psa.wire import (
    WireExpense,
    WireMilestone,
    WireProject,
    WireTaskAssignment,
    WireTimeEntry,
    epoch_us,
)


class IdMap(Protocol):
    def canonical(self, kind: str, psa_id: int) -> str: ...

    def psa(self, kind: str, canonical: str) -> int: ...


class PsaIds:
    """Canonical ids derived from PSA ids, reversible for every pair this instance produced."""

    def __init__(self) -> None:
        self._back: dict[tuple[str, str], int] = {}

    def canonical(self, kind: str, psa_id: int) -> str:
        value = canonical_id("psa", kind, psa_id)
        self._back[(kind, value)] = psa_id
        return value

    def psa(self, kind: str, canonical: str) -> int:
        try:
            return self._back[(kind, canonical)]
        except KeyError:
            raise ValidationFailed(f"no PSA id known for {kind} {canonical}", subject="psa id") from None


def _decimal(value: float | int | str) -> Decimal:
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def _money(value: float | int | None, currency: str) -> Money | None:
    return None if value is None else Money(_decimal(value), currency)


def _number(value: Decimal) -> float:
    return float(value)


def version_of(updated_at: str) -> int:
    return epoch_us(updated_at)


# -- time entries ----------------------------------------------------------------------------------------
def time_entry_to_canonical(
    wire: WireTimeEntry, ids: IdMap, *, labour_category: str | None = None
) -> TimeEntry:
    currency = wire["client"].get("currency") or "USD"
    return TimeEntry(
        id=ids.canonical("TimeEntry", wire["id"]),
        project_id=ids.canonical("Project", wire["project"]["id"]),
        task_id=ids.canonical("Task", wire["task"]["id"]),
        user=ids.canonical("User", wire["user"]["id"]),
        spent_date=date.fromisoformat(wire["spent_date"]),
        hours=_decimal(wire["hours"]),
        billable=wire["billable"],
        bill_rate=_money(wire["billable_rate"], currency),
        cost_rate=_money(wire["cost_rate"], currency),
        approval_status=ApprovalStatus.APPROVED if wire["is_closed"] else ApprovalStatus.SUBMITTED,
        version=version_of(wire["updated_at"]),
        is_billed=wire["is_billed"],
        notes=wire["notes"] or "",
        labour_category=labour_category,
        psa_id=str(wire["id"]),
    )


def time_entry_to_wire(entry: TimeEntry, ids: IdMap) -> dict[str, Any]:
    """The writable fields, as ``POST /v2/time_entries`` takes them."""
    return {
        "project_id": ids.psa("Project", entry.project_id),
        "task_id": ids.psa("Task", entry.task_id),
        "user_id": ids.psa("User", entry.user),
        "spent_date": entry.spent_date.isoformat(),
        "hours": _number(entry.hours),
        "notes": entry.notes or None,
    }


# -- expenses ---------------------------------------------------------------------------------------------
def expense_to_canonical(wire: WireExpense, ids: IdMap) -> Expense:
    currency = wire["client"].get("currency") or "USD"
    return Expense(
        id=ids.canonical("Expense", wire["id"]),
        project_id=ids.canonical("Project", wire["project"]["id"]),
        user=ids.canonical("User", wire["user"]["id"]),
        spent_date=date.fromisoformat(wire["spent_date"]),
        amount=Money(_decimal(wire["total_cost"]), currency),
        category=wire["expense_category"]["name"],
        billable=wire["billable"],
        approval_status=ApprovalStatus.APPROVED if wire["is_closed"] else ApprovalStatus.SUBMITTED,
        version=version_of(wire["updated_at"]),
        is_billed=wire["is_billed"],
        notes=wire["notes"] or "",
        has_receipt=wire["receipt"] is not None,
        psa_id=str(wire["id"]),
    )


# -- projects, tasks, milestones ----------------------------------------------------------------------------
def _billing_method(wire: WireProject) -> BillingMethod | None:
    # Harvest knows fixed fee or billed by the hour; milestone, retainer and subscription are ERP terms.
    if wire["is_fixed_fee"]:
        return BillingMethod.FIXED_FEE
    return BillingMethod.TIME_AND_MATERIALS if wire["bill_by"] != "none" else None


def project_to_canonical(wire: WireProject, ids: IdMap) -> Project:
    currency = wire["client"].get("currency") or "USD"
    return Project(
        id=ids.canonical("Project", wire["id"]),
        name=wire["name"],
        account_id=ids.canonical("Client", wire["client"]["id"]),
        code=wire["code"],
        billing_method=_billing_method(wire),
        status=ProjectStatus.ACTIVE if wire["is_active"] else ProjectStatus.CLOSED,
        start_date=date.fromisoformat(wire["starts_on"]) if wire["starts_on"] else None,
        end_date=date.fromisoformat(wire["ends_on"]) if wire["ends_on"] else None,
        budget=_money(wire["cost_budget"], currency),
        psa_id=str(wire["id"]),
    )


def project_to_wire(project: Project, ids: IdMap) -> dict[str, Any]:
    """The writable fields, as ``POST /v2/projects`` takes them."""
    method = project.billing_method
    fixed = method is not None and method is not BillingMethod.TIME_AND_MATERIALS
    return {
        "client_id": ids.psa("Client", project.account_id),
        "name": project.name,
        "code": project.code,
        "is_active": project.is_open,
        "is_billable": True,
        "is_fixed_fee": fixed,
        "bill_by": "People" if method is BillingMethod.TIME_AND_MATERIALS else "none",
        "budget_by": "project_cost" if project.budget is not None else "none",
        "cost_budget": None if project.budget is None else _number(project.budget.amount),
        "starts_on": project.start_date.isoformat() if project.start_date else None,
        "ends_on": project.end_date.isoformat() if project.end_date else None,
    }


def task_to_canonical(wire: WireTaskAssignment, ids: IdMap) -> Task:
    """A Harvest task as assigned to one project: the assignment decides whether it is open."""
    return Task(
        id=ids.canonical("Task", wire["task"]["id"]),
        project_id=ids.canonical("Project", wire["project"]["id"]),
        name=wire["task"]["name"],
        status=TaskStatus.OPEN if wire["is_active"] else TaskStatus.CLOSED,
        billable=wire["billable"],
        psa_id=str(wire["task"]["id"]),
    )


def milestone_to_canonical(wire: WireMilestone, ids: IdMap, *, currency: str = "USD") -> Milestone:
    return Milestone(
        id=ids.canonical("Milestone", wire["id"]),
        project_id=ids.canonical("Project", wire["project"]["id"]),
        name=wire["name"],
        due_date=date.fromisoformat(wire["due_date"]) if wire["due_date"] else None,
        amount=_money(wire["amount"], currency),
        status=MilestoneStatus.COMPLETED if wire["is_completed"] else MilestoneStatus.PLANNED,
        completed_on=date.fromisoformat(wire["completed_on"]) if wire["completed_on"] else None,
        psa_id=str(wire["id"]),
    )
