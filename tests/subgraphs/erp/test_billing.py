from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from canonical.enums import InvoiceStatus
from subgraphs.demo import generate_firm
from subgraphs.erp.client import ErpClient
from subgraphs.erp.errors import ErpRejected
from subgraphs.erp.mapping import invoice_from_record

FIRM = generate_firm(7, 30)


async def run_billing(app: Starlette, as_of: str) -> dict[str, Any]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://erp") as http:
        response = await http.post("/__sandbox/erp/billing/run", json={"asOf": as_of})
        response.raise_for_status()
        return dict(response.json())


async def test_billing_run_bills_time_and_milestones_once(client: ErpClient, app: Starlette) -> None:
    project = next(p for p in FIRM.projects if p.billing_method == "TIME_AND_MATERIALS")
    for n, hours in enumerate((3, 5)):
        await client.upsert(
            "timeBill",
            f"te-{n}",
            {
                "employee": {"id": "3001"},
                "customer": {"id": str(project.erp_job_id)},
                "tranDate": f"2026-11-1{n}",
                "hours": hours,
                "rate": 200,
                "isBillable": True,
            },
        )
    schedule_rows = await client.suiteql("SELECT id FROM billingschedule ORDER BY id")
    schedule = next(
        s
        for s in [await client.get("billingSchedule", str(r["id"])) for r in schedule_rows]
        if any(not m["completed"] for m in s.get("milestones", []))
    )
    milestones = schedule["milestones"]
    pending = next(m for m in milestones if not m["completed"])
    pending["completed"] = True
    await client.update("billingSchedule", schedule["id"], {"milestones": milestones})

    first = await run_billing(app, "2026-11-27")
    assert first["errors"] == []
    invoices = [await client.get("invoice", i) for i in first["invoices"]]
    time_invoice = next(i for i in invoices if i["job"]["id"] == str(project.erp_job_id))
    assert time_invoice["total"] == 1600 and time_invoice["status"] == "open"
    assert any(i["total"] == pending["amount"] for i in invoices)
    bill = await client.get_by_external_id("timeBill", "te-0")
    assert bill is not None and bill["billed"] is True

    second = await run_billing(app, "2026-11-27")
    assert second["invoices"] == []
    with pytest.raises(ErpRejected) as info:
        await client.upsert(
            "timeBill",
            "te-0",
            {
                "employee": {"id": "3001"},
                "customer": {"id": str(project.erp_job_id)},
                "tranDate": "2026-11-10",
                "hours": 4,
            },
        )
    assert "billed" in info.value.message


async def _invoice(client: ErpClient, eid: str, customer: int, total: float, currency: str) -> str:
    return await client.upsert(
        "invoice",
        eid,
        {
            "entity": {"id": str(customer)},
            "tranDate": "2026-11-20",
            "dueDate": "2026-12-20",
            "total": total,
            "currency": {"id": currency},
        },
    )


async def test_payment_partial_then_paid(client: ErpClient) -> None:
    customer = next(a for a in FIRM.accounts if a.erp_customer_id and a.currency == "USD")
    assert customer.erp_customer_id is not None
    inv = await _invoice(client, "inv-1", customer.erp_customer_id, 1000, "1")
    reference = await client.reference_data()
    pay = {
        "customer": {"id": str(customer.erp_customer_id)},
        "tranDate": "2026-11-21",
        "currency": {"id": "1"},
    }
    await client.upsert(
        "customerPayment",
        "pay-1",
        {**pay, "payment": 400, "apply": {"items": [{"doc": {"id": inv}, "amount": 400}]}},
    )
    partial = invoice_from_record(await client.get("invoice", inv), reference)
    assert partial.status is InvoiceStatus.PARTIALLY_PAID and partial.amount_remaining.amount == 600
    # Replaying the same payment (upsert by external id) must not apply it twice.
    await client.upsert(
        "customerPayment",
        "pay-1",
        {**pay, "payment": 400, "apply": {"items": [{"doc": {"id": inv}, "amount": 400}]}},
    )
    assert (await client.get("invoice", inv))["amountRemaining"] == 600
    await client.upsert(
        "customerPayment",
        "pay-2",
        {**pay, "payment": 600, "apply": {"items": [{"doc": {"id": inv}, "amount": 600}]}},
    )
    paid = invoice_from_record(await client.get("invoice", inv), reference)
    assert paid.status is InvoiceStatus.PAID and paid.amount_remaining.is_zero()
    with pytest.raises(ErpRejected):
        await client.upsert(
            "customerPayment",
            "pay-3",
            {**pay, "payment": 1, "apply": {"items": [{"doc": {"id": inv}, "amount": 1}]}},
        )


async def test_credit_memo_reduces_remaining(client: ErpClient) -> None:
    customer = next(a for a in FIRM.accounts if a.erp_customer_id)
    assert customer.erp_customer_id is not None
    inv = await _invoice(client, "inv-2", customer.erp_customer_id, 1000, "1")
    await client.upsert(
        "creditMemo",
        "cm-1",
        {
            "entity": {"id": str(customer.erp_customer_id)},
            "tranDate": "2026-11-22",
            "currency": {"id": "1"},
            "apply": {"items": [{"doc": {"id": inv}, "amount": 100}]},
        },
    )
    record = await client.get("invoice", inv)
    assert record["amountRemaining"] == 900 and record["status"] == "partiallyPaid"
    assert (await client.get_by_external_id("creditMemo", "cm-1") or {})["total"] == 100


async def test_cross_currency_payment_converts_at_the_rate_of_the_day(client: ErpClient) -> None:
    customer = next(a for a in FIRM.accounts if a.erp_customer_id and a.currency == "EUR")
    assert customer.erp_customer_id is not None
    inv = await _invoice(client, "inv-eur", customer.erp_customer_id, 1000, "2")
    reference = await client.reference_data()
    rate = reference.rate("EUR", "USD", FIRM.as_of)
    assert rate is not None
    usd = float((rate * 1000).quantize(rate.__class__("0.01")))
    await client.upsert(
        "customerPayment",
        "pay-usd",
        {
            "customer": {"id": str(customer.erp_customer_id)},
            "tranDate": "2026-11-25",
            "currency": {"id": "1"},
            "payment": usd,
            "apply": {"items": [{"doc": {"id": inv}, "amount": usd}]},
        },
    )
    record = await client.get("invoice", inv)
    assert record["status"] == "paidInFull" and abs(record["amountPaid"] - 1000) < 0.01


async def test_closing_and_opening_a_period(client: ErpClient, app: Starlette) -> None:
    customer = next(a for a in FIRM.accounts if a.erp_customer_id)
    assert customer.erp_customer_id is not None
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://erp") as http:
        assert (await http.post("/__sandbox/erp/accounting-periods/411/close")).status_code == 200
    with pytest.raises(ErpRejected):
        await _invoice(client, "inv-nov", customer.erp_customer_id, 10, "1")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://erp") as http:
        await http.post("/__sandbox/erp/accounting-periods/411/open")
    assert await _invoice(client, "inv-nov", customer.erp_customer_id, 10, "1")
