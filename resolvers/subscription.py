"""GraphQL subscriptions: invoice status and payments per account, integration events for operators.

    subscription { invoiceStatusChanged(accountId: "6f1c…", legalEntity: "US01", lastEventId: "41") {
        eventId invoice { number status previousStatus amountRemaining { amount currency } } } }

Each field reads the gateway's event bus (``info.context.events``, an ``EventFeed``) with a filter:
its topic, the arguments given, and — always — the caller's legal entities. An event of an entity the
principal may not see is never sent, and one without a legal entity only to a principal granted all of
them (least privilege, like every read). ``lastEventId`` replays what the caller missed from the outbox,
in order, before the live events.

Wired into the schema by ``resolvers.mutation.extend_schema_kwargs`` (``subscription=Subscription``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Annotated, Any

import strawberry

from canonical.errors import GatewayError, ValidationFailed
from canonical.principal import Permission, Principal
from resolvers.context import Info
from resolvers.types.events import (
    INTEGRATION_EVENT,
    INVOICE_STATUS_CHANGED,
    PAYMENT_RECEIVED,
    BusEvent,
    EventFeed,
    IntegrationEvent,
    InvoiceStatusChanged,
    PaymentReceived,
    event_flow,
)

LastEventId = Annotated[
    strawberry.ID | None,
    strawberry.argument(
        description="the eventId of the last event received: replay what came after it, then go live"
    ),
]


class SubscriptionsUnavailable(GatewayError):
    code = "SUBSCRIPTIONS_UNAVAILABLE"
    http_status = 503


def event_feed(info: Info) -> EventFeed:
    """The bus the gateway put on this connection's context."""
    feed: Any = getattr(info.context, "events", None)
    if feed is None or not callable(getattr(feed, "subscribe", None)):
        raise SubscriptionsUnavailable("subscriptions are not available on this connection")
    return feed  # type: ignore[no-any-return]


def parse_event_id(value: strawberry.ID | str | None) -> int | None:
    if value is None:
        return None
    text = str(value).strip()
    if not text.isdigit():
        raise ValidationFailed(
            "lastEventId must be an event id received earlier (digits)", subject="lastEventId"
        )
    return int(text)


def visible_to(principal: Principal) -> Callable[[BusEvent], bool]:
    """Legal-entity scope: an event without an entity only for a principal granted all of them."""

    def visible(event: BusEvent) -> bool:
        entity = event.legal_entity or event.payload.get("legal_entity")
        if principal.all_entities:
            return True
        return isinstance(entity, str) and principal.can_see_entity(entity)

    return visible


def account_filter(
    principal: Principal, account_id: strawberry.ID | None, legal_entity: str | None
) -> Callable[[BusEvent], bool]:
    visible = visible_to(principal)
    account = str(account_id) if account_id is not None else None

    def accept(event: BusEvent) -> bool:
        if not visible(event):
            return False
        if account is not None and str(event.payload.get("account_id") or "") != account:
            return False
        entity = event.legal_entity or event.payload.get("legal_entity")
        return legal_entity is None or entity == legal_entity

    return accept


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Invoice billing-state changes (status, amounts, due date), optionally of one account "
        "and/or legal entity; only legal entities the caller may see."
    )
    async def invoice_status_changed(
        self,
        info: Info,
        account_id: strawberry.ID | None = None,
        legal_entity: str | None = None,
        last_event_id: LastEventId = None,
    ) -> AsyncGenerator[InvoiceStatusChanged, None]:
        feed = event_feed(info)
        accept = account_filter(info.context.principal, account_id, legal_entity)
        async for event in feed.subscribe(
            topics=frozenset({INVOICE_STATUS_CHANGED}),
            accept=accept,
            last_event_id=parse_event_id(last_event_id),
        ):
            yield InvoiceStatusChanged.of(event)

    @strawberry.subscription(
        description="Customer payments (one event per invoice a payment applied to), optionally of one "
        "account and/or legal entity; only legal entities the caller may see."
    )
    async def payment_received(
        self,
        info: Info,
        account_id: strawberry.ID | None = None,
        legal_entity: str | None = None,
        last_event_id: LastEventId = None,
    ) -> AsyncGenerator[PaymentReceived, None]:
        feed = event_feed(info)
        accept = account_filter(info.context.principal, account_id, legal_entity)
        async for event in feed.subscribe(
            topics=frozenset({PAYMENT_RECEIVED}), accept=accept, last_event_id=parse_event_id(last_event_id)
        ):
            yield PaymentReceived.of(event)

    @strawberry.subscription(
        description="Operators: integration events (runs started and finished, exceptions raised, credit "
        "memos applied) of one flow, or of all flows; only legal entities the caller may see."
    )
    async def integration_events(
        self,
        info: Info,
        flow: str | None = None,
        last_event_id: LastEventId = None,
    ) -> AsyncGenerator[IntegrationEvent, None]:
        principal = info.context.principal
        # Operators: whoever may replay exceptions (finance, integration admins).
        principal.require(Permission.REPLAY_EXCEPTION, action="integrationEvents")
        feed = event_feed(info)
        visible = visible_to(principal)

        def accept(event: BusEvent) -> bool:
            return visible(event) and (flow is None or event_flow(event) == flow)

        async for event in feed.subscribe(
            topics=frozenset({INTEGRATION_EVENT}), accept=accept, last_event_id=parse_event_id(last_event_id)
        ):
            yield IntegrationEvent.of(event)


__all__ = ["Subscription", "SubscriptionsUnavailable", "account_filter", "visible_to"]
