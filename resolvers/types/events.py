"""What subscriptions push: billing and integration events, read from outbox rows.

The payload contract is ``mutations.billing.events`` (resolvers may not import flows, so its topic names
are repeated here): every payload carries ``legal_entity``, ``account_id``, the ``invoice`` it concerns
(spelled like GraphQL's ``Invoice``), a ``payment`` for ``payment.received``, ``kind`` for
``integration.event``, ``occurred_at`` and ``correlation_id``. ``eventId`` is the outbox id: a client
that reconnects passes the last one it saw as ``lastEventId``.

``BusEvent`` and ``EventFeed`` are the seam to the gateway's event bus (``gateway.bus``): the gateway
puts a feed on the context of every streaming connection (WebSocket, SSE) and the subscription
resolvers read from it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol, cast

import strawberry
from strawberry.scalars import JSON

from canonical.enums import InvoiceStatus
from resolvers.types import receivables  # noqa: F401  (registers InvoiceStatus as a GraphQL enum)
from resolvers.types.money import MoneyType

INVOICE_STATUS_CHANGED = "invoice.status_changed"
PAYMENT_RECEIVED = "payment.received"
INTEGRATION_EVENT = "integration.event"


@dataclass(frozen=True)
class BusEvent:
    """One outbox row as the bus hands it out."""

    id: int
    topic: str
    legal_entity: str | None
    payload: Mapping[str, Any] = field(default_factory=dict)
    key: str | None = None


class EventFeed(Protocol):
    """The bus as a subscription sees it."""

    def subscribe(
        self,
        *,
        topics: frozenset[str],
        accept: Callable[[BusEvent], bool],
        last_event_id: int | None = None,
    ) -> AsyncIterator[BusEvent]:
        """Events of ``topics`` that ``accept`` keeps, in id order: first those after ``last_event_id``
        from the outbox (when given), then live ones — none twice, none skipped."""
        ...


def _money(value: object) -> MoneyType:
    data = value if isinstance(value, Mapping) else {}
    return MoneyType(amount=str(data.get("amount", "0")), currency=str(data.get("currency", "")))


def _date(value: object) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _status(value: object) -> InvoiceStatus | None:
    try:
        return InvoiceStatus(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _text(value: object) -> str | None:
    return None if value is None else str(value)


@strawberry.type
class InvoiceSnapshot:
    """The invoice's billing state the event announces (as of ``occurredAt``)."""

    id: strawberry.ID
    erp_id: str | None
    number: str | None
    status: InvoiceStatus | None
    previous_status: InvoiceStatus | None = strawberry.field(
        description="null the first time the gateway sees the invoice"
    )
    total: MoneyType
    amount_paid: MoneyType
    amount_remaining: MoneyType
    tran_date: date | None
    due_date: date | None
    days_overdue: int | None

    @classmethod
    def of(cls, value: object) -> InvoiceSnapshot:
        data: Mapping[str, Any] = value if isinstance(value, Mapping) else {}
        overdue = data.get("daysOverdue")
        return cls(
            id=strawberry.ID(str(data.get("id", ""))),
            erp_id=_text(data.get("erpId")),
            number=_text(data.get("number")),
            status=_status(data.get("status")),
            previous_status=_status(data.get("previousStatus")),
            total=_money(data.get("total")),
            amount_paid=_money(data.get("amountPaid")),
            amount_remaining=_money(data.get("amountRemaining")),
            tran_date=_date(data.get("tranDate")),
            due_date=_date(data.get("dueDate")),
            days_overdue=overdue if isinstance(overdue, int) else None,
        )


@strawberry.type
class PaymentSnapshot:
    """A customer payment (or credit memo) and what it applied to the event's invoice."""

    id: strawberry.ID
    erp_id: str | None
    kind: str = strawberry.field(description="PAYMENT or CREDIT_MEMO")
    number: str | None
    date: date | None
    amount: MoneyType = strawberry.field(description="as received; negative for a credit memo")
    applied: MoneyType = strawberry.field(description="applied to this invoice, in its currency")

    @classmethod
    def of(cls, value: object) -> PaymentSnapshot | None:
        if not isinstance(value, Mapping):
            return None
        return cls(
            id=strawberry.ID(str(value.get("id", ""))),
            erp_id=_text(value.get("erpId")),
            kind=str(value.get("kind", "PAYMENT")),
            number=_text(value.get("number")),
            date=_date(value.get("date")),
            amount=_money(value.get("amount")),
            applied=_money(value.get("applied")),
        )


def _common(event: BusEvent) -> dict[str, Any]:
    payload = event.payload
    return {
        "event_id": strawberry.ID(str(event.id)),
        "legal_entity": event.legal_entity or _text(payload.get("legal_entity")),
        "account_id": strawberry.ID(str(payload.get("account_id") or "")),
        "occurred_at": _text(payload.get("occurred_at")),
        "correlation_id": _text(payload.get("correlation_id")),
    }


@strawberry.type
class InvoiceStatusChanged:
    event_id: strawberry.ID = strawberry.field(description="pass the last one seen as lastEventId to resume")
    legal_entity: str | None
    account_id: strawberry.ID
    occurred_at: str | None = strawberry.field(description="the ERP's last-modified time of the change")
    correlation_id: str | None
    invoice: InvoiceSnapshot

    @classmethod
    def of(cls, event: BusEvent) -> InvoiceStatusChanged:
        return cls(**_common(event), invoice=InvoiceSnapshot.of(event.payload.get("invoice")))


@strawberry.type
class PaymentReceived:
    event_id: strawberry.ID = strawberry.field(description="pass the last one seen as lastEventId to resume")
    legal_entity: str | None
    account_id: strawberry.ID
    occurred_at: str | None
    correlation_id: str | None
    invoice: InvoiceSnapshot = strawberry.field(description="the invoice this payment applied to")
    payment: PaymentSnapshot | None

    @classmethod
    def of(cls, event: BusEvent) -> PaymentReceived:
        payload = event.payload
        return cls(
            **_common(event),
            invoice=InvoiceSnapshot.of(payload.get("invoice")),
            payment=PaymentSnapshot.of(payload.get("payment")),
        )


@strawberry.type
class IntegrationEvent:
    """Something an integration flow did: a run started or finished, an exception raised, a credit memo
    applied. ``detail`` is the event's whole payload."""

    event_id: strawberry.ID
    flow: str | None
    kind: str | None
    legal_entity: str | None
    account_id: strawberry.ID | None
    occurred_at: str | None
    correlation_id: str | None
    detail: JSON

    @classmethod
    def of(cls, event: BusEvent) -> IntegrationEvent:
        payload = event.payload
        common = _common(event)
        account = payload.get("account_id")
        return cls(
            **{**common, "account_id": strawberry.ID(str(account)) if account else None},
            flow=event_flow(event),
            kind=_text(payload.get("kind")),
            detail=cast(JSON, dict(payload)),
        )


def event_flow(event: BusEvent) -> str | None:
    """The flow an integration event belongs to: its ``flow`` field, else billing for billing events
    (``mutations.billing`` writes ``kind`` and ``invoice`` but no ``flow``)."""
    flow = event.payload.get("flow")
    if isinstance(flow, str) and flow:
        return flow
    return "billing" if "invoice" in event.payload else None


__all__ = [
    "INTEGRATION_EVENT",
    "INVOICE_STATUS_CHANGED",
    "PAYMENT_RECEIVED",
    "BusEvent",
    "EventFeed",
    "IntegrationEvent",
    "InvoiceSnapshot",
    "InvoiceStatusChanged",
    "PaymentReceived",
    "PaymentSnapshot",
    "event_flow",
]
