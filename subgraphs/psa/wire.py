"""Harvest API v2 payloads as typed dicts, exactly as they travel (see VENDOR_APIS.md, PSA section).

Timestamps are ISO 8601 UTC with a ``Z``. The sandbox adds microseconds when a change needs them to
keep ``updated_at`` strictly increasing; real Harvest sends whole seconds. Both parse with ``parse_ts``.

Sandbox extensions (no Harvest equivalent, marked as such in the sandbox): ``/v2/projects/{id}/milestones``
(``WireMilestone``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NotRequired, TypedDict


class Ref(TypedDict):
    id: int
    name: str


class ClientRef(TypedDict):
    id: int
    name: str
    currency: str


class ProjectRef(TypedDict):
    id: int
    name: str
    code: str | None


class ExternalReference(TypedDict):
    id: str
    group_id: NotRequired[str | None]
    account_id: NotRequired[str | None]
    permalink: NotRequired[str | None]


class WireTimeEntry(TypedDict):
    id: int
    spent_date: str
    user: Ref
    client: ClientRef
    project: ProjectRef
    task: Ref
    hours: float
    notes: str | None
    billable: bool
    billable_rate: float | None
    cost_rate: float | None
    is_locked: bool
    locked_reason: str | None
    is_closed: bool
    is_billed: bool
    is_running: bool
    external_reference: ExternalReference | None
    created_at: str
    updated_at: str


class ExpenseCategoryRef(TypedDict):
    id: int
    name: str
    unit_price: float | None
    unit_name: str | None


class Receipt(TypedDict):
    url: str
    file_name: str
    file_size: int
    content_type: str


class WireExpense(TypedDict):
    id: int
    spent_date: str
    user: Ref
    client: ClientRef
    project: ProjectRef
    expense_category: ExpenseCategoryRef
    units: float | None
    total_cost: float
    notes: str | None
    billable: bool
    is_closed: bool
    is_locked: bool
    locked_reason: str | None
    is_billed: bool
    receipt: Receipt | None
    created_at: str
    updated_at: str


class WireProject(TypedDict):
    id: int
    name: str
    code: str | None
    client: ClientRef
    is_active: bool
    is_billable: bool
    is_fixed_fee: bool
    bill_by: str  # Project | Tasks | People | none
    budget_by: str  # project | project_cost | task | task_fees | person | none
    budget: float | None  # hours
    cost_budget: float | None  # money, in the client's currency
    fee: float | None
    hourly_rate: float | None
    notes: str | None
    starts_on: str | None
    ends_on: str | None
    created_at: str
    updated_at: str


class WireTask(TypedDict):
    id: int
    name: str
    billable_by_default: bool
    default_hourly_rate: float | None
    is_default: bool
    is_active: bool
    created_at: str
    updated_at: str


class WireTaskAssignment(TypedDict):
    id: int
    project: ProjectRef
    task: Ref
    is_active: bool
    billable: bool
    hourly_rate: float | None
    budget: float | None
    created_at: str
    updated_at: str


class WireUser(TypedDict):
    id: int
    first_name: str
    last_name: str
    email: str
    is_active: bool
    is_contractor: bool
    default_hourly_rate: float | None
    cost_rate: float | None
    roles: list[str]
    created_at: str
    updated_at: str


class WireClient(TypedDict):
    id: int
    name: str
    is_active: bool
    currency: str
    address: str | None
    created_at: str
    updated_at: str


class WireMilestone(TypedDict):
    """Sandbox extension (Kantata-style); Harvest has no milestones."""

    id: int
    project: ProjectRef
    name: str
    amount: float | None
    due_date: str | None
    is_completed: bool
    completed_on: str | None
    created_at: str
    updated_at: str


class Links(TypedDict):
    first: str | None
    next: str | None
    previous: str | None
    last: str | None


class WirePage(TypedDict):
    """The paging envelope; the records sit under the resource's plural name (``time_entries`` ...)."""

    per_page: int
    total_pages: int
    total_entries: int
    page: int | None
    next_page: int | None
    previous_page: int | None
    links: Links


def parse_ts(value: str) -> datetime:
    """An ISO 8601 timestamp (``...Z`` or with an offset) as an aware UTC datetime."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_ts(value: datetime) -> str:
    """Harvest's shape: whole seconds unless the microseconds matter."""
    value = value.astimezone(UTC)
    spec = "%Y-%m-%dT%H:%M:%S.%fZ" if value.microsecond else "%Y-%m-%dT%H:%M:%SZ"
    return value.strftime(spec)


def epoch_us(value: str) -> int:
    """Microseconds since the epoch of an ISO timestamp: the ``version`` of a record in that state."""
    delta = parse_ts(value) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
