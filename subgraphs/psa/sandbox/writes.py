"""Changes to the sandbox's state: Harvest's public writes and the sandbox-only approval workflow.

Every change stamps ``updated_at`` from ``Clock.tick`` — strictly increasing — so a poller on
``updated_since`` sees it and the connector's record version moves.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import date, timedelta
from typing import Any

from subgraphs.psa.sandbox.records import Rejected
from subgraphs.psa.sandbox.state import Clock


def _need(body: dict[str, Any], *names: str) -> None:
    missing = [n for n in names if body.get(n) in (None, "")]
    if missing:
        raise Rejected(422, f"{', '.join(missing)} can't be blank")


def _exists(conn: sqlite3.Connection, table: str, record_id: object) -> sqlite3.Row:
    row: sqlite3.Row | None = conn.execute(f"SELECT * FROM {table} WHERE id = ?", [record_id]).fetchone()
    if row is None:
        raise Rejected(404, "Not found")
    return row


def _number(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Rejected(422, f"{name} must be a number")
    if value < 0:
        raise Rejected(422, f"{name} must be greater than or equal to 0")
    return float(value)


def _day(value: object, name: str) -> str:
    try:
        return date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise Rejected(422, f"{name} is not a valid date") from None


def _reference(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not value.get("id"):
        raise Rejected(422, "external_reference must be an object with an id")
    keys = ("id", "group_id", "account_id", "permalink")
    return json.dumps({k: (str(value[k]) if value.get(k) is not None else None) for k in keys})


def _assignment(conn: sqlite3.Connection, project_id: object, task_id: object) -> None:
    row = conn.execute(
        "SELECT ta.is_active, p.is_active AS project_active FROM task_assignments ta JOIN projects p"
        " ON p.id = ta.project_id WHERE ta.project_id = ? AND ta.task_id = ?",
        [project_id, task_id],
    ).fetchone()
    if row is None:
        raise Rejected(422, "Task isn't assigned to the project")
    if not row["is_active"] or not row["project_active"]:
        raise Rejected(422, "Project or task assignment is archived")


# -- time entries ----------------------------------------------------------------------------------------
def create_time_entry(conn: sqlite3.Connection, clock: Clock, body: dict[str, Any]) -> int:
    _need(body, "project_id", "task_id", "spent_date")
    _assignment(conn, body["project_id"], body["task_id"])
    project = _exists(conn, "projects", body["project_id"])
    user_id = body.get("user_id") or conn.execute("SELECT min(id) FROM users").fetchone()[0]
    user = _exists(conn, "users", user_id)
    task = _exists(conn, "tasks", body["task_id"])
    hours = _number(body, "hours")
    now = clock.tick()
    cursor = conn.execute(
        "INSERT INTO time_entries (spent_date, user_id, client_id, project_id, task_id, hours, notes,"
        " billable, billable_rate, cost_rate, approval, is_closed, is_locked, locked_reason, is_billed,"
        " is_running, external_reference, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'SUBMITTED', 0, 0,"
        " NULL, 0, ?, ?, ?, ?)",
        [
            _day(body["spent_date"], "spent_date"),
            user["id"],
            project["client_id"],
            project["id"],
            task["id"],
            hours or 0.0,
            body.get("notes"),
            task["billable_by_default"],
            user["default_hourly_rate"],
            user["cost_rate"],
            int(hours is None),
            _reference(body.get("external_reference")),
            now,
            now,
        ],
    )
    return int(cursor.lastrowid or 0)


_ENTRY_FIELDS = ("hours", "notes", "spent_date", "project_id", "task_id", "external_reference")


def update_time_entry(conn: sqlite3.Connection, clock: Clock, entry_id: int, body: dict[str, Any]) -> None:
    row = _exists(conn, "time_entries", entry_id)
    unknown = sorted(set(body) - set(_ENTRY_FIELDS) - {"user_id"})
    if unknown:
        raise Rejected(422, f"unknown field(s): {', '.join(unknown)}")
    # Linking an entry to an external record is allowed on approved entries; changing the work is not.
    if row["is_locked"] and set(body) - {"external_reference"}:
        raise Rejected(422, f"Entry is locked: {row['locked_reason']}")
    changes: dict[str, object] = {}
    if "hours" in body:
        changes["hours"] = _number(body, "hours") or 0.0
        changes["is_running"] = 0
    if "notes" in body:
        changes["notes"] = body["notes"]
    if "spent_date" in body:
        changes["spent_date"] = _day(body["spent_date"], "spent_date")
    if "project_id" in body or "task_id" in body:
        project_id, task_id = body.get("project_id", row["project_id"]), body.get("task_id", row["task_id"])
        _assignment(conn, project_id, task_id)
        changes.update(
            project_id=project_id,
            task_id=task_id,
            client_id=_exists(conn, "projects", project_id)["client_id"],
        )
    if "external_reference" in body:
        changes["external_reference"] = _reference(body["external_reference"])
    if changes:
        changes["updated_at"] = clock.tick()
        sets = ", ".join(f"{k} = ?" for k in changes)
        conn.execute(f"UPDATE time_entries SET {sets} WHERE id = ?", [*changes.values(), entry_id])


def delete_time_entry(conn: sqlite3.Connection, entry_id: int) -> None:
    row = _exists(conn, "time_entries", entry_id)
    if row["is_locked"]:
        raise Rejected(422, f"Entry is locked: {row['locked_reason']}")
    conn.execute("DELETE FROM time_entries WHERE id = ?", [entry_id])


# -- approval (sandbox admin: Harvest's public API has no approval endpoints) ---------------------------
def set_approval(conn: sqlite3.Connection, clock: Clock, table: str, record_id: int, action: str) -> None:
    """``approve`` closes and locks; ``reopen`` (unapprove) and ``reject`` open it again."""
    row = _exists(conn, table, record_id)
    if row["is_billed"] and action != "approve":
        raise Rejected(422, "Entry has been invoiced and can't be reopened")
    approval = {"approve": "APPROVED", "reopen": "SUBMITTED", "reject": "REJECTED"}[action]
    closed = approval == "APPROVED"
    reason = "Approved" if closed else None
    conn.execute(
        f"UPDATE {table} SET approval = ?, is_closed = ?, is_locked = ?, locked_reason = ?, updated_at = ?"
        " WHERE id = ?",
        [approval, int(closed), int(closed), reason, clock.tick(), record_id],
    )


def approve_week(conn: sqlite3.Connection, clock: Clock, body: dict[str, Any]) -> list[int]:
    """Approve the open entries of one project in the ISO week holding ``week_of``; ``user_id`` and
    ``ids`` narrow it (a partially approved week)."""
    _need(body, "project_id", "week_of")
    start = date.fromisoformat(_day(body["week_of"], "week_of"))
    start -= timedelta(days=start.weekday())
    sql = "SELECT id FROM time_entries WHERE project_id = ? AND spent_date BETWEEN ? AND ? AND is_closed = 0"
    args: list[object] = [body["project_id"], start.isoformat(), (start + timedelta(days=6)).isoformat()]
    if body.get("user_id") is not None:
        sql, args = sql + " AND user_id = ?", [*args, body["user_id"]]
    ids = [r[0] for r in conn.execute(sql + " ORDER BY id", args)]
    if body.get("ids") is not None:
        wanted = {int(i) for i in body["ids"]}
        ids = [i for i in ids if i in wanted]
    for entry_id in ids:
        set_approval(conn, clock, "time_entries", entry_id, "approve")
    return ids


def complete_milestone(conn: sqlite3.Connection, clock: Clock, milestone_id: int) -> None:
    _exists(conn, "milestones", milestone_id)
    # Completing twice is a second change event (scenario 16b): the gateway must release billing once.
    now = clock.tick()
    conn.execute(
        "UPDATE milestones SET is_completed = 1, completed_on = coalesce(completed_on, ?),"
        " updated_at = ? WHERE id = ?",
        [clock.now().date().isoformat(), now, milestone_id],
    )


def close_project(conn: sqlite3.Connection, clock: Clock, project_id: int) -> None:
    _exists(conn, "projects", project_id)
    conn.execute("UPDATE projects SET is_active = 0, updated_at = ? WHERE id = ?", [clock.tick(), project_id])


def close_task_assignment(conn: sqlite3.Connection, clock: Clock, project_id: int, task_id: int) -> None:
    cursor = conn.execute(
        "UPDATE task_assignments SET is_active = 0, updated_at = ? WHERE project_id = ? AND task_id = ?",
        [clock.tick(), project_id, task_id],
    )
    if not cursor.rowcount:
        raise Rejected(404, "Not found")


# -- projects and tasks ----------------------------------------------------------------------------------
_PROJECT_FIELDS = (
    "name",
    "code",
    "client_id",
    "is_active",
    "is_billable",
    "is_fixed_fee",
    "bill_by",
    "budget_by",
    "budget",
    "cost_budget",
    "fee",
    "hourly_rate",
    "notes",
    "starts_on",
    "ends_on",
)
_BILL_BY = ("Project", "Tasks", "People", "none")
_BUDGET_BY = ("project", "project_cost", "task", "task_fees", "person", "none")


def _project_values(conn: sqlite3.Connection, body: dict[str, Any]) -> dict[str, object]:
    unknown = sorted(set(body) - set(_PROJECT_FIELDS))
    if unknown:
        raise Rejected(422, f"unknown field(s): {', '.join(unknown)}")
    values: dict[str, object] = {}
    for name in _PROJECT_FIELDS:
        if name not in body:
            continue
        value = body[name]
        if name in ("budget", "cost_budget", "fee", "hourly_rate"):
            value = _number(body, name)
        elif name in ("is_active", "is_billable", "is_fixed_fee"):
            value = int(bool(value))
        elif name in ("starts_on", "ends_on") and value is not None:
            value = _day(value, name)
        elif name == "bill_by" and value not in _BILL_BY:
            raise Rejected(422, f"bill_by must be one of {', '.join(_BILL_BY)}")
        elif name == "budget_by" and value not in _BUDGET_BY:
            raise Rejected(422, f"budget_by must be one of {', '.join(_BUDGET_BY)}")
        elif name == "client_id":
            _exists(conn, "clients", value)
        values[name] = value
    return values


def create_project(conn: sqlite3.Connection, clock: Clock, body: dict[str, Any]) -> int:
    _need(body, "client_id", "name", "bill_by", "budget_by")
    if "is_billable" not in body:
        raise Rejected(422, "is_billable can't be blank")
    values = {"is_active": 1, "is_fixed_fee": 0, **_project_values(conn, body)}
    now = clock.tick()
    values.update(created_at=now, updated_at=now)
    cursor = conn.execute(
        f"INSERT INTO projects ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
        list(values.values()),
    )
    return int(cursor.lastrowid or 0)


def update_project(conn: sqlite3.Connection, clock: Clock, project_id: int, body: dict[str, Any]) -> None:
    _exists(conn, "projects", project_id)
    values = _project_values(conn, body)
    if values:
        values["updated_at"] = clock.tick()
        conn.execute(
            f"UPDATE projects SET {', '.join(f'{k} = ?' for k in values)} WHERE id = ?",
            [*values.values(), project_id],
        )


def create_task(conn: sqlite3.Connection, clock: Clock, body: dict[str, Any]) -> int:
    _need(body, "name")
    if conn.execute("SELECT 1 FROM tasks WHERE name = ? AND is_active = 1", [body["name"]]).fetchone():
        raise Rejected(422, "Name has already been taken")
    now = clock.tick()
    cursor = conn.execute(
        "INSERT INTO tasks (name, billable_by_default, default_hourly_rate, is_default, is_active,"
        " created_at,"
        " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            body["name"],
            int(body.get("billable_by_default", True)),
            _number(body, "default_hourly_rate"),
            int(bool(body.get("is_default", False))),
            int(body.get("is_active", True)),
            now,
            now,
        ],
    )
    return int(cursor.lastrowid or 0)


def create_task_assignment(
    conn: sqlite3.Connection, clock: Clock, project_id: int, body: dict[str, Any]
) -> int:
    _exists(conn, "projects", project_id)
    _need(body, "task_id")
    task = _exists(conn, "tasks", body["task_id"])
    if conn.execute(
        "SELECT 1 FROM task_assignments WHERE project_id = ? AND task_id = ?", [project_id, task["id"]]
    ).fetchone():
        raise Rejected(422, "Task has already been assigned to the project")
    now = clock.tick()
    cursor = conn.execute(
        "INSERT INTO task_assignments (project_id, task_id, is_active, billable, hourly_rate, budget,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            project_id,
            task["id"],
            int(body.get("is_active", True)),
            int(body.get("billable", task["billable_by_default"])),
            _number(body, "hourly_rate"),
            _number(body, "budget"),
            now,
            now,
        ],
    )
    return int(cursor.lastrowid or 0)
