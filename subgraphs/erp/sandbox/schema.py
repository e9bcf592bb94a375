"""Record types the NetSuite sandbox serves and the SQL tables that hold them.

Every record is stored whole as JSON (``body``) next to indexed columns for what SuiteQL filters and
aggregates on. Several REST record types share one table, as in NetSuite: invoices, payments, credit memos,
sales orders and expense reports are rows of ``transaction`` told apart by ``type`` (``CustInvc`` ...).

Column kinds: ``ref`` holds the internal id of ``{"id": "..."}``, ``bool`` holds ``'T'``/``'F'`` (SuiteQL's
spelling), ``date`` an ISO date string, ``num`` a REAL, ``text`` as is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from subgraphs.erp.sandbox import lines


@dataclass(frozen=True)
class Column:
    name: str
    fields: tuple[str, ...]  # wire fields feeding the column, first present wins
    kind: str = "text"


def col(name: str, *fields: str, kind: str = "text") -> Column:
    return Column(name, fields or (name,), kind)


#: SuiteQL table → its columns (besides id, externalid, lastmodifieddate which every table has).
TABLES: dict[str, tuple[Column, ...]] = {
    "customer": (
        col("entityid", "entityId"),
        col("companyname", "companyName"),
        col("subsidiary", kind="ref"),
        col("currency", kind="ref"),
        col("terms", kind="ref"),
        col("accountnumber", "accountNumber"),
        col("vatregnumber", "vatRegNumber"),
        col("isinactive", "isInactive", kind="bool"),
    ),
    "job": (
        col("entityid", "entityId"),
        col("companyname", "companyName"),
        col("parent", kind="ref"),
        col("jobbillingtype", "jobBillingType"),
        col("status"),
        col("startdate", "startDate", kind="date"),
        col("projectedenddate", "projectedEndDate", kind="date"),
        col("currency", kind="ref"),
        col("subsidiary", kind="ref"),
        col("custentity_business_line"),  # a custom entity field is a SuiteQL column, as in NetSuite
    ),
    "projecttask": (
        col("company", kind="ref"),
        col("title"),
        col("status"),
        col("ismilestone", "isMilestone", kind="bool"),
    ),
    "billingschedule": (
        col("job", kind="ref"),
        col("scheduletype", "scheduleType"),
        col("name"),
        col("inarrears", "recurrence.inArrears", kind="bool"),
        col("frequency", "recurrence.frequency"),
    ),
    "timebill": (
        col("employee", kind="ref"),
        col("customer", kind="ref"),
        col("trandate", "tranDate", kind="date"),
        col("hours", kind="num"),
        col("rate", kind="num"),
        col("item", kind="ref"),
        col("isbillable", "isBillable", kind="bool"),
        col("billed", kind="bool"),
        col("approvalstatus", "approvalStatus"),
        col("subsidiary", kind="ref"),
        col("memo"),
    ),
    "transaction": (
        col("tranid", "tranId"),
        col("entity", "entity", "customer", kind="ref"),
        col("job", kind="ref"),
        col("trandate", "tranDate", kind="date"),
        col("duedate", "dueDate", kind="date"),
        col("currency", kind="ref"),
        col("foreigntotal", "total", "payment", kind="num"),
        col("amountpaid", "amountPaid", kind="num"),
        col("amountremaining", "amountRemaining", kind="num"),
        col("status"),
        col("subsidiary", kind="ref"),
        col("memo"),
    ),
    "accountingperiod": (
        col("periodname", "periodName"),
        col("startdate", "startDate", kind="date"),
        col("enddate", "endDate", kind="date"),
        col("closed", kind="bool"),
    ),
    "currencyrate": (
        col("basecurrency", "baseCurrency"),
        col("transactioncurrency", "transactionCurrency"),
        col("exchangerate", "exchangeRate", kind="num"),
        col("effectivedate", "effectiveDate", kind="date"),
    ),
    "employee": (
        col("entityid", "entityId"),
        col("email"),
        col("subsidiary", kind="ref"),
        col("title"),
        col("laborcost", "laborCost", kind="num"),
    ),
    "subsidiary": (col("name"), col("currency", kind="ref"), col("country")),
    "currency": (col("symbol"), col("name")),
    "item": (
        col("itemid", "itemId"),
        col("displayname", "displayName"),
        col("itemtype", "itemType"),
        col("rate", kind="num"),
    ),
}
COMMON_COLUMNS = ("id", "externalid", "lastmodifieddate")


@dataclass(frozen=True)
class RecordType:
    name: str  # REST record type, e.g. "timeBill"
    table: str
    tran_type: str | None = None  # transaction.type for rows of the shared table
    refs: dict[str, tuple[str, ...]] = field(default_factory=dict)  # field → record types it may point at
    required: tuple[str, ...] = ()
    dated: bool = False  # tranDate must fall in an open accounting period


_ENTITY = ("customer", "job")
TYPES: dict[str, RecordType] = {
    t.name: t
    for t in (
        RecordType(
            "customer",
            "customer",
            refs={"subsidiary": ("subsidiary",), "currency": ("currency",)},
            required=("companyName", "subsidiary"),
        ),
        RecordType(
            "job",
            "job",
            refs={"parent": ("customer",), "subsidiary": ("subsidiary",), "currency": ("currency",)},
            required=("companyName", "parent"),
        ),
        RecordType("projectTask", "projecttask", refs={"company": ("job",)}, required=("company", "title")),
        RecordType(
            "billingSchedule", "billingschedule", refs={"job": ("job",)}, required=("job", "scheduleType")
        ),
        RecordType(
            "timeBill",
            "timebill",
            refs={
                "employee": ("employee",),
                "customer": ("job",),
                "item": ("serviceItem",),
                "subsidiary": ("subsidiary",),
            },
            required=("employee", "customer", "tranDate", "hours"),
            dated=True,
        ),
        RecordType(
            "salesOrder",
            "transaction",
            "SalesOrd",
            refs={"entity": _ENTITY, "job": ("job",), "currency": ("currency",)},
            required=("entity", "tranDate"),
        ),
        RecordType(
            "invoice",
            "transaction",
            "CustInvc",
            refs={"entity": _ENTITY, "job": ("job",), "currency": ("currency",)},
            required=("entity", "tranDate"),
            dated=True,
        ),
        RecordType(
            "customerPayment",
            "transaction",
            "CustPymt",
            refs={"customer": ("customer",), "currency": ("currency",)},
            required=("customer", "tranDate", "payment"),
            dated=True,
        ),
        RecordType(
            "creditMemo",
            "transaction",
            "CustCred",
            refs={"entity": ("customer",), "currency": ("currency",)},
            required=("entity", "tranDate"),
            dated=True,
        ),
        RecordType(
            "expenseReport",
            "transaction",
            "ExpRept",
            refs={"entity": ("employee",), "job": ("job",)},
            required=("entity", "tranDate"),
            dated=True,
        ),
        RecordType("accountingPeriod", "accountingperiod", required=("periodName", "startDate", "endDate")),
        RecordType("currencyRate", "currencyrate", required=("baseCurrency", "transactionCurrency")),
        RecordType("employee", "employee", refs={"subsidiary": ("subsidiary",)}),
        RecordType("subsidiary", "subsidiary"),
        RecordType("currency", "currency"),
        RecordType("serviceItem", "item"),
    )
}
ITEM_TYPE = {"serviceItem": "Service"}


def sql_table(table: str) -> str:
    """SQLite name of a SuiteQL table (``transaction`` is an SQL keyword)."""
    return f"ns_{table}"


def ddl() -> list[str]:
    """Tables and bookkeeping; ``indexes()`` come after seeding, which is faster than maintaining them."""
    statements = []
    for name, columns in TABLES.items():
        table = sql_table(name)
        cols = ", ".join(f"{c.name} {_sql_type(c.kind)}" for c in columns)
        statements.append(
            f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, recordtype TEXT NOT NULL, type TEXT, "
            f"externalid TEXT, lastmodifieddate TEXT NOT NULL, body TEXT NOT NULL, {cols})"
        )
    statements.extend(lines.ddl())
    statements.append("CREATE TABLE idempotency (key TEXT PRIMARY KEY, location TEXT, created TEXT)")
    statements.append(
        "CREATE TABLE asyncjob (id INTEGER PRIMARY KEY, status TEXT, location TEXT, error TEXT, created TEXT)"
    )
    return statements


def indexes() -> list[str]:
    statements = []
    for name, columns in TABLES.items():
        table = sql_table(name)
        statements.append(f"CREATE UNIQUE INDEX IF NOT EXISTS {table}_eid ON {table}(recordtype, externalid)")
        statements.append(f"CREATE INDEX IF NOT EXISTS {table}_lmd ON {table}(lastmodifieddate)")
        statements.append(f"CREATE INDEX IF NOT EXISTS {table}_type ON {table}(type)")
        for c in columns:
            if c.kind in ("ref", "date") or c.name == "entityid":
                statements.append(f"CREATE INDEX IF NOT EXISTS {table}_{c.name} ON {table}({c.name})")
    return statements


def _sql_type(kind: str) -> str:
    return {"ref": "INTEGER", "num": "REAL"}.get(kind, "TEXT")


def is_table(name: str) -> bool:
    return name in TABLES or name in lines.LINE_TABLES


def columns_of(table: str) -> tuple[str, ...]:
    """Columns SuiteQL may name; ``type`` only means something on ``transaction``."""
    if table in lines.LINE_TABLES:
        return lines.columns(table)
    extra = ("type",) if table == "transaction" else ()
    return (*COMMON_COLUMNS, *extra, *(c.name for c in TABLES[table]))


def row_values(table: str, body: dict[str, object]) -> list[object]:
    """The indexed column values of ``body`` in ``TABLES[table]`` order (hot path when seeding)."""
    values: list[object] = []
    for c in TABLES[table]:
        raw = None
        for name in c.fields:
            raw = _path(body, name)
            if raw is not None:
                break
        values.append(None if raw is None else _column_value(c.kind, raw))
    return values


def _path(body: dict[str, object], name: str) -> object:
    """``body[name]``, or a nested field for a dotted name (``recurrence.inArrears``)."""
    if "." not in name:
        return body.get(name)
    node: object = body
    for key in name.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _column_value(kind: str, raw: object) -> object:
    if kind == "ref":
        ref = raw.get("id") if isinstance(raw, dict) else raw
        try:
            return int(str(ref))
        except ValueError:
            return None
    if kind == "bool":
        return "T" if raw is True or raw == "T" else "F"
    if kind == "num":
        if isinstance(raw, int | float):
            return float(raw)
        try:
            return float(str(raw))
        except ValueError:
            return None
    return raw if isinstance(raw, str) else str(raw)
