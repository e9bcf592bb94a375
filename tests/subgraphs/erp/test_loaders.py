from __future__ import annotations

import asyncio

from aiodataloader import DataLoader

from subgraphs.common.sandbox import SandboxAdmin
from subgraphs.demo import generate_firm
from subgraphs.erp.client import ErpClient
from subgraphs.erp.loaders import (
    customers_loader,
    invoice_totals_loader,
    invoices_by_customer_loader,
    jobs_loader,
)

FIRM = generate_firm(7, 30)
SUITEQL = "POST /services/rest/query/v1/suiteql"


async def test_loaders_batch_into_one_query_per_kind(client: ErpClient, admin: SandboxAdmin) -> None:
    await client.reference_data()
    ids = [str(a.erp_customer_id) for a in FIRM.accounts if a.erp_customer_id]
    customers = DataLoader(customers_loader(client))
    invoices = DataLoader(invoices_by_customer_loader(client))
    totals = DataLoader(invoice_totals_loader(client, FIRM.as_of))
    jobs = DataLoader(jobs_loader(client))
    await admin.reset_counters()
    accounts, lists, sums, projects = await asyncio.gather(
        asyncio.gather(*(customers.load(i) for i in [*ids, "424242"])),
        asyncio.gather(*(invoices.load(i) for i in ids)),
        asyncio.gather(*(totals.load(i) for i in ids)),
        asyncio.gather(*(jobs.load(str(p.erp_job_id)) for p in FIRM.projects)),
    )
    assert (await admin.counters())["by_endpoint"][SUITEQL] == 4
    assert accounts[-1] is None and all(a is not None for a in accounts[:-1])
    assert accounts[0] is not None and accounts[0].erp_id == ids[0]
    assert sum(len(x) for x in lists) == len(FIRM.invoices)
    assert all(p is not None and p.code for p in projects)
    assert sum(t.invoices for row in sums for t in row) == len(FIRM.invoices)


async def test_delivery_reads_are_one_query_per_kind(client: ErpClient, admin: SandboxAdmin) -> None:
    await client.reference_data()
    jobs = [str(p.erp_job_id) for p in FIRM.projects]
    customers = [str(a.erp_customer_id) for a in FIRM.accounts if a.erp_customer_id]
    await admin.reset_counters()
    orders, schedules, tasks, receipts, invoices = await asyncio.gather(
        client.sales_orders_by_job_ids(jobs),
        client.billing_schedules_by_job_ids(jobs),
        client.project_tasks_by_job_ids(jobs),
        client.receipts_by_customer_ids(customers),
        client.invoices_by_job_ids(jobs),
    )
    assert (await admin.counters())["by_endpoint"][SUITEQL] == 5
    assert all(rows == [] for rows in orders.values())  # day one: no sales orders yet
    assert sum(len(r) for r in schedules.values()) == sum(
        1 for p in FIRM.projects if p.billing_method != "TIME_AND_MATERIALS"
    )
    assert sum(len(r) for r in tasks.values()) == sum(len(p.tasks) for p in FIRM.projects)
    payments = sum(len(i.payments) for i in FIRM.invoices)
    credits = sum(len(i.credit_memos) for i in FIRM.invoices)
    assert sum(len(r) for r in receipts.values()) == payments + credits
    assert sum(len(r) for r in invoices.values()) == len(FIRM.invoices)
    first = next(p for p in FIRM.projects if p.milestones)
    found = await client.jobs_by_ids_or_external_ids([str(first.erp_job_id)], ["not-a-job"])
    assert [r["entityid"] for r in found] == [first.code]
