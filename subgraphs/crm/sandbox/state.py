"""The sandbox's org: sObject tables and the change-event log in one SQLite database.

Every write appends its change event in the same transaction as the change, so a rolled-back
``allOrNone`` collection leaves neither records nor events behind. The methods are synchronous and never
await, so requests served concurrently on one event loop cannot interleave inside a write.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from subgraphs.crm.sandbox.schema import (
    BY_PREFIX,
    OBJECTS,
    REF,
    STAGES,
    SfError,
    SObject,
    from_db,
    now_stamp,
    sobject,
    to_db,
)
from subgraphs.crm.sandbox.soql import Compiled, compile_soql

_SKIP = {"attributes"}
_MAX_CURSORS = 200


@dataclass
class Page:
    records: list[dict[str, Any]]
    total: int
    next_locator: str | None  # "01g...-2000", or None when done


class CrmState:
    def __init__(self, db_path: str = ":memory:") -> None:
        # isolation_level=None: transactions are explicit (BEGIN / SAVEPOINT), never implicit.
        self.db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        self.cursors: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self._cursor_seq = 0
        exists = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_events'"
        ).fetchone()
        if not exists:
            self.db.execute("BEGIN")
            for obj in OBJECTS.values():
                self.db.execute(obj.ddl())
                for f in obj.fields.values():
                    if f.external_id or f.type == REF:
                        self.db.execute(f'CREATE INDEX "ix_{obj.name}_{f.name}" ON "{obj.name}" ("{f.name}")')
            self.db.execute("CREATE TABLE _events (replay_id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT)")
            self.db.execute("CREATE TABLE _ids (prefix TEXT PRIMARY KEY, n INTEGER NOT NULL)")
            self.db.execute("COMMIT")

    def is_empty(self) -> bool:
        return all(self.db.execute(f'SELECT 1 FROM "{name}" LIMIT 1').fetchone() is None for name in OBJECTS)

    # -- bulk load (seeding) ---------------------------------------------------------------------------
    def load(self, obj_name: str, rows: list[dict[str, Any]]) -> None:
        """Insert prepared rows without events: the seeded org predates the gateway."""
        obj = OBJECTS[obj_name]
        names = list(obj.fields)
        sql = (
            f'INSERT INTO "{obj.name}" ({", ".join(f"{chr(34)}{n}{chr(34)}" for n in names)}) '
            f"VALUES ({', '.join('?' * len(names))})"
        )
        self.db.execute("BEGIN")
        self.db.executemany(sql, ([row.get(n) for n in names] for row in rows))
        self.db.execute("COMMIT")

    # -- reads -----------------------------------------------------------------------------------------
    def query(self, soql: str, batch_size: int) -> Page:
        compiled = compile_soql(soql)
        records = [self._render(compiled, row) for row in self.db.execute(compiled.sql, compiled.params)]
        return self._page(records, 0, batch_size, None)

    def query_more(self, locator: str, batch_size: int) -> Page:
        cursor_id, _, offset = locator.rpartition("-")
        records = self.cursors.get(cursor_id)
        if records is None or not offset.isdigit():
            raise SfError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._page(records, int(offset), batch_size, cursor_id)

    def _page(self, records: list[dict[str, Any]], offset: int, size: int, cursor_id: str | None) -> Page:
        end = offset + size
        if end >= len(records):
            if cursor_id is not None:
                self.cursors.pop(cursor_id, None)
            return Page(records[offset:], len(records), None)
        if cursor_id is None:
            self._cursor_seq += 1
            cursor_id = f"01g{self._cursor_seq:012d}AAA"
            self.cursors[cursor_id] = records
            while len(self.cursors) > _MAX_CURSORS:
                self.cursors.popitem(last=False)
        return Page(records[offset:end], len(records), f"{cursor_id}-{end}")

    def _render(self, compiled: Compiled, row: tuple[Any, ...]) -> dict[str, Any]:
        record: dict[str, Any] = {"attributes": _attributes(compiled.sobject.name, row[0])}
        parent_ids = dict(zip(compiled.parents, row[1 + len(compiled.columns) :], strict=True))
        for column, value in zip(compiled.columns, row[1:], strict=False):
            if column.rel is None:
                record[column.field.name] = from_db(column.field, value)
                continue
            rel, parent_id = column.rel.rel or "", parent_ids[column.rel.rel or ""]
            if parent_id is None:
                record[rel] = None
                continue
            nested = record.setdefault(rel, {"attributes": _attributes(column.rel.ref or "", parent_id)})
            nested[column.field.name] = from_db(column.field, value)
        return record

    def get(self, obj_name: str, record_id: str) -> dict[str, Any]:
        obj = sobject(obj_name)
        row = self._row(obj, record_id)
        if row is None:
            raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
        return {
            "attributes": _attributes(obj.name, record_id),
            **{name: from_db(obj.fields[name], value) for name, value in row.items()},
        }

    def _row(self, obj: SObject, record_id: str) -> dict[str, Any] | None:
        cursor = self.db.execute(f'SELECT * FROM "{obj.name}" WHERE "Id" = ?', (record_id,))
        row = cursor.fetchone()
        return None if row is None else dict(zip([d[0] for d in cursor.description], row, strict=True))

    def find_by(self, obj: SObject, field_name: str, value: str) -> list[str]:
        f = obj.field(field_name)
        if f is None or not (f.external_id or f.name == "Id"):
            raise SfError(
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {field_name}",
            )
        rows = self.db.execute(f'SELECT "Id" FROM "{obj.name}" WHERE "{f.name}" = ? ORDER BY rowid', (value,))
        return [r[0] for r in rows]

    def events_after(self, replay_id: int, limit: int) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT body FROM _events WHERE replay_id > ? ORDER BY replay_id LIMIT ?", (replay_id, limit)
        )
        return [json.loads(r[0]) for r in rows]

    def latest_replay_id(self) -> int:
        return int(self.db.execute("SELECT COALESCE(MAX(replay_id), 0) FROM _events").fetchone()[0])

    # -- writes ----------------------------------------------------------------------------------------
    def transaction(self) -> _Transaction:
        return _Transaction(self.db)

    def create(
        self, obj_name: str, values: dict[str, Any], origin: str, txn: str
    ) -> tuple[str, dict[str, Any]]:
        """Insert a record; returns its id and the change event appended for it."""
        obj = sobject(obj_name)
        row = self._coerce(obj, values)
        missing = [f.name for f in obj.fields.values() if f.required and row.get(f.name) is None]
        if missing:
            raise SfError(
                400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing
            )
        record_id = self._new_id(obj)
        stamp = now_stamp()
        row.update(Id=record_id, CreatedDate=stamp, LastModifiedDate=stamp, SystemModstamp=stamp)
        self._derive(obj, row)
        names = list(row)
        self.db.execute(
            f'INSERT INTO "{obj.name}" ({", ".join(f"{chr(34)}{n}{chr(34)}" for n in names)}) '
            f"VALUES ({', '.join('?' * len(names))})",
            [row[n] for n in names],
        )
        body = {n: from_db(obj.fields[n], v) for n, v in row.items() if v is not None and n != "Id"}
        return record_id, self._event(obj, record_id, "CREATE", [], body, origin, txn)

    def update(
        self, obj_name: str, record_id: str, values: dict[str, Any], origin: str, txn: str
    ) -> dict[str, Any]:
        obj = sobject(obj_name)
        before = self._row(obj, record_id)
        if before is None:
            raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
        row = self._coerce(obj, values)
        merged = {**before, **row}
        self._derive(obj, merged)
        changed = [n for n in merged if merged[n] != before[n]]
        stamp = now_stamp()
        merged.update(LastModifiedDate=stamp, SystemModstamp=stamp)
        if "LastModifiedDate" not in changed:
            changed.append("LastModifiedDate")
        sets = ", ".join(f'"{n}" = ?' for n in [*changed, "SystemModstamp"])
        self.db.execute(
            f'UPDATE "{obj.name}" SET {sets} WHERE "Id" = ?',
            [*(merged[n] for n in changed), stamp, record_id],
        )
        body = {n: from_db(obj.fields[n], merged[n]) for n in changed}
        return self._event(obj, record_id, "UPDATE", changed, body, origin, txn)

    def delete(self, obj_name: str, record_id: str, origin: str, txn: str) -> dict[str, Any]:
        obj = sobject(obj_name)
        if self._row(obj, record_id) is None:
            raise SfError(404, "ENTITY_IS_DELETED", "entity is deleted")
        self.db.execute(f'DELETE FROM "{obj.name}" WHERE "Id" = ?', (record_id,))
        return self._event(obj, record_id, "DELETE", [], {}, origin, txn)

    def upsert(
        self, obj_name: str, field_name: str, value: str, values: dict[str, Any], origin: str, txn: str
    ) -> tuple[str, bool, dict[str, Any]]:
        """(id, created, event); several matches → SfError 300 whose fields list the record ids."""
        obj = sobject(obj_name)
        matches = self.find_by(obj, field_name, value)
        if len(matches) > 1:
            raise SfError(
                300, "MULTIPLE_CHOICES", f"{len(matches)} records match {field_name} = {value}", matches
            )
        ext = obj.field(field_name)
        values = {k: v for k, v in values.items() if ext is None or k.lower() != ext.name.lower()}
        if matches:
            return matches[0], False, self.update(obj.name, matches[0], values, origin, txn)
        if ext is not None and ext.name != "Id":
            values[ext.name] = value
        record_id, event = self.create(obj.name, values, origin, txn)
        return record_id, True, event

    def _coerce(self, obj: SObject, values: dict[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for name, value in values.items():
            if name in _SKIP:
                continue
            f = obj.field(name)
            if f is None:
                raise SfError(
                    400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {obj.name}", [name]
                )
            if not f.writable:
                raise SfError(
                    400,
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {f.name}. Please check the security settings "
                    "of this field and verify that it is read/write for your profile.",
                    [f.name],
                )
            row[f.name] = to_db(f, value)
            if f.type == REF and row[f.name] is not None:
                target = OBJECTS[f.ref or ""]
                if not row[f.name].startswith(target.prefix) or self._row(target, row[f.name]) is None:
                    raise SfError(
                        400,
                        "INVALID_CROSS_REFERENCE_KEY",
                        f"invalid cross reference id: {f.name} = {row[f.name]}",
                        [f.name],
                    )
        return row

    def _derive(self, obj: SObject, row: dict[str, Any]) -> None:
        """Fields Salesforce computes: the closed/won flags from the stage, a line's total and currency."""
        if obj.name == "Opportunity" and "StageName" in row:
            if row["StageName"] not in STAGES:
                raise SfError(
                    400,
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"Stage: bad value for restricted picklist field: {row['StageName']}",
                    ["StageName"],
                )
            row["IsClosed"] = int(row["StageName"].startswith("Closed"))
            row["IsWon"] = int(row["StageName"] == "Closed Won")
        if obj.name == "OpportunityLineItem":
            if row.get("Quantity") is not None and row.get("UnitPrice") is not None:
                row["TotalPrice"] = round(row["Quantity"] * row["UnitPrice"], 2)
            parent = self._row(OBJECTS["Opportunity"], row.get("OpportunityId") or "")
            if parent is not None:
                row["CurrencyIsoCode"] = parent["CurrencyIsoCode"]

    def _new_id(self, obj: SObject) -> str:
        # Ids minted here start at 1e11 so they never collide with the seeded firm's (sf_id(prefix, n)).
        self.db.execute(
            "INSERT INTO _ids (prefix, n) VALUES (?, 100000000000) "
            "ON CONFLICT (prefix) DO UPDATE SET n = n + 1",
            (obj.prefix,),
        )
        n = self.db.execute("SELECT n FROM _ids WHERE prefix = ?", (obj.prefix,)).fetchone()[0]
        return f"{obj.prefix}{n:012d}AAA"

    def _event(
        self,
        obj: SObject,
        record_id: str,
        change: str,
        changed: list[str],
        fields: dict[str, Any],
        origin: str,
        txn: str,
    ) -> dict[str, Any]:
        entity = obj.name[:-3] + "__" if obj.name.endswith("__c") else obj.name
        header = {
            "entityName": obj.name,
            "recordIds": [record_id],
            "changeType": change,
            "changedFields": changed,
            "changeOrigin": origin,
            "transactionKey": txn,
            "sequenceNumber": 1,
            "commitTimestamp": int(datetime.now(UTC).timestamp() * 1000),
            "commitUser": "005000000000001AAA",
        }
        cursor = self.db.execute("INSERT INTO _events (body) VALUES ('{}')")
        replay_id = int(cursor.lastrowid or 0)
        event = {
            "replayId": replay_id,
            "channel": f"/data/{entity}ChangeEvent",
            "payload": {"ChangeEventHeader": header, **fields},
        }
        self.db.execute("UPDATE _events SET body = ? WHERE replay_id = ?", (json.dumps(event), replay_id))
        return event


class _Transaction:
    """``with state.transaction() as txn:`` — all writes inside commit together or not at all; ``txn.key``
    is the CDC transactionKey they share. ``savepoint()`` isolates one record of a collection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.key = str(uuid.uuid4())
        self._savepoints = 0

    def __enter__(self) -> _Transaction:
        self.db.execute("BEGIN")
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.db.execute("ROLLBACK" if exc_type is not None else "COMMIT")

    def savepoint(self) -> _Savepoint:
        self._savepoints += 1
        return _Savepoint(self.db, f"sp{self._savepoints}")


class _Savepoint:
    def __init__(self, db: sqlite3.Connection, name: str) -> None:
        self.db, self.name = db, name

    def __enter__(self) -> None:
        self.db.execute(f"SAVEPOINT {self.name}")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.db.execute(f"ROLLBACK TO {self.name}")
        self.db.execute(f"RELEASE {self.name}")


def _attributes(obj_name: str, record_id: str) -> dict[str, str]:
    return {"type": obj_name, "url": f"/services/data/v62.0/sobjects/{obj_name}/{record_id}"}


def object_of(record_id: str) -> SObject | None:
    return BY_PREFIX.get(record_id[:3])
