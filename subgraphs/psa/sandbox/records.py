"""Reading the sandbox's tables as Harvest v2 JSON: one ``Resource`` per listable collection, with the
filters Harvest documents for it, and the renderers that turn a joined row into the vendor's shape."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from subgraphs.psa.sandbox.state import from_us, to_us
from subgraphs.psa.wire import format_ts, parse_ts


class Rejected(Exception):
    """A request the vendor refuses; rendered as Harvest's ``{"message": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def ts(value: int) -> str:
    return format_ts(from_us(value))


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise Rejected(422, f"{value!r} is not an integer") from None


def _bool(value: str) -> int:
    if value not in ("true", "false"):
        raise Rejected(422, f"{value!r} is not a boolean (true or false)")
    return int(value == "true")


def _date(value: str) -> str:
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise Rejected(422, f"{value!r} is not a date (YYYY-MM-DD)") from None


def _ts(value: str) -> int:
    try:
        return to_us(parse_ts(value))
    except ValueError:
        raise Rejected(422, f"{value!r} is not an ISO 8601 date and time") from None


Filter = tuple[str, str, Callable[[str], object]]  # (column, operator, parser)


@dataclass(frozen=True)
class Resource:
    name: str  # the plural key of the list response
    select: str  # joined SELECT with the main table aliased ``r``
    filters: Mapping[str, Filter]
    render: Callable[[sqlite3.Row], dict[str, Any]]

    def where(
        self, params: Mapping[str, str], fixed: Mapping[str, object] | None = None
    ) -> tuple[str, list[object]]:
        clauses: list[str] = []
        args: list[object] = []
        for key, value in (fixed or {}).items():
            clauses.append(f"r.{key} = ?")
            args.append(value)
        for param, (column, op, parse) in self.filters.items():
            if param in params:
                clauses.append(f"{column} {op} ?")
                args.append(parse(params[param]))
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    def count(self, conn: sqlite3.Connection, where: str, args: list[object]) -> int:
        # Filters only touch the main table's columns: count it alone, without the joins.
        table = self.select.split(" FROM ", 1)[1].split()[0]
        return int(conn.execute(f"SELECT count(*) FROM {table} r{where}", args).fetchone()[0])

    def rows(
        self, conn: sqlite3.Connection, where: str, args: list[object], *, limit: int, offset: int = 0
    ) -> list[dict[str, Any]]:
        sql = f"{self.select}{where} ORDER BY r.id LIMIT ? OFFSET ?"
        return [self.render(row) for row in conn.execute(sql, [*args, limit, offset])]

    def one(self, conn: sqlite3.Connection, record_id: int) -> dict[str, Any]:
        row = conn.execute(f"{self.select} WHERE r.id = ?", [record_id]).fetchone()
        if row is None:
            raise Rejected(404, "Not found")
        return self.render(row)


_ACTIVITY_FILTERS: dict[str, Filter] = {
    "updated_since": ("r.updated_at", ">=", _ts),
    "from": ("r.spent_date", ">=", _date),
    "to": ("r.spent_date", "<=", _date),
    "project_id": ("r.project_id", "=", _int),
    "user_id": ("r.user_id", "=", _int),
    "client_id": ("r.client_id", "=", _int),
    "is_billed": ("r.is_billed", "=", _bool),
}
_JOINS = """ JOIN users u ON u.id = r.user_id JOIN clients c ON c.id = r.client_id
    JOIN projects p ON p.id = r.project_id"""
_NAMES = (
    "u.first_name || ' ' || u.last_name AS user_name, c.name AS client_name, c.currency AS currency, "
    "p.name AS project_name, p.code AS project_code"
)


def _refs(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "user": {"id": row["user_id"], "name": row["user_name"]},
        "client": {"id": row["client_id"], "name": row["client_name"], "currency": row["currency"]},
        "project": {"id": row["project_id"], "name": row["project_name"], "code": row["project_code"]},
    }


def render_time_entry(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "spent_date": row["spent_date"],
        **_refs(row),
        "task": {"id": row["task_id"], "name": row["task_name"]},
        "hours": row["hours"],
        "notes": row["notes"],
        "billable": bool(row["billable"]),
        "billable_rate": row["billable_rate"],
        "cost_rate": row["cost_rate"],
        "is_locked": bool(row["is_locked"]),
        "locked_reason": row["locked_reason"],
        "is_closed": bool(row["is_closed"]),
        "is_billed": bool(row["is_billed"]),
        "is_running": bool(row["is_running"]),
        "external_reference": json.loads(row["external_reference"]) if row["external_reference"] else None,
        "created_at": ts(row["created_at"]),
        "updated_at": ts(row["updated_at"]),
    }


def render_expense(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "spent_date": row["spent_date"],
        **_refs(row),
        "expense_category": {
            "id": row["category_id"],
            "name": row["category"],
            "unit_price": None,
            "unit_name": None,
        },
        "units": row["units"],
        "total_cost": row["total_cost"],
        "notes": row["notes"],
        "billable": bool(row["billable"]),
        "is_closed": bool(row["is_closed"]),
        "is_locked": bool(row["is_locked"]),
        "locked_reason": row["locked_reason"],
        "is_billed": bool(row["is_billed"]),
        "receipt": json.loads(row["receipt"]) if row["receipt"] else None,
        "created_at": ts(row["created_at"]),
        "updated_at": ts(row["updated_at"]),
    }


