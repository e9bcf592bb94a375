"""The PSA sandbox's own SQLite state: schema, the sandbox clock, and seeding from the demo firm.

Timestamps are stored as integer microseconds since the epoch, issued by ``Clock.tick`` so every change
gets a strictly greater ``updated_at`` than any before it (the connector derives record versions from
it). The clock starts at the later of the wall clock and the day after the demo firm's ``as_of`` (so
seeded data is always in the past) and then runs with real time; tests move it with
``POST /__sandbox/psa/clock``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, date, datetime, timedelta

from subgraphs.demo import Firm, generate_firm

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US = 1_000_000
TASK_ASSIGNMENT_BASE = 2_000_000  # demo task id + this = its task assignment id
EXPENSE_CATEGORIES = {"Travel": 1, "Lodging": 2, "Meals": 3}

SCHEMA = """
CREATE TABLE clients (id INTEGER PRIMARY KEY, name TEXT NOT NULL, currency TEXT NOT NULL,
    is_active INTEGER NOT NULL, address TEXT, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE users (id INTEGER PRIMARY KEY, first_name TEXT NOT NULL, last_name TEXT NOT NULL,
    email TEXT NOT NULL, is_active INTEGER NOT NULL, is_contractor INTEGER NOT NULL,
    default_hourly_rate REAL, cost_rate REAL, roles TEXT NOT NULL,
    created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE projects (id INTEGER PRIMARY KEY, client_id INTEGER NOT NULL REFERENCES clients(id),
    name TEXT NOT NULL, code TEXT, is_active INTEGER NOT NULL, is_billable INTEGER NOT NULL,
    is_fixed_fee INTEGER NOT NULL, bill_by TEXT NOT NULL, budget_by TEXT NOT NULL, budget REAL,
    cost_budget REAL, fee REAL, hourly_rate REAL, notes TEXT, starts_on TEXT, ends_on TEXT,
    created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE INDEX projects_updated ON projects(updated_at);
CREATE TABLE tasks (id INTEGER PRIMARY KEY, name TEXT NOT NULL, billable_by_default INTEGER NOT NULL,
    default_hourly_rate REAL, is_default INTEGER NOT NULL, is_active INTEGER NOT NULL,
    created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE task_assignments (id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL REFERENCES projects(id),
    task_id INTEGER NOT NULL REFERENCES tasks(id), is_active INTEGER NOT NULL, billable INTEGER NOT NULL,
    hourly_rate REAL, budget REAL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
    UNIQUE (project_id, task_id));
CREATE TABLE milestones (id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL REFERENCES projects(id),
    name TEXT NOT NULL, amount REAL, due_date TEXT, is_completed INTEGER NOT NULL, completed_on TEXT,
    created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE time_entries (id INTEGER PRIMARY KEY, spent_date TEXT NOT NULL,
    user_id INTEGER NOT NULL REFERENCES users(id), client_id INTEGER NOT NULL REFERENCES clients(id),
    project_id INTEGER NOT NULL REFERENCES projects(id), task_id INTEGER NOT NULL REFERENCES tasks(id),
    hours REAL NOT NULL, notes TEXT, billable INTEGER NOT NULL, billable_rate REAL, cost_rate REAL,
    approval TEXT NOT NULL, is_closed INTEGER NOT NULL, is_locked INTEGER NOT NULL, locked_reason TEXT,
    is_billed INTEGER NOT NULL, is_running INTEGER NOT NULL, external_reference TEXT,
    created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE INDEX time_entries_updated ON time_entries(updated_at);
CREATE INDEX time_entries_project ON time_entries(project_id, spent_date);
CREATE INDEX time_entries_user ON time_entries(user_id);
CREATE TABLE expenses (id INTEGER PRIMARY KEY, spent_date TEXT NOT NULL,
    user_id INTEGER NOT NULL REFERENCES users(id), client_id INTEGER NOT NULL REFERENCES clients(id),
    project_id INTEGER NOT NULL REFERENCES projects(id), category_id INTEGER NOT NULL, category TEXT NOT NULL,
    units REAL, total_cost REAL NOT NULL, notes TEXT, billable INTEGER NOT NULL, approval TEXT NOT NULL,
    is_closed INTEGER NOT NULL, is_locked INTEGER NOT NULL, locked_reason TEXT, is_billed INTEGER NOT NULL,
    receipt TEXT, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE INDEX expenses_updated ON expenses(updated_at);
CREATE INDEX expenses_project ON expenses(project_id);
"""


def to_us(value: datetime) -> int:
    delta = value.astimezone(UTC) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds


def from_us(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def _at(day: date, seconds: int) -> int:
    return to_us(datetime(day.year, day.month, day.day, tzinfo=UTC)) + seconds * US


class Clock:
    """Sandbox time: runs with the wall clock from ``start``; ``tick`` never repeats or goes back."""

    def __init__(self, start: datetime) -> None:
        self._base = to_us(start)
        self._mono = time.monotonic_ns() // 1000
        self._last = 0
        self._lock = threading.Lock()

    def now_us(self) -> int:
        return self._base + time.monotonic_ns() // 1000 - self._mono

    def now(self) -> datetime:
        return from_us(self.now_us())

    def tick(self) -> int:
        """A timestamp for a change: now, or just after the last one issued if now is not later."""
        with self._lock:
            self._last = max(self.now_us(), self._last + 1)
            return self._last

    def set(self, when: datetime) -> None:
        self._base, self._mono = to_us(when), time.monotonic_ns() // 1000

    def advance(self, seconds: float) -> None:
        self._base += round(seconds * US)

    def observe(self, issued_us: int) -> None:
        """Seeded timestamps count as issued: later ticks must be greater."""
        self._last = max(self._last, issued_us)


def connect(db_path: str) -> sqlite3.Connection:
    # One connection shared by the app: Starlette runs handlers on one event loop, and the bench serves
    # it from a uvicorn thread, hence check_same_thread=False.
    conn = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode = MEMORY")
    conn.execute("PRAGMA synchronous = OFF")
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'time_entries'").fetchone():
        conn.executescript(SCHEMA)
    return conn


def clock_start(firm: Firm | None) -> datetime:
    wall = datetime.now(UTC)
    if firm is None:
        return wall
    after = firm.as_of + timedelta(days=1)
    return max(wall, datetime(after.year, after.month, after.day, tzinfo=UTC))


def seed(conn: sqlite3.Connection, firm: Firm) -> int:
    """Load the PSA's part of the demo firm; returns the latest timestamp written."""
    base = _at(firm.as_of - timedelta(days=400), 0)
    ceiling = _at(firm.as_of + timedelta(days=1), 0) - US
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO clients VALUES (?, ?, ?, 1, ?, ?, ?)",
        [
            (
                a.psa_client_id,
                a.name,
                a.currency,
                f"{a.street or ''}\n{a.postal_code} {a.city}\n{a.country}",
                base,
                base,
            )
            for a in firm.accounts
        ],
    )
    conn.executemany(
        "INSERT INTO users VALUES (?, ?, ?, ?, 1, 0, ?, ?, ?, ?, ?)",
        [
            (
                e.psa_user_id,
                *e.name.rsplit(" ", 1),
                e.email,
                float(e.bill_rate),
                float(e.cost_rate),
                e.labour_category,
                base,
                base,
            )
            for e in firm.employees
        ],
    )
    projects: list[tuple[object, ...]] = []
    tasks: list[tuple[object, ...]] = []
    assignments: list[tuple[object, ...]] = []
    milestones: list[tuple[object, ...]] = []
    for p in firm.projects:
        fixed = p.billing_method != "TIME_AND_MATERIALS"
        created = _at(p.starts_on - timedelta(days=7), 36_000)
        projects.append(
            (
                p.psa_project_id,
                firm.accounts[p.account_index].psa_client_id,
                p.name,
                p.code,
                int(p.is_active),
                1,
                int(fixed),
                "none" if fixed else "People",
                "project",
                float(p.budget_hours),
                float(p.budget_amount),
                float(p.budget_amount) if fixed else None,
                None,
                f"Billing method: {p.billing_method}",
                p.starts_on.isoformat(),
                p.ends_on.isoformat(),
                created,
                created,
            )
        )
        for task in p.tasks:
            billable = task.name != "Project Management" or not fixed
            tasks.append((task.psa_task_id, task.name, int(billable), None, 0, 1, created, created))
            assignments.append(
                (
                    TASK_ASSIGNMENT_BASE + task.psa_task_id,
                    p.psa_project_id,
                    task.psa_task_id,
                    int(task.is_open),
                    int(billable),
                    None,
                    None,
                    created,
                    created,
                )
            )
        for m in p.milestones:
            done = _at(m.due_date, 61_200) if m.completed else created
            milestones.append(
                (
                    m.erp_id,
                    p.psa_project_id,
                    m.name,
                    float(m.amount),
                    m.due_date.isoformat(),
                    int(m.completed),
                    m.due_date.isoformat() if m.completed else None,
                    created,
                    min(done, ceiling),
                )
            )
    conn.executemany(f"INSERT INTO projects VALUES ({', '.join('?' * 18)})", projects)
    conn.executemany("INSERT INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?, ?)", tasks)
    conn.executemany("INSERT INTO task_assignments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", assignments)
    conn.executemany("INSERT INTO milestones VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", milestones)

    users = {e.index: e.psa_user_id for e in firm.employees}
    by_code = {
        p.code: (p.psa_project_id, firm.accounts[p.account_index].psa_client_id) for p in firm.projects
    }
    latest = ceiling
    rows: list[tuple[object, ...]] = []
    for t in firm.time_entries:
        project_id, client_id = by_code[t.project_code]
        created = min(_at(t.spent_date, 61_200 + t.psa_id % 3600), ceiling)
        updated = min(created + 86_400 * US, ceiling) if t.approval != "SUBMITTED" else created
        closed = t.approval == "APPROVED"
        reason = "Approved" if closed else ("Invoiced" if t.is_billed else None)
        rows.append(
            (
                t.psa_id,
                t.spent_date.isoformat(),
                users[t.employee_index],
                client_id,
                project_id,
                t.psa_task_id,
                float(t.hours),
                t.notes,
                int(t.billable),
                float(t.billable_rate),
                float(t.cost_rate),
                t.approval,
                int(closed),
                int(closed or t.is_billed),
                reason,
                int(t.is_billed),
                0,
                None,
                created,
                updated,
            )
        )
    conn.executemany(f"INSERT INTO time_entries VALUES ({', '.join('?' * 20)})", rows)
    rows = []
    for x in firm.expenses:
        project_id, client_id = by_code[x.project_code]
        created = min(_at(x.spent_date, 64_800 + x.psa_id % 3600), ceiling)
        closed = x.approval == "APPROVED"
        updated = min(created + 86_400 * US, ceiling) if closed else created
        receipt = (
            None
            if x.psa_id % 4 == 0
            else (
                f'{{"url": "https://psa.sandbox/receipts/{x.psa_id}.pdf",'
                f' "file_name": "receipt-{x.psa_id}.pdf",'
                f' "file_size": {20_000 + x.psa_id % 5000}, "content_type": "application/pdf"}}'
            )
        )
        rows.append(
            (
                x.psa_id,
                x.spent_date.isoformat(),
                users[x.employee_index],
                client_id,
                project_id,
                EXPENSE_CATEGORIES.get(x.category, 9),
                x.category,
                None,
                float(x.total_cost),
                f"{x.category} expense",
                int(x.billable),
                x.approval,
                int(closed),
                int(closed),
                "Approved" if closed else None,
                0,
                receipt,
                created,
                updated,
            )
        )
    conn.executemany(f"INSERT INTO expenses VALUES ({', '.join('?' * 19)})", rows)
    conn.execute("COMMIT")
    return latest


def build_state(db_path: str, seed_value: int | None, accounts: int) -> tuple[sqlite3.Connection, Clock]:
    conn = connect(db_path)
    firm = generate_firm(seed_value, accounts) if seed_value is not None else None
    clock = Clock(clock_start(firm))
    empty = not conn.execute("SELECT 1 FROM clients LIMIT 1").fetchone()
    if firm is not None and empty:
        clock.observe(seed(conn, firm))
    else:
        row = conn.execute("SELECT max(updated_at) FROM time_entries").fetchone()
        clock.observe(row[0] or 0)
    return conn, clock
