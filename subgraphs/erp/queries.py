"""Bulk reads over SuiteQL: one query per chunk of ≤ ``in_list_max`` ids, ≤ 1000 rows a page.

Mixed into ``ErpClient``; loaders call these so a GraphQL request over 100 accounts costs a handful of
upstream calls. Ids are validated as integers and strings quoted (``wire.sql_ids``/``sql_string``):
NetSuite's REST SuiteQL takes no bind parameters.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from canonical.money import Money
from subgraphs.erp.config import ErpConfig
from subgraphs.erp.lists import INVOICE_COLUMNS as INVOICE_COLUMNS
from subgraphs.erp.lists import JOB_COLUMNS as JOB_COLUMNS
from subgraphs.erp.lists import Lists
from subgraphs.erp.refdata import Reference
from subgraphs.erp.wire import Record, decimal, sql_ids, sql_string

CUSTOMER_COLUMNS = (
    "id, externalid, entityid, companyname, accountnumber, subsidiary, currency, vatregnumber, "
    "isinactive, lastmodifieddate"
)
TIME_BILL_COLUMNS = (
    "id, externalid, employee, customer, trandate, hours, rate, item, isbillable, billed, "
    "approvalstatus, memo, lastmodifieddate"
)
SALES_ORDER_COLUMNS = (
    "id, externalid, tranid, entity, job, trandate, currency, foreigntotal, status, subsidiary, memo"
)
RECEIPT_COLUMNS = "id, externalid, tranid, type, entity, trandate, currency, foreigntotal, status, memo"
PROJECT_TASK_COLUMNS = "id, externalid, company, title, status, ismilestone"
BILLING_SCHEDULE_COLUMNS = "id, externalid, job, scheduletype, name, inarrears, frequency"
MILESTONE_COLUMNS = (
    "billingschedule, linenumber, milestone, name, amount, currency, duedate, completed, billed"
)
RATE_COLUMNS = "billingschedule, linenumber, labourcategory, productcode, rate, currency"
BUCKETS = ((1, 30), (31, 60), (61, 90), (91, None))


@dataclass(frozen=True)
class InvoiceTotals:
    """Receivables of one customer in one currency as of a date."""

    customer_id: str
    currency: str
    invoices: int
    billed: Money
    paid: Money
    remaining: Money
    overdue: Money
    overdue_buckets: dict[str, Money]  # "1-30", "31-60", "61-90", "91+" days past due
    billed_in_window: Money | None = None  # invoices dated in [window_start, as_of] (DSO)
    credited: Money | None = None  # credit memos dated ≤ as_of


def chunked(ids: Iterable[str], size: int) -> list[list[str]]:
    unique = list(dict.fromkeys(str(i) for i in ids))
    return [unique[i : i + size] for i in range(0, len(unique), size)]


class Queries(Lists):
    config: ErpConfig
    suiteql: Callable[..., Awaitable[list[Record]]]
    reference_data: Callable[[], Awaitable[Reference]]
    get: Callable[[str, str], Awaitable[Record]]

    async def _by_chunks(self, ids: Iterable[str], query: Callable[[list[str]], str]) -> list[Record]:
        chunks = chunked(ids, self.config.in_list_max)
        results = await asyncio.gather(*(self.suiteql(query(chunk)) for chunk in chunks))
        return [row for rows in results for row in rows]

    async def customers_by_ids(self, ids: Iterable[str]) -> dict[str, Record]:
        rows = await self._by_chunks(
            ids, lambda c: f"SELECT {CUSTOMER_COLUMNS} FROM customer WHERE id IN ({sql_ids(c)}) ORDER BY id"
        )
        return {str(r["id"]): r for r in rows}

    async def jobs_by_ids(self, ids: Iterable[str]) -> dict[str, Record]:
        rows = await self._by_chunks(
            ids, lambda c: f"SELECT {JOB_COLUMNS} FROM job WHERE id IN ({sql_ids(c)}) ORDER BY id"
        )
        return {str(r["id"]): r for r in rows}

    async def _by_ids_or_external_ids(
        self, select: str, ids: Iterable[str], external_ids: Iterable[str]
    ) -> list[Record]:
        """Rows of ``select`` (which has a WHERE) by internal id or external id (our canonical id): one
        SuiteQL for the usual batch, else one per chunk of each."""
        by_id = chunked(ids, self.config.in_list_max)
        by_eid = chunked(external_ids, self.config.in_list_max)

        def eids(chunk: list[str]) -> str:
            return ", ".join(sql_string(e) for e in chunk)

        queries = [f"{select} AND id IN ({sql_ids(c)}) ORDER BY id" for c in by_id]
        queries += [f"{select} AND externalid IN ({eids(c)}) ORDER BY id" for c in by_eid]
        if len(by_id) == 1 and len(by_eid) == 1:
            queries = [
                f"{select} AND (id IN ({sql_ids(by_id[0])}) OR externalid IN ({eids(by_eid[0])})) ORDER BY id"
            ]
        results = await asyncio.gather(*(self.suiteql(q) for q in queries))
        unique = {str(r["id"]): r for rows in results for r in rows}
        return list(unique.values())

    async def jobs_by_ids_or_external_ids(
        self, ids: Iterable[str], external_ids: Iterable[str]
    ) -> list[Record]:
        """Jobs by internal id or by external id (our canonical id)."""
        return await self._by_ids_or_external_ids(
            f"SELECT {JOB_COLUMNS} FROM job WHERE 1 = 1", ids, external_ids
        )

    async def invoices_by_ids_or_external_ids(
        self, ids: Iterable[str], external_ids: Iterable[str]
    ) -> list[Record]:
        return await self._by_ids_or_external_ids(
            f"SELECT {INVOICE_COLUMNS} FROM transaction WHERE type = 'CustInvc'", ids, external_ids
        )

    async def invoices_by_job_ids(self, job_ids: Iterable[str]) -> dict[str, list[Record]]:
        wanted = [str(i) for i in job_ids]
        result: dict[str, list[Record]] = {i: [] for i in wanted}
        rows = await self._by_chunks(
            wanted,
            lambda c: (
                f"SELECT {INVOICE_COLUMNS} FROM transaction "
                f"WHERE type = 'CustInvc' AND job IN ({sql_ids(c)}) ORDER BY id"
            ),
        )
        for row in rows:
            result.setdefault(str(row["job"]), []).append(row)
        return result

    async def invoices_by_customer_ids(self, ids: Iterable[str]) -> dict[str, list[Record]]:
        wanted = [str(i) for i in ids]
        rows = await self._by_chunks(
            wanted,
            lambda c: (
                f"SELECT {INVOICE_COLUMNS} FROM transaction "
                f"WHERE type = 'CustInvc' AND entity IN ({sql_ids(c)}) "
                "ORDER BY id"
            ),
        )
        result: dict[str, list[Record]] = {i: [] for i in wanted}
        for row in rows:
            result.setdefault(str(row["entity"]), []).append(row)
        return result

    async def _grouped(
        self, ids: Iterable[str], column: str, query: Callable[[list[str]], str]
    ) -> dict[str, list[Record]]:
        wanted = [str(i) for i in ids]
        result: dict[str, list[Record]] = {i: [] for i in wanted}
        for row in await self._by_chunks(wanted, query):
            result.setdefault(str(row[column]), []).append(row)
        return result

    async def sales_orders_by_job_ids(self, job_ids: Iterable[str]) -> dict[str, list[Record]]:
        """Contracts: the sales orders provisioning writes on a job (one per won deal)."""
        return await self._grouped(
            job_ids,
            "job",
            lambda c: (
                f"SELECT {SALES_ORDER_COLUMNS} FROM transaction "
                f"WHERE type = 'SalesOrd' AND job IN ({sql_ids(c)}) ORDER BY id"
            ),
        )

    async def sales_orders_by_external_ids(self, external_ids: Iterable[str]) -> dict[str, Record]:
        rows = await self._by_chunks(
            external_ids,
            lambda c: (
                f"SELECT {SALES_ORDER_COLUMNS} FROM transaction WHERE type = 'SalesOrd' AND externalid IN "
                f"({', '.join(sql_string(e) for e in c)}) ORDER BY id"
            ),
        )
        return {str(r["externalid"]): r for r in rows}

    async def billing_schedules_by_job_ids(self, job_ids: Iterable[str]) -> dict[str, list[Record]]:
        return await self._grouped(
            job_ids,
            "job",
            lambda c: (
                f"SELECT {BILLING_SCHEDULE_COLUMNS} FROM billingschedule "
                f"WHERE job IN ({sql_ids(c)}) ORDER BY id"
            ),
        )

    async def milestones_by_schedule_ids(self, ids: Iterable[str]) -> dict[str, list[Record]]:
        """Billing events (milestones) of each schedule, in line order."""
        return await self._grouped(
            ids,
            "billingschedule",
            lambda c: (
                f"SELECT {MILESTONE_COLUMNS} FROM billingschedulemilestone "
                f"WHERE billingschedule IN ({sql_ids(c)}) ORDER BY billingschedule, linenumber"
            ),
        )

    async def rates_by_schedule_ids(self, ids: Iterable[str]) -> dict[str, list[Record]]:
        """Rate card lines of each schedule, in line order."""
        return await self._grouped(
            ids,
            "billingschedule",
            lambda c: (
                f"SELECT {RATE_COLUMNS} FROM billingschedulerate "
                f"WHERE billingschedule IN ({sql_ids(c)}) ORDER BY billingschedule, linenumber"
            ),
        )

    async def receipts_by_invoice_ids(self, invoice_ids: Iterable[str]) -> dict[str, list[Record]]:
        """Payments (``CustPymt``) and credit memos (``CustCred``) applied to each invoice, oldest first,
        through ``NextTransactionLineLink``: one SuiteQL per chunk of invoices. Each comes shaped like its
        REST record where the mapping reads it (``payment``/``total``, ``customer``, ``apply.items`` with
        every invoice it applies to), so ``payment_from_record`` and ``credit_memo_from_record`` take it."""
        wanted = [str(i) for i in invoice_ids]

        def query(chunk: list[str]) -> str:
            return (
                "SELECT a.previousdoc AS invoice, b.previousdoc AS doc, b.nextline AS line, "
                "b.foreignamount AS applied, t.id, t.externalid, t.tranid, t.type, t.entity, t.trandate, "
                "t.currency, t.foreigntotal, t.status, t.memo FROM NextTransactionLineLink a "
                "JOIN NextTransactionLineLink b ON b.nextdoc = a.nextdoc "
                "JOIN transaction t ON t.id = a.nextdoc "
                f"WHERE a.previousdoc IN ({sql_ids(chunk)}) AND t.type IN ('CustPymt', 'CustCred') "
                "ORDER BY a.previousdoc, t.id, a.nextline, b.nextline"
            )

        found: dict[tuple[str, str], Record] = {}
        items: dict[tuple[str, str], dict[int, Record]] = defaultdict(dict)
        for row in await self._by_chunks(wanted, query):
            key = (str(row["invoice"]), str(row["id"]))
            if key not in found:
                link = ("invoice", "doc", "line", "applied")
                found[key] = {k: v for k, v in row.items() if k not in link}
                found[key].update(
                    payment=row["foreigntotal"], total=row["foreigntotal"], customer=row["entity"]
                )
            items[key][int(row["line"])] = {"doc": {"id": str(row["doc"])}, "amount": row["applied"]}
        result: dict[str, list[Record]] = {i: [] for i in wanted}
        for key, record in found.items():
            record["apply"] = {"items": [items[key][n] for n in sorted(items[key])]}
            result.setdefault(key[0], []).append(record)
        return result

    async def project_tasks_by_job_ids(self, job_ids: Iterable[str]) -> dict[str, list[Record]]:
        """Tasks and milestones (``ismilestone``) of each job."""
        return await self._grouped(
            job_ids,
            "company",
            lambda c: (
                f"SELECT {PROJECT_TASK_COLUMNS} FROM projecttask WHERE company IN ({sql_ids(c)}) ORDER BY id"
            ),
        )

    async def receipts_by_customer_ids(self, customer_ids: Iterable[str]) -> dict[str, list[Record]]:
        """Customer payments (``CustPymt``) and credit memos (``CustCred``) of each customer."""
        return await self._grouped(
            customer_ids,
            "entity",
            lambda c: (
                f"SELECT {RECEIPT_COLUMNS} FROM transaction WHERE type IN ('CustPymt', 'CustCred') "
                f"AND entity IN ({sql_ids(c)}) ORDER BY id"
            ),
        )

    async def service_items(self) -> list[Record]:
        """The firm's service items (labour categories) with their standard hourly rate."""
        return await self.suiteql("SELECT id, itemid, displayname, rate FROM item ORDER BY id")

    async def records_by_ids(self, record_type: str, ids: Iterable[str]) -> dict[str, Record]:
        """Whole REST records (with their sublists: ``apply``, ``milestones`` ...), one GET each.

        NetSuite's REST API has no batch GET, and sublists are not SuiteQL columns of the sandbox, so
        this is the one bulk read whose cost is the number of ids; the concurrency cap paces it.
        """
        unique = list(dict.fromkeys(str(int(i)) for i in ids))
        records = await asyncio.gather(*(self.get(record_type, i) for i in unique))
        return dict(zip(unique, records, strict=True))

    async def time_bills_by_external_ids(self, external_ids: Iterable[str]) -> dict[str, Record]:
        rows = await self._by_chunks(
            external_ids,
            lambda c: (
                f"SELECT {TIME_BILL_COLUMNS} FROM timebill WHERE externalid IN "
                f"({', '.join(sql_string(e) for e in c)}) ORDER BY id"
            ),
        )
        return {str(r["externalid"]): r for r in rows}

    async def invoice_totals_by_customer(
        self, ids: Iterable[str], as_of: date, window_start: date | None = None
    ) -> dict[str, list[InvoiceTotals]]:
        """Billed, paid, remaining, overdue (and its age buckets) per customer and currency; in the same
        aggregate, billing dated from ``window_start`` (default: ``as_of``'s 90-day window) and credit
        memos — one SuiteQL per chunk of customers, every figure of account health."""
        wanted = [str(i) for i in ids]
        day = as_of.isoformat()
        start = (window_start or as_of - timedelta(days=89)).isoformat()

        def inv(expr: str, condition: str = "") -> str:
            return f"SUM(CASE WHEN type = 'CustInvc'{condition} THEN {expr} ELSE 0 END)"

        buckets = []
        for low, high in BUCKETS:
            range_sql = f" AND duedate <= '{(as_of - timedelta(days=low)).isoformat()}'"
            if high is not None:
                range_sql += f" AND duedate >= '{(as_of - timedelta(days=high)).isoformat()}'"
            buckets.append(f"{inv('amountremaining', range_sql)} AS b{low}")

        def query(chunk: list[str]) -> str:
            return (
                f"SELECT entity, currency, {inv('1')} AS invoices, {inv('foreigntotal')} AS billed, "
                f"{inv('amountpaid')} AS paid, {inv('amountremaining')} AS remaining, "
                f"{inv('amountremaining', f' AND duedate < {sql_string(day)}')} AS overdue, "
                f"{', '.join(buckets)}, "
                f"{inv('foreigntotal', f' AND trandate >= {sql_string(start)}')} AS windowbilled, "
                "SUM(CASE WHEN type = 'CustCred' THEN foreigntotal ELSE 0 END) AS credited "
                "FROM transaction WHERE type IN ('CustInvc', 'CustCred') "
                f"AND trandate <= '{day}' AND entity IN ({sql_ids(chunk)}) "
                "GROUP BY entity, currency ORDER BY entity, currency"
            )

        rows = await self._by_chunks(wanted, query)
        reference = await self.reference_data()
        result: dict[str, list[InvoiceTotals]] = {i: [] for i in wanted}
        labels = [f"{low}-{high}" if high else f"{low}+" for low, high in BUCKETS]
        for row in rows:
            currency = reference.currency_code(str(row["currency"])) or "USD"

            def money(name: str, row: Record = row, currency: str = currency) -> Money:
                return Money(decimal(row, name) or Decimal(0), currency).rounded()

            result.setdefault(str(row["entity"]), []).append(
                InvoiceTotals(
                    str(row["entity"]),
                    currency,
                    int(row["invoices"] or 0),
                    money("billed"),
                    money("paid"),
                    money("remaining"),
                    money("overdue"),
                    {label: money(f"b{low}") for label, (low, _h) in zip(labels, BUCKETS, strict=True)},
                    money("windowbilled"),
                    money("credited"),
                )
            )
        return result
