"""``POST /webhooks/erp``: signed like the CRM's, the record re-read from the ERP, recorded once."""

from __future__ import annotations

import json
from typing import Any

from gateway.webhooks import signature
from mutations.billing_feedback import CRM_WRITEBACK, INVOICE_STATUS_CHANGED
from store.models import InboxEvent, OutboxEvent, WorkItem
from subgraphs.erp.client import ErpClient
from tests.gateway.conftest import serve  # noqa: F401 — fixture
from tests.gateway.test_webhooks import Gateway, gateway, store_settings  # noqa: F401 — fixtures


async def post(gw: Gateway, event: dict[str, Any], signed: str | None = "right") -> Any:
    body = json.dumps(event).encode()
    headers = {"Content-Type": "application/json"}
    if signed == "right":
        headers["X-P2C-Signature"] = signature(body, gw.secret)
    elif signed is not None:
        headers["X-P2C-Signature"] = signed
    return await gw.http.post("/webhooks/erp", content=body, headers=headers)


async def new_invoice(gw: Gateway) -> str:
    erp = gw.runtime.systems["erp"].client
    assert isinstance(erp, ErpClient)
    customer = (await erp.suiteql("SELECT id FROM customer ORDER BY id"))[0]
    return await erp.upsert(
        "invoice",
        "webhook-inv-1",
        {
            "entity": {"id": str(customer["id"])},
            "tranDate": "2026-11-27",
            "total": 900,
            "currency": {"id": "1"},
        },
    )


async def test_signed_invoice_event_is_recorded_once(gateway: Gateway) -> None:  # noqa: F811
    invoice = await new_invoice(gateway)
    event = {"id": "ns-1", "recordType": "invoice", "recordId": invoice, "action": "create"}

    first = await post(gateway, event)
    again = await post(gateway, event)

    assert first.status_code == 202, first.text
    assert first.json() == {"status": "accepted"} and again.json() == {"status": "duplicate"}
    (item,) = await gateway.rows(WorkItem)
    assert item.kind == CRM_WRITEBACK and item.dedupe_key.startswith(f"crm:invoice:{invoice}:1:")
    (change,) = await gateway.rows(OutboxEvent)
    assert change.topic == INVOICE_STATUS_CHANGED and change.payload["invoice"]["erpId"] == invoice
    assert change.payload["invoice"]["status"] == "OPEN"
    # Another delivery of the same, unchanged invoice: recorded, but no second event or work item.
    assert (await post(gateway, {**event, "id": "ns-2"})).json() == {"status": "accepted"}
    assert len(await gateway.rows(OutboxEvent)) == 1 and len(await gateway.rows(WorkItem)) == 1


async def test_bad_signature_or_body_stores_nothing(gateway: Gateway) -> None:  # noqa: F811
    event = {"id": "ns-9", "recordType": "invoice", "recordId": "1"}
    unsigned = await post(gateway, event, signed=None)
    forged = await post(gateway, event, signed="sha256=" + "0" * 64)
    assert (unsigned.status_code, forged.status_code) == (401, 401)
    malformed = await post(gateway, {"id": "ns-10", "recordType": "invoice", "recordId": "x; DROP"})
    assert malformed.status_code == 400
    assert await gateway.rows(InboxEvent) == []
    assert await gateway.rows(OutboxEvent) == []


async def test_unrelated_record_is_recorded_and_ignored(gateway: Gateway) -> None:  # noqa: F811
    response = await post(gateway, {"id": "ns-3", "recordType": "job", "recordId": "5"})
    assert response.json() == {"status": "ignored"}
    assert len(await gateway.rows(InboxEvent)) == 1 and await gateway.rows(OutboxEvent) == []
