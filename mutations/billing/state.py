"""An ERP invoice's billing state as the events carry it, its fingerprint, and payment/credit events.

fp = invoice_fingerprint(row, reference)       # changes iff status, amounts, due date or currency do
state = invoice_state(row, reference, previous_status, today)   # events.InvoiceState
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from decimal import Decimal
from typing import Any

from canonical.entities import Invoice
from canonical.money import Money
from mutations.billing import events as ev
from subgraphs.erp.mapping import invoice_from_record
from subgraphs.erp.refdata import Reference
from subgraphs.erp.wire import Record, day, decimal, ref_id, text

TYPES = {"CustInvc": "invoice", "CustPymt": "customerPayment", "CustCred": "creditMemo"}


def invoice_fingerprint(row: Record, reference: Reference) -> str:
    return fingerprint_of(invoice_from_record(row, reference))


def fingerprint_of(invoice: Invoice) -> str:
    """What a change of the invoice's billing state is detected by, whichever ERP it comes from."""
    state = [
        invoice.status.value,
        invoice.currency,
        str(invoice.total.rounded().amount),
        str(invoice.amount_paid.rounded().amount),
        str(invoice.amount_remaining.rounded().amount),
        invoice.due_date.isoformat(),
    ]
    return digest(state)


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:20]


def money(amount: Decimal | None, currency: str) -> ev.MoneyDict:
    return {"amount": str(Money(amount or Decimal(0), currency).rounded().amount), "currency": currency}


def invoice_state(row: Record, reference: Reference, previous: str | None, today: date) -> ev.InvoiceState:
    return state_of(invoice_from_record(row, reference), str(row["id"]), previous, today)


def state_of(invoice: Invoice, erp_id: str, previous: str | None, today: date) -> ev.InvoiceState:
    """An invoice's event state, whichever ERP it was read from."""
    overdue = invoice.days_past_due(today) if invoice.amount_remaining.amount > 0 else 0
    return {
        "id": invoice.id,
        "erpId": erp_id,
        "number": invoice.number,
        "status": invoice.status.value,
        "previousStatus": previous,
        "total": money(invoice.total.amount, invoice.currency),
        "amountPaid": money(invoice.amount_paid.amount, invoice.currency),
        "amountRemaining": money(invoice.amount_remaining.amount, invoice.currency),
        "tranDate": invoice.tran_date.isoformat(),
        "dueDate": invoice.due_date.isoformat(),
        "daysOverdue": max(0, overdue),
    }


def receipt_event(
    receipt: Record,
    link: Record,
    invoice: Record,
    reference: Reference,
    today: date,
    base: dict[str, Any],
) -> dict[str, Any]:
    """A payment (``payment.received``) or credit memo (``integration.event``, amounts negative)."""
    credit = receipt.get("type") == "CustCred"
    sign = Decimal(-1) if credit else Decimal(1)
    currency = reference.currency_code(ref_id(receipt, "currency")) or "USD"
    state = invoice_state(invoice, reference, None, today)
    total = abs(decimal(receipt, "foreigntotal") or Decimal(0))
    applied = abs(decimal(link, "amount") or decimal(link, "foreignamount") or Decimal(0))
    payment: ev.PaymentState = {
        "id": text(receipt, "externalid") or f"erp:{TYPES[str(receipt['type'])]}:{receipt['id']}",
        "erpId": str(receipt["id"]),
        "kind": "CREDIT_MEMO" if credit else "PAYMENT",
        "number": text(receipt, "tranid"),
        "date": (day(receipt, "trandate") or today).isoformat(),
        "amount": money(sign * total, currency),
        "applied": money(sign * applied, state["total"]["currency"]),
    }
    state["previousStatus"] = None
    return {
        **base,
        "invoice": state,
        "payment": payment,
        "kind": ev.CREDIT_MEMO_APPLIED if credit else None,
        "fingerprint": invoice_fingerprint(invoice, reference),
    }
