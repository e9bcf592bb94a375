from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from canonical.enums import ApprovalStatus, BillingMethod, ProjectStatus
from subgraphs.psa.mapping import (
    PsaIds,
    project_to_canonical,
    project_to_wire,
    time_entry_to_canonical,
    time_entry_to_wire,
    version_of,
)
from subgraphs.psa.wire import WireProject, WireTimeEntry, format_ts, parse_ts

ids_ = st.integers(min_value=1, max_value=10**9)
dates = st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31))
stamps = st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2099, 1, 1), timezones=st.just(UTC))
text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
amounts = st.decimals(min_value=0, max_value=10**6, places=2, allow_nan=False).map(float)


@st.composite
def wire_entries(draw: st.DrawFn) -> WireTimeEntry:
    closed = draw(st.booleans())
    return {
        "id": draw(ids_),
        "spent_date": draw(dates).isoformat(),
        "user": {"id": draw(ids_), "name": draw(text)},
        "client": {"id": draw(ids_), "name": draw(text), "currency": draw(st.sampled_from(["USD", "EUR"]))},
        "project": {"id": draw(ids_), "name": draw(text), "code": draw(st.none() | text)},
        "task": {"id": draw(ids_), "name": draw(text)},
        "hours": draw(st.integers(0, 96)) / 4,
        "notes": draw(st.none() | text),
        "billable": draw(st.booleans()),
        "billable_rate": draw(st.none() | amounts),
        "cost_rate": draw(st.none() | amounts),
        "is_locked": closed,
        "locked_reason": "Approved" if closed else None,
        "is_closed": closed,
        "is_billed": draw(st.booleans()),
        "is_running": False,
        "external_reference": None,
        "created_at": format_ts(draw(stamps)),
        "updated_at": format_ts(draw(stamps)),
    }


@given(wire_entries())
def test_time_entry_round_trip(wire: WireTimeEntry) -> None:
    ids = PsaIds()
    entry = time_entry_to_canonical(wire, ids)
    assert entry.psa_id == str(wire["id"])
    assert entry.approval_status is (
        ApprovalStatus.APPROVED if wire["is_closed"] else ApprovalStatus.SUBMITTED
    )
    assert entry.version == version_of(wire["updated_at"])
    if wire["billable_rate"] is not None:
        assert entry.bill_rate is not None and float(entry.bill_rate.amount) == wire["billable_rate"]
    back = time_entry_to_wire(entry, ids)
    assert back == {
        "project_id": wire["project"]["id"],
        "task_id": wire["task"]["id"],
        "user_id": wire["user"]["id"],
        "spent_date": wire["spent_date"],
        "hours": wire["hours"],
        "notes": wire["notes"],
    }
    assert time_entry_to_canonical(wire, ids) == entry  # stable for a given state


@st.composite
def wire_projects(draw: st.DrawFn) -> WireProject:
    # Only shapes canonical can express: fixed fee → bill_by none; hourly → People or none.
    fixed = draw(st.booleans())
    cost_budget = draw(st.none() | amounts)
    starts = draw(st.none() | dates)
    return {
        "id": draw(ids_),
        "name": draw(text),
        "code": draw(st.none() | text),
        "client": {"id": draw(ids_), "name": draw(text), "currency": "EUR"},
        "is_active": draw(st.booleans()),
        "is_billable": True,
        "is_fixed_fee": fixed,
        "bill_by": "none" if fixed else draw(st.sampled_from(["People", "none"])),
        "budget_by": "project_cost" if cost_budget is not None else "none",
        "budget": None,
        "cost_budget": cost_budget,
        "fee": None,
        "hourly_rate": None,
        "notes": None,
        "starts_on": starts.isoformat() if starts else None,
        "ends_on": draw(st.none() | dates.map(date.isoformat)),
        "created_at": format_ts(draw(stamps)),
        "updated_at": format_ts(draw(stamps)),
    }


@given(wire_projects())
def test_project_round_trip(wire: WireProject) -> None:
    ids = PsaIds()
    project = project_to_canonical(wire, ids)
    assert project.status is (ProjectStatus.ACTIVE if wire["is_active"] else ProjectStatus.CLOSED)
    if wire["is_fixed_fee"]:
        assert project.billing_method is BillingMethod.FIXED_FEE
    back = project_to_wire(project, ids)
    writable = (
        "name",
        "code",
        "is_active",
        "is_billable",
        "is_fixed_fee",
        "bill_by",
        "budget_by",
        "cost_budget",
        "starts_on",
        "ends_on",
    )
    expected: dict[str, Any] = {k: wire[k] for k in writable}  # type: ignore[literal-required]
    assert back == {"client_id": wire["client"]["id"], **expected}


@given(stamps, st.integers(min_value=1, max_value=10**6))
def test_version_grows_with_updated_at(at: datetime, later_us: int) -> None:
    from datetime import timedelta

    first, second = format_ts(at), format_ts(at + timedelta(microseconds=later_us))
    assert version_of(first) < version_of(second)
    assert parse_ts(first) == at
