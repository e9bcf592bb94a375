"""Sublist tables: what NetSuite exposes to SuiteQL about a record's sublists, kept in step with the
records.

The REST records carry sublists inline (a payment's ``apply.items``, a billing schedule's ``milestones``
and ``rateCard``); real NetSuite also answers them as tables, so one SuiteQL reads them for many records::

    SELECT previousdoc, nextdoc, foreignamount FROM NextTransactionLineLink WHERE previousdoc IN (...)
    SELECT billingschedule, name, amount, duedate FROM billingschedulemilestone WHERE billingschedule IN (...)

``NextTransactionLineLink`` (``previousdoc`` the invoice, ``nextdoc`` the payment or credit memo applied to
it, ``foreignamount`` in the applying transaction's currency, ``linktype``) is NetSuite's table. The names
of the billing schedule's milestone and rate tables are the sandbox's (unverified): NetSuite's records
catalog is the place to check them against an account. Every write of an owning record replaces its lines
(``Store`` calls ``rows_for`` on insert, replace and bulk insert, and deletes them with the record).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

Body = dict[str, Any]
Line = tuple[object, ...]


@dataclass(frozen=True)
class LineTable:
    name: str
    owner: str  # the column naming the owning record's internal id
    columns: tuple[tuple[str, str], ...]  # (name, SQL type) after the owner column
    sources: tuple[str, ...]  # REST record types whose writes feed the table
    lines: Callable[[str, int, Body], Iterable[Line]]  # (record type, id, body) → values after owner


TRAN_TYPE = {"customerPayment": "CustPymt", "creditMemo": "CustCred"}


def _bool(value: object) -> str:
    return "T" if value is True or value == "T" else "F"


def _num(value: object) -> float | None:
    try:
        return None if value is None else float(str(value))
    except ValueError:
        return None


def _ref(value: object) -> int | None:
    raw = value.get("id") if isinstance(value, dict) else value
    try:
        return int(str(raw))
    except ValueError:
        return None


def _sublist(body: Body, *path: str) -> list[dict[str, Any]]:
    node: Any = body
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return [item for item in node or [] if isinstance(item, dict)] if isinstance(node, list) else []


def _applications(type_: str, _id: int, body: Body) -> Iterable[Line]:
    for n, item in enumerate(_sublist(body, "apply", "items")):
        doc = _ref(item.get("doc"))
        if doc is None or item.get("apply", True) is False:
            continue
        yield (
            n,
            doc,
            "CustInvc",
            TRAN_TYPE[type_],
            "Payment",
            _num(item.get("amount")),
            _num(item.get("invoiceAmount", item.get("amount"))),
            body.get("tranDate"),
        )


def _milestones(_type: str, _id: int, body: Body) -> Iterable[Line]:
    for n, event in enumerate(_sublist(body, "milestones")):
        yield (
            n,
            None if event.get("id") is None else str(event["id"]),
            event.get("name"),
            _num(event.get("amount")),
            event.get("currency"),
            event.get("dueDate"),
            _bool(event.get("completed")),
            _bool(event.get("billed")),
            _ref(event.get("invoice")),
        )


def _rates(_type: str, _id: int, body: Body) -> Iterable[Line]:
    for n, line in enumerate(_sublist(body, "rateCard")):
        yield (
            n,
            line.get("labourCategory"),
            line.get("productCode"),
            _num(line.get("rate")),
            line.get("currency"),
        )


LINE_TABLES: dict[str, LineTable] = {
    t.name: t
    for t in (
        LineTable(
            "nexttransactionlinelink",
            "nextdoc",
            (
                ("nextline", "INTEGER"),
                ("previousdoc", "INTEGER"),
                ("previoustype", "TEXT"),
                ("nexttype", "TEXT"),
                ("linktype", "TEXT"),
                ("foreignamount", "REAL"),
                ("amount", "REAL"),
                ("linkdate", "TEXT"),
            ),
            ("customerPayment", "creditMemo"),
            _applications,
        ),
        LineTable(
            "billingschedulemilestone",
            "billingschedule",
            (
                ("linenumber", "INTEGER"),
                ("milestone", "TEXT"),
                ("name", "TEXT"),
                ("amount", "REAL"),
                ("currency", "TEXT"),
                ("duedate", "TEXT"),
                ("completed", "TEXT"),
                ("billed", "TEXT"),
                ("invoice", "INTEGER"),
            ),
            ("billingSchedule",),
            _milestones,
        ),
        LineTable(
            "billingschedulerate",
            "billingschedule",
            (
                ("linenumber", "INTEGER"),
                ("labourcategory", "TEXT"),
                ("productcode", "TEXT"),
                ("rate", "REAL"),
                ("currency", "TEXT"),
            ),
            ("billingSchedule",),
            _rates,
        ),
    )
}
BY_SOURCE: dict[str, tuple[LineTable, ...]] = {}
for _table in LINE_TABLES.values():
    for _source in _table.sources:
        BY_SOURCE[_source] = (*BY_SOURCE.get(_source, ()), _table)


def columns(table: str) -> tuple[str, ...]:
    spec = LINE_TABLES[table]
    return (spec.owner, *(name for name, _type in spec.columns))


def ddl() -> list[str]:
    statements = []
    for spec in LINE_TABLES.values():
        cols = ", ".join(f"{name} {sql_type}" for name, sql_type in spec.columns)
        statements.append(f"CREATE TABLE ns_{spec.name} ({spec.owner} INTEGER NOT NULL, {cols})")
        statements.append(f"CREATE INDEX ns_{spec.name}_owner ON ns_{spec.name}({spec.owner})")
    # Links are read from the invoice's side too.
    statements.append(
        "CREATE INDEX ns_nexttransactionlinelink_prev ON ns_nexttransactionlinelink(previousdoc)"
    )
    return statements


def insert_sql(spec: LineTable) -> str:
    names = columns(spec.name)
    return f"INSERT INTO ns_{spec.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"


def rows_for(type_: str, id_: int, body: Body) -> list[tuple[LineTable, list[Line]]]:
    """The lines of one record, per table it feeds (empty lists included, so stale lines get removed)."""
    return [
        (spec, [(id_, *line) for line in spec.lines(type_, id_, body)]) for spec in BY_SOURCE.get(type_, ())
    ]
