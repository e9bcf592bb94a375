"""Billing feedback end to end (scenarios 17–20): ERP changes → outbox events → CRM write-back, once."""

from __future__ import annotations

from decimal import Decimal

from mutations.billing_feedback import (
    INTEGRATION_EVENT,
    INVOICE_STATUS_CHANGED,
    PAYMENT_RECEIVED,
    ErpChangePoller,
    message,
)
from mutations.intake import Outcome, handle_crm_event
from subgraphs.erp.mapping import record_id
from tests.mutations.billing_support import billing
from tests.mutations.conftest import Flow


def amount(value: object) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


async def test_invoice_created_partially_paid_paid_updates_crm_once_per_change(flow: Flow) -> None:
    b = await billing(flow)
    created = await b.billing_run(hours=6)
    mine = [i for i in created if (await b.deps.erp.get("invoice", i))["entity"]["id"] == b.customer]
    (erp_id,) = mine
    record = await b.deps.erp.get("invoice", erp_id)
    canonical = record_id(record, "invoice")
    total = amount(record["total"])
    crm_before = await b.crm_events()
    mark = crm_before[-1]["replayId"] if crm_before else 0

    await b.round()
    crm = await b.invoice_record(canonical)
    assert crm["Status__c"] == "OPEN" and amount(crm["Amount__c"]) == total
    assert amount(crm["Amount_Remaining__c"]) == total and crm["Account__c"] == b.account.crm_id
    assert crm["Due_Date__c"] == "2026-12-28" and crm["ERP_Invoice_Id__c"] == erp_id

    await b.pay(erp_id, 400, eid="pay-17-1")
    await b.round()
    crm = await b.invoice_record(canonical)
    assert crm["Status__c"] == "PARTIALLY_PAID"
    assert amount(crm["Amount_Paid__c"]) == 400 and amount(crm["Amount_Remaining__c"]) == total - 400

    await b.pay(erp_id, float(total - 400), eid="pay-17-2")
    await b.round()
    crm = await b.invoice_record(canonical)
    assert crm["Status__c"] == "PAID" and amount(crm["Amount_Remaining__c"]) == 0

    account = await b.account_record()
    assert account["Last_Payment_Date__c"] == "2026-11-28"
    assert amount(account["Billed_To_Date__c"]) >= total
    assert amount(account["Open_Receivables__c"]) >= 0

    events = await b.outbox(key=canonical)
    topics = [(e.topic, e.payload["invoice"]["status"]) for e in events]
    assert topics == [
        (INVOICE_STATUS_CHANGED, "OPEN"),
        (PAYMENT_RECEIVED, "PARTIALLY_PAID"),
        (INVOICE_STATUS_CHANGED, "PARTIALLY_PAID"),
        (PAYMENT_RECEIVED, "PAID"),
        (INVOICE_STATUS_CHANGED, "PAID"),
    ]
    changes = [e.payload["invoice"] for e in events if e.topic == INVOICE_STATUS_CHANGED]
    assert [c["previousStatus"] for c in changes] == [None, "OPEN", "PARTIALLY_PAID"]
    first = message(events[0].id, events[0].topic, events[0].payload)
    assert first["id"] == events[0].id and first["account_id"] == b.canonical_account
    assert first["invoice"]["total"] == {"amount": f"{total:.2f}", "currency": "USD"}
    assert events[1].payload["payment"]["amount"] == {"amount": "400.00", "currency": "USD"}

    # Exactly one CRM write per change: CREATE, then two UPDATEs of the invoice record.
    ours = await b.crm_events(mark)
    invoice_events = [e for e in ours if e["payload"]["ChangeEventHeader"]["entityName"] == "Invoice__c"]
    crm_id = crm["Id"]
    mine_events = [e for e in invoice_events if crm_id in e["payload"]["ChangeEventHeader"]["recordIds"]]
    assert [e["payload"]["ChangeEventHeader"]["changeType"] for e in mine_events] == [
        "CREATE",
        "UPDATE",
        "UPDATE",
    ]

    # A poll with nothing new writes nothing: no event, no CRM write.
    count = len(await b.outbox())
    latest = (await b.crm_events())[-1]["replayId"]
    await b.round()
    await b.round()
    assert len(await b.outbox()) == count
    assert await b.crm_events(latest) == []

    # Scenario 20: our writes come back as change events → ignored, nothing queued.
    for event in ours:
        result = await handle_crm_event(b.deps, event, source="crm")
        assert result.outcome is Outcome.IGNORED_ECHO, event["payload"]["ChangeEventHeader"]


