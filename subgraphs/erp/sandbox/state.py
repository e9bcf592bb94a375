"""The sandbox's state: one SQLite database, a clock, and the primitive record operations.

Handlers are ``async def`` but never await between reading and writing the database, so each request's
changes are atomic with respect to the others on the event loop.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from subgraphs.erp.sandbox import lines
from subgraphs.erp.sandbox.schema import TABLES, TYPES, RecordType, ddl, indexes, row_values, sql_table

Body = dict[str, Any]


class SandboxError(Exception):
    """A refusal rendered as NetSuite's error envelope."""

    def __init__(
        self, status: int, code: str, detail: str, *, path: str | None = None, title: str | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.path = path
        self.title = title


@dataclass
class Rules:
    """Vendor behaviour that is unverified or worth varying in tests; the defaults imitate NetSuite."""

    period_closed_detail: str = (
        "The accounting period {period} is closed. You cannot post a transaction dated {date} to it."
    )
    job_closed_detail: str = "The project {job} is closed. You cannot enter time against a closed project."
    max_page: int = 1000
    #: PEM public key accepted for RS256 client assertions (real NetSuite M2M uses certificates; HS256
    #: with the client secret is a sandbox convenience). Needs the ``cryptography`` package.
    public_key_pem: str | None = None


class Clock:
    """Sandbox time: starts at the demo firm's as-of date, moves with real time, and can be advanced."""

    def __init__(self, start: date) -> None:
        self._origin = datetime(start.year, start.month, start.day, 12, tzinfo=UTC)
        self._started = time.monotonic()
        self.offset = timedelta()

    def now(self) -> datetime:
        return self._origin + self.offset + timedelta(seconds=time.monotonic() - self._started)

    def today(self) -> date:
        return self.now().date()

    def stamp(self) -> str:
        return self.now().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Stored:
    type: str
    id: int
    external_id: str | None
    last_modified: str
    body: Body

    def as_record(self, base: str) -> Body:
        record: Body = {
            "links": [{"rel": "self", "href": f"{base}/record/v1/{self.type}/{self.id}"}],
            "id": str(self.id),
        }
        record.update(self.body)
        if self.external_id is not None:
            record["externalId"] = self.external_id
        record["lastModifiedDate"] = self.last_modified
        return record


@dataclass
class Store:
    db: sqlite3.Connection
    clock: Clock
    rules: Rules = field(default_factory=Rules)
    tokens: dict[str, float] = field(default_factory=dict)

    @classmethod
    def open(cls, path: str, clock: Clock, rules: Rules | None = None) -> Store:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL" if path != ":memory:" else "PRAGMA journal_mode=MEMORY")
        db.execute("PRAGMA synchronous=OFF")
        for statement in ddl():
            db.execute(statement)
        return cls(db, clock, rules or Rules())

    # -- reads ---------------------------------------------------------------------------------------
    def get(self, type_: str, id_: int) -> Stored | None:
        spec = TYPES[type_]
        row = self.db.execute(
            f"SELECT id, externalid, lastmodifieddate, body FROM {sql_table(spec.table)} "
            "WHERE id = ? AND recordtype = ?",
            (id_, type_),
        ).fetchone()
        return None if row is None else Stored(type_, row[0], row[1], row[2], json.loads(row[3]))

    def get_by_eid(self, type_: str, external_id: str) -> Stored | None:
        spec = TYPES[type_]
        row = self.db.execute(
            f"SELECT id FROM {sql_table(spec.table)} WHERE externalid = ? AND recordtype = ?",
            (external_id, type_),
        ).fetchone()
        return None if row is None else self.get(type_, row[0])

    def exists(self, type_: str, id_: int) -> bool:
        return (
            self.db.execute(
                f"SELECT 1 FROM {sql_table(TYPES[type_].table)} WHERE id = ? AND recordtype = ?", (id_, type_)
            ).fetchone()
            is not None
        )

    def page_ids(self, type_: str, limit: int, offset: int) -> tuple[list[int], int]:
        table = sql_table(TYPES[type_].table)
        total = self.db.execute(f"SELECT COUNT(*) FROM {table} WHERE recordtype = ?", (type_,)).fetchone()[0]
        rows = self.db.execute(
            f"SELECT id FROM {table} WHERE recordtype = ? ORDER BY id LIMIT ? OFFSET ?",
            (type_, limit, offset),
        ).fetchall()
        return [r[0] for r in rows], int(total)

    def iter_type(self, type_: str, where: str = "1=1", params: tuple[Any, ...] = ()) -> Iterator[Stored]:
        table = sql_table(TYPES[type_].table)
        cursor = self.db.execute(
            f"SELECT id, externalid, lastmodifieddate, body FROM {table} WHERE recordtype = ? AND ({where}) "
            "ORDER BY id",
            (type_, *params),
        )
        for row in cursor.fetchall():
            yield Stored(type_, row[0], row[1], row[2], json.loads(row[3]))

    # -- writes --------------------------------------------------------------------------------------
    def insert(
        self, type_: str, body: Body, *, id_: int | None = None, external_id: str | None = None
    ) -> int:
        spec = TYPES[type_]
        cols = [c.name for c in TABLES[spec.table]]
        sql = (
            f"INSERT INTO {sql_table(spec.table)} (id, recordtype, type, externalid, lastmodifieddate, body, "
            f"{', '.join(cols)}) VALUES ({', '.join('?' * (6 + len(cols)))})"
        )
        cursor = self.db.execute(sql, self._row(spec, id_, external_id, body))
        new_id = int(cursor.lastrowid or 0)
        self._sync_lines(type_, [(new_id, body)])
        return new_id

    def replace(self, type_: str, id_: int, body: Body, external_id: str | None) -> None:
        spec = TYPES[type_]
        cols = [c.name for c in TABLES[spec.table]]
        assignments = ", ".join(
            f"{c} = ?" for c in ("recordtype", "type", "externalid", "lastmodifieddate", "body", *cols)
        )
        values = self._row(spec, id_, external_id, body)[1:]
        self.db.execute(f"UPDATE {sql_table(spec.table)} SET {assignments} WHERE id = ?", (*values, id_))
        self._sync_lines(type_, [(id_, body)])

    def delete(self, type_: str, id_: int) -> None:
        self.db.execute(f"DELETE FROM {sql_table(TYPES[type_].table)} WHERE id = ?", (id_,))
        self._sync_lines(type_, [(id_, {})])

    def _sync_lines(self, type_: str, records: Sequence[tuple[int, Mapping[str, Any]]]) -> None:
        """Replace the sublist lines (``lines.LINE_TABLES``) of the records just written."""
        if type_ not in lines.BY_SOURCE:
            return
        ids = [(id_,) for id_, _body in records]
        fresh: dict[str, list[lines.Line]] = {}
        for id_, body in records:
            for spec, rows in lines.rows_for(type_, id_, dict(body)):
                fresh.setdefault(spec.name, []).extend(rows)
        for spec in lines.BY_SOURCE[type_]:
            self.db.executemany(f"DELETE FROM ns_{spec.name} WHERE {spec.owner} = ?", ids)
            self.db.executemany(lines.insert_sql(spec), fresh.get(spec.name, []))

    def _row(
        self, spec: RecordType, id_: int | None, external_id: str | None, body: Body, stamp: str | None = None
    ) -> list[Any]:
        clean = {k: v for k, v in body.items() if k not in ("id", "links", "externalId", "lastModifiedDate")}
        return [
            id_,
            spec.name,
            spec.tran_type,
            external_id,
            stamp or self.clock.stamp(),
            json.dumps(clean, separators=(",", ":")),
            *row_values(spec.table, clean),
        ]

    def bulk_insert(self, type_: str, rows: Sequence[tuple[int, str | None, Mapping[str, Any]]]) -> None:
        """Seeding: many records of one type in one ``executemany``."""
        spec = TYPES[type_]
        cols = [c.name for c in TABLES[spec.table]]
        sql = (
            f"INSERT INTO {sql_table(spec.table)} (id, recordtype, type, externalid, lastmodifieddate, body, "
            f"{', '.join(cols)}) VALUES ({', '.join('?' * (6 + len(cols)))})"
        )
        stamp = self.clock.stamp()
        self.db.executemany(sql, [self._row(spec, i, eid, dict(body), stamp) for i, eid, body in rows])
        self._sync_lines(type_, [(i, body) for i, _eid, body in rows])

    def create_indexes(self) -> None:
        for statement in indexes():
            self.db.execute(statement)

    # -- business lookups ------------------------------------------------------------------------------
    def period_for(self, on: str) -> tuple[int, str, bool] | None:
        row = self.db.execute(
            "SELECT id, periodname, closed FROM ns_accountingperiod WHERE startdate <= ? AND enddate >= ? "
            "ORDER BY startdate DESC LIMIT 1",
            (on, on),
        ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]), row[2] == "T")

    def rate(self, base: str, quote: str, on: str) -> float | None:
        """Units of ``quote`` per one ``base`` effective on ``on`` (inverse rate if only that is known)."""
        if base == quote:
            return 1.0
        sql = (
            "SELECT exchangerate FROM ns_currencyrate WHERE basecurrency = ? AND transactioncurrency = ? "
            "AND effectivedate <= ? ORDER BY effectivedate DESC LIMIT 1"
        )
        row = self.db.execute(sql, (base, quote, on)).fetchone()
        if row is not None:
            return float(row[0])
        row = self.db.execute(sql, (quote, base, on)).fetchone()
        return None if row is None else 1.0 / float(row[0])

    def currency_code(self, currency_id: object) -> str | None:
        row = self.db.execute("SELECT symbol FROM ns_currency WHERE id = ?", (_int(currency_id),)).fetchone()
        return None if row is None else str(row[0])


def ref_id(value: object) -> int | None:
    """The internal id in a reference ``{"id": "12"}`` (or a bare id)."""
    if isinstance(value, dict):
        value = value.get("id")
    return _int(value)


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None
