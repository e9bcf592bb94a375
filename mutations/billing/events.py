"""Billing events: the outbox payloads ERP change intake writes, and what subscribers read back.

This module is the contract between the producer (``mutations.billing.intake``: the ERP poller and the
``/webhooks/erp`` route) and the consumers (the ``crm_writeback`` worker handler, GraphQL subscriptions and
the LISTEN/NOTIFY fan-out). It imports nothing of the store, so a consumer can depend on it alone.

Topics (``OutboxEvent.topic``):

=========================  ==========================================================================
``invoice.status_changed``  an invoice's billing state really changed (status, total, paid, remaining
                            or due date — the fingerprint differs from the last one seen). Emitted once
                            per change, in ERP change order; ``previous_status`` tells a subscriber
                            that only wants status transitions (OPEN → PARTIALLY_PAID → PAID) whether
                            the status itself moved.
``payment.received``        a customer payment (``CustPymt``) was recorded or changed; its
                            applications name the invoices it paid, in the invoices' currency.
``integration.event``       anything else of the billing flow; ``kind`` says what: today
                            ``credit_memo.applied`` (a ``CustCred``, its amount *negative*).
=========================  ==========================================================================

A message, as a subscriber should see it — ``message(row.id, row.topic, row.payload)``::

    {
      "id": 42,                                   # the outbox id: the event id, resume after it
      "topic": "invoice.status_changed",
      "legal_entity": "US01",                     # also OutboxEvent.legal_entity: filter by scope
      "account_id": "6f1c…",                      # canonical account id (CRM-introduced when linked)
      "invoice": {                                # every topic carries the invoice it concerns
        "id": "…", "erpId": "812", "number": "INV-812", "status": "PARTIALLY_PAID",
        "previousStatus": "OPEN",                 # None the first time the gateway sees the invoice
        "total": {"amount": "1200.00", "currency": "USD"},
        "amountPaid": {"amount": "400.00", "currency": "USD"},
        "amountRemaining": {"amount": "800.00", "currency": "USD"},
        "tranDate": "2026-11-30", "dueDate": "2026-12-30", "daysOverdue": 0,
      },
      "payment": None | {                         # payment.received: the payment; credit memos too
        "id": "…", "erpId": "901", "kind": "PAYMENT" | "CREDIT_MEMO", "number": "…" | None,
        "date": "2026-12-02",
        "amount": {"amount": "365.00", "currency": "EUR"},        # as received; negative for a credit
        "applied": {"amount": "400.00", "currency": "USD"},       # to *this* invoice, invoice currency
      },
      "kind": "credit_memo.applied" | None,       # integration.event only
      "occurred_at": "2026-12-02T10:15:00.000Z",  # the ERP's lastModifiedDate of the change
      "correlation_id": "poll-…" | "<webhook request id>",
      "fingerprint": "…",                         # the invoice billing state this event announces
    }

Money is ``{"amount": "<decimal string>", "currency": "<ISO 4217>"}`` exactly like GraphQL's ``Money``,
and invoice fields are spelled like GraphQL's ``Invoice``, so a subscription resolver can pass them
through. A ``payment.received`` for a payment applied to two invoices is two events (one per invoice),
each with its own ``invoice``; ``payment.id`` ties them together. The outbox ``key`` is the invoice's
canonical id, so consumers that need per-invoice order can partition by it.

Ordering: events become visible in outbox id order (``OutboxRepo.add`` serialises emitting transactions),
and within one poll round they are written in ERP ``lastmodifieddate`` order, payment before the invoice
state it caused.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

INVOICE_STATUS_CHANGED = "invoice.status_changed"
PAYMENT_RECEIVED = "payment.received"
INTEGRATION_EVENT = "integration.event"
TOPICS = (INVOICE_STATUS_CHANGED, PAYMENT_RECEIVED, INTEGRATION_EVENT)

CREDIT_MEMO_APPLIED = "credit_memo.applied"  # ``kind`` of an integration.event

PaymentKind = Literal["PAYMENT", "CREDIT_MEMO"]


class MoneyDict(TypedDict):
    amount: str
    currency: str


class InvoiceState(TypedDict):
    id: str
    erpId: str
    number: str
    status: str
    previousStatus: str | None
    total: MoneyDict
    amountPaid: MoneyDict
    amountRemaining: MoneyDict
    tranDate: str
    dueDate: str
    daysOverdue: int


class PaymentState(TypedDict):
    id: str
    erpId: str
    kind: PaymentKind
    number: str | None
    date: str
    amount: MoneyDict
    applied: MoneyDict


class BillingEvent(TypedDict):
    """What the outbox row's ``payload`` holds (the message without ``id`` and ``topic``)."""

    legal_entity: str | None
    account_id: str
    invoice: InvoiceState
    payment: PaymentState | None
    kind: str | None
    occurred_at: str
    correlation_id: str
    fingerprint: str


class BillingMessage(BillingEvent):
    """What a subscriber receives: the payload plus the outbox id and topic."""

    id: int
    topic: str
    crm_account_id: NotRequired[str | None]


def message(event_id: int, topic: str, payload: Any) -> dict[str, Any]:
    """The subscriber-facing message of one outbox row: ``message(row.id, row.topic, row.payload)``."""
    body = dict(payload) if isinstance(payload, dict) else {"payload": payload}
    return {"id": event_id, "topic": topic, **body}


__all__ = [
    "CREDIT_MEMO_APPLIED",
    "INTEGRATION_EVENT",
    "INVOICE_STATUS_CHANGED",
    "PAYMENT_RECEIVED",
    "TOPICS",
    "BillingEvent",
    "BillingMessage",
    "InvoiceState",
    "MoneyDict",
    "PaymentKind",
    "PaymentState",
    "message",
]