async def test_credit_memo_corrects_balance_with_negative_amounts(flow: Flow) -> None:
    b = await billing(flow)
    erp_id = await b.invoice(1000, eid="inv-18")
    canonical = record_id(await b.deps.erp.get("invoice", erp_id), "invoice")
    await b.round()
    before = await b.account_record()

    await b.credit(erp_id, 250, eid="cm-18")
    await b.round()
    crm = await b.invoice_record(canonical)
    assert crm["Status__c"] == "PARTIALLY_PAID" and amount(crm["Amount_Remaining__c"]) == 750
    after = await b.account_record()
    assert amount(after["Billed_To_Date__c"]) == amount(before["Billed_To_Date__c"]) - 250
    assert amount(after["Open_Receivables__c"]) == amount(before["Open_Receivables__c"]) - 250

    events = await b.outbox(key=canonical)
    credit = next(e for e in events if e.topic == INTEGRATION_EVENT)
    assert credit.payload["kind"] == "credit_memo.applied"
    assert credit.payload["payment"]["kind"] == "CREDIT_MEMO"
    assert credit.payload["payment"]["amount"] == {"amount": "-250.00", "currency": "USD"}
    assert credit.payload["payment"]["applied"] == {"amount": "-250.00", "currency": "USD"}


async def test_payment_in_another_currency(flow: Flow) -> None:
    b = await billing(flow)
    erp_id = await b.invoice(500, eid="inv-19")
    canonical = record_id(await b.deps.erp.get("invoice", erp_id), "invoice")
    await b.round()
    reference = await b.deps.erp.reference_data()
    eur = reference.currency_id("EUR")
    assert eur is not None

    await b.pay(erp_id, 100, eid="pay-19", currency=eur)
    await b.round()
    crm = await b.invoice_record(canonical)
    applied = amount((await b.deps.erp.get("invoice", erp_id))["amountPaid"])
    assert Decimal(100) < applied < Decimal(500)  # converted at the payment date's EUR→USD rate
    assert crm["Status__c"] == "PARTIALLY_PAID" and crm["CurrencyIsoCode"] == "USD"
    assert amount(crm["Amount_Paid__c"]) == applied

    payment = next(e for e in await b.outbox(key=canonical) if e.topic == PAYMENT_RECEIVED)
    assert payment.payload["payment"]["amount"] == {"amount": "100.00", "currency": "EUR"}
    assert payment.payload["payment"]["applied"] == {"amount": f"{applied:.2f}", "currency": "USD"}
    assert (await b.account_record())["Last_Payment_Date__c"] == "2026-11-28"


async def test_new_installation_does_not_replay_billing_history(flow: Flow) -> None:
    b = await billing(flow)
    fresh = ErpChangePoller(b.deps)  # no cursor, no start: anchored at the ERP's newest change
    first = await fresh.poll()
    assert first.read == 0 and first.cursor_after is not None
    again = await fresh.poll()
    assert again.queued == [] and await b.outbox() == []
    erp_id = await b.invoice(120, eid="inv-new")
    await b.erp_admin("clock", {"advanceSeconds": 5})
    third = await fresh.poll()
    assert len(third.queued) == 1
    (event,) = await b.outbox()
    assert event.payload["invoice"]["erpId"] == erp_id
