"""The CRM write-back of a billing change: run by the worker for each ``crm_writeback`` item, after the
intake's transaction committed (the item was queued in it, beside the outbox events).

    result = await crm_writeback(deps, job.payload, correlation_id=job.correlation_id)

Two steps of a ``billing_writeback`` run (``mutations.governance.FlowRunner``), each with a deterministic
key, so a retried or duplicated item writes nothing twice:

1. ``crm:invoice:<erp id>:<seq>:<fingerprint>`` — upsert ``Invoice__c`` by ``P2C_Id__c`` (the invoice's
   canonical id): number, amounts, due date, status, days overdue, the account. Skipped (recorded as
   ``superseded``) when the intake has seen a newer state of the invoice since: that change's own item
   writes it, and an older state never overwrites a newer one whatever order the items run in.
2. ``crm:account:<crm account id>:<fingerprint of the fields>`` — the account's billing fields (billed to
   date, open receivables, overdue, last payment date) computed with ``canonical.analytics`` from the
   customer's ERP transactions (one SuiteQL). The key is the content: fields that did not change are not
   written again.

Every CRM write carries ``Sforce-Call-Options: client=<our client name>`` (set by ``CrmClient``), so the
change events the CRM emits for them come back with ``changeOrigin ...;client=p2c-gateway`` and
``mutations.intake.handle_crm_event`` records them as ``IGNORED_ECHO``: no loop.

An account the gateway has not linked to a CRM account (an ERP-only customer) gets its invoice written
without ``Account__c`` and no account fields; the result says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from canonical import analytics
from canonical.entities import CreditMemo, Invoice
from canonical.enums import InvoiceStatus
from canonical.errors import NotFound
from canonical.money import Money
from mutations.billing.state import digest
from mutations.deps import FlowDeps
from mutations.governance import FlowRunner
from store.repositories import CrossReferenceRepo, RunRepo
from subgraphs.crm.mapping import invoice_to_wire, receivables_to_wire
from subgraphs.erp.client import ErpClient
from subgraphs.erp.mapping import invoice_from_record
from subgraphs.erp.wire import day, decimal, ref_id, sql_ids

WRITEBACK_FLOW = "billing_writeback"
INVOICE_OBJECT, INVOICE_KEY = "Invoice__c", "P2C_Id__c"


def _money(value: Mapping[str, Any]) -> Money:
    return Money(Decimal(str(value["amount"])), str(value["currency"]))


def invoice_of(payload: Mapping[str, Any]) -> Invoice:
    """The canonical invoice an event announces (``events.InvoiceState`` plus the envelope)."""
    state = payload["invoice"]
    return Invoice(
        id=str(state["id"]),
        number=str(state["number"]),
        account_id=str(payload["account_id"]),
        tran_date=date.fromisoformat(state["tranDate"]),
        due_date=date.fromisoformat(state["dueDate"]),
        total=_money(state["total"]),
        amount_paid=_money(state["amountPaid"]),
        amount_remaining=_money(state["amountRemaining"]),
        status=InvoiceStatus(state["status"]),
        legal_entity=payload.get("legal_entity"),
        erp_id=str(state["erpId"]),
    )


async def account_billing(erp: ErpClient, customer_erp_id: str, currency: str, as_of: date) -> dict[str, Any]:
    """The CRM account's billing fields from the customer's ERP transactions in ``currency`` (one SuiteQL).

    Credit memos count negative whatever sign the ERP reports them with (NetSuite's ``foreigntotal`` of a
    ``CustCred`` is negative; the sandbox's positive). The last payment date counts payments in any
    currency — a euro payment of a dollar invoice is still the customer's last payment."""
    rows = await erp.suiteql(
        "SELECT id, externalid, tranid, type, entity, job, trandate, duedate, currency, foreigntotal, "
        "amountpaid, amountremaining, status, subsidiary FROM transaction "
        f"WHERE entity IN ({sql_ids([customer_erp_id])}) AND type IN ('CustInvc', 'CustCred', 'CustPymt') "
        "ORDER BY id"
    )
    reference = await erp.reference_data()
    invoices: list[Invoice] = []
    memos: list[CreditMemo] = []
    payments: list[date] = []
    for row in rows:
        row_currency = reference.currency_code(ref_id(row, "currency")) or "USD"
        if row.get("type") == "CustPymt":
            on = day(row, "trandate")
            if on is not None and on <= as_of:
                payments.append(on)
        elif row_currency != currency:
            continue
        elif row.get("type") == "CustInvc":
            invoices.append(invoice_from_record(row, reference))
        else:
            amount = abs(decimal(row, "foreigntotal") or Decimal(0))
            memos.append(
                CreditMemo(
                    id=str(row["id"]),
                    number=str(row.get("tranid") or row["id"]),
                    account_id=customer_erp_id,
                    date=day(row, "trandate") or as_of,
                    amount=Money(amount, currency),
                )
            )
    wire = receivables_to_wire(
        billed_to_date=analytics.billed_to_date(invoices, currency, credit_memos=memos, as_of=as_of),
        open_receivables=analytics.open_receivables(invoices, currency, as_of=as_of),
        overdue=analytics.overdue_total(invoices, as_of, currency),
        last_payment=max(payments, default=None),
    )
    return dict(wire)


async def _latest_fingerprint(deps: FlowDeps, register: str) -> str | None:
    async with deps.sessionmaker() as session:
        try:
            step = await RunRepo(session).get_step(register)
        except NotFound:
            return None
        return (step.result or {}).get("fingerprint")


async def _crm_account(deps: FlowDeps, payload: Mapping[str, Any]) -> str | None:
    """The CRM Account Id of the invoice's account, read now: it may have been linked since the event."""
    async with deps.sessionmaker() as session:
        linked = await CrossReferenceRepo(session).system_ids_for("crm", [str(payload["account_id"])])
    return linked.get(str(payload["account_id"])) or payload.get("crm_account_id")


async def crm_writeback(deps: FlowDeps, payload: Mapping[str, Any], *, correlation_id: str) -> dict[str, Any]:
    """Write one invoice change to the CRM (invoice, then the account's billing fields) → what was done."""
    invoice = invoice_of(payload)
    runner = FlowRunner(
        deps,
        flow=WRITEBACK_FLOW,
        subject=invoice.id,
        correlation_id=correlation_id,
        legal_entity=payload.get("legal_entity"),
    )
    runner.payload = dict(payload)
    await runner.attach(input={"step_key": payload["step_key"], "fingerprint": payload["fingerprint"]})
    superseded = await _latest_fingerprint(deps, str(payload["register"])) != payload["fingerprint"]
    crm_account = await _crm_account(deps, payload)
    today = deps.today()

    async def write_invoice() -> Mapping[str, Any]:
        if superseded:
            return {"superseded": True}
        record = invoice_to_wire(invoice, account_crm_id=crm_account, as_of=today)
        result = await deps.crm.upsert(INVOICE_OBJECT, INVOICE_KEY, invoice.id, record)
        return {"crm_id": result.id, "created": result.created}

    done: dict[str, Any] = {
        "invoice": await runner.step("crm_invoice", str(payload["step_key"]), write_invoice)
    }
    customer = payload.get("customer_erp_id")
    if superseded or crm_account is None or not customer:
        done["account"] = {"skipped": "superseded" if superseded else "no CRM account linked"}
    else:
        if payload.get("erp") == "tryton" and deps.tryton is not None:  # an entity booked in Tryton
            from mutations.billing.tryton import account_billing as tryton_billing

            fields = await tryton_billing(deps.tryton, str(customer), str(payload["currency"]), today)
        else:
            fields = await account_billing(deps.erp, str(customer), str(payload["currency"]), today)

        async def write_account() -> Mapping[str, Any]:
            await deps.crm.update("Account", crm_account, fields)
            return {"crm_id": crm_account, "fields": fields}

        key = f"crm:account:{crm_account}:{digest(fields)}"
        done["account"] = await runner.step("crm_account", key, write_account)
    await runner.finish()
    return done


def account_digest(fields: Mapping[str, Any]) -> str:
    """The fingerprint the account step key carries (exposed for tests and operators)."""
    return digest(dict(fields))


__all__ = ["WRITEBACK_FLOW", "account_billing", "account_digest", "crm_writeback", "invoice_of"]