def render_project(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "code": row["code"],
        "client": {"id": row["client_id"], "name": row["client_name"], "currency": row["currency"]},
        "is_active": bool(row["is_active"]),
        "is_billable": bool(row["is_billable"]),
        "is_fixed_fee": bool(row["is_fixed_fee"]),
        "bill_by": row["bill_by"],
        "budget_by": row["budget_by"],
        "budget": row["budget"],
        "cost_budget": row["cost_budget"],
        "fee": row["fee"],
        "hourly_rate": row["hourly_rate"],
        "notes": row["notes"],
        "starts_on": row["starts_on"],
        "ends_on": row["ends_on"],
        "created_at": ts(row["created_at"]),
        "updated_at": ts(row["updated_at"]),
    }


def _project_ref(row: sqlite3.Row) -> dict[str, Any]:
    return {"id": row["project_id"], "name": row["project_name"], "code": row["project_code"]}


def render_task_assignment(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "project": _project_ref(row),
        "task": {"id": row["task_id"], "name": row["task_name"]},
        "is_active": bool(row["is_active"]),
        "billable": bool(row["billable"]),
        "hourly_rate": row["hourly_rate"],
        "budget": row["budget"],
        "created_at": ts(row["created_at"]),
        "updated_at": ts(row["updated_at"]),
    }


def render_milestone(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "project": _project_ref(row),
        "name": row["name"],
        "amount": row["amount"],
        "due_date": row["due_date"],
        "is_completed": bool(row["is_completed"]),
        "completed_on": row["completed_on"],
        "created_at": ts(row["created_at"]),
        "updated_at": ts(row["updated_at"]),
    }


def _plain(
    *names: str, booleans: tuple[str, ...] = (), json_list: str | None = None
) -> Callable[[sqlite3.Row], dict[str, Any]]:
    def render(row: sqlite3.Row) -> dict[str, Any]:
        out: dict[str, Any] = {n: bool(row[n]) if n in booleans else row[n] for n in names}
        if json_list:
            out[json_list] = [row[json_list]] if row[json_list] else []
        out["created_at"], out["updated_at"] = ts(row["created_at"]), ts(row["updated_at"])
        return out

    return render


_UPDATED: dict[str, Filter] = {"updated_since": ("r.updated_at", ">=", _ts)}
_ACTIVE: dict[str, Filter] = {"is_active": ("r.is_active", "=", _bool), **_UPDATED}

TIME_ENTRIES = Resource(
    "time_entries",
    f"SELECT r.*, {_NAMES}, t.name AS task_name FROM time_entries r{_JOINS} JOIN tasks t ON t.id = r.task_id",
    {**_ACTIVITY_FILTERS, "is_running": ("r.is_running", "=", _bool)},
    render_time_entry,
)
EXPENSES = Resource(
    "expenses", f"SELECT r.*, {_NAMES} FROM expenses r{_JOINS}", _ACTIVITY_FILTERS, render_expense
)
PROJECTS = Resource(
    "projects",
    "SELECT r.*, c.name AS client_name, c.currency AS currency"
    " FROM projects r JOIN clients c ON c.id = r.client_id",
    {**_ACTIVE, "client_id": ("r.client_id", "=", _int)},
    render_project,
)
TASK_ASSIGNMENTS = Resource(
    "task_assignments",
    "SELECT r.*, p.name AS project_name, p.code AS project_code, t.name AS task_name FROM task_assignments r"
    " JOIN projects p ON p.id = r.project_id JOIN tasks t ON t.id = r.task_id",
    _ACTIVE,
    render_task_assignment,
)
MILESTONES = Resource(
    "milestones",
    "SELECT r.*, p.name AS project_name, p.code AS project_code FROM milestones r"
    " JOIN projects p ON p.id = r.project_id",
    _UPDATED,
    render_milestone,
)
USERS = Resource(
    "users",
    "SELECT r.* FROM users r",
    _ACTIVE,
    _plain(
        "id",
        "first_name",
        "last_name",
        "email",
        "is_active",
        "is_contractor",
        "default_hourly_rate",
        "cost_rate",
        booleans=("is_active", "is_contractor"),
        json_list="roles",
    ),
)
CLIENTS = Resource(
    "clients",
    "SELECT r.* FROM clients r",
    _ACTIVE,
    _plain("id", "name", "is_active", "currency", "address", booleans=("is_active",)),
)
TASKS = Resource(
    "tasks",
    "SELECT r.* FROM tasks r",
    _ACTIVE,
    _plain(
        "id",
        "name",
        "billable_by_default",
        "default_hourly_rate",
        "is_default",
        "is_active",
        booleans=("billable_by_default", "is_default", "is_active"),
    ),
)
