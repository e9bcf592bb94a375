"""Helpers of the subscription tests: the schema with ``Subscription``, outbox events per the billing
contract (``mutations.billing.events``), tokens and graphql-transport-ws messages."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import resolvers.schema
from canonical.principal import ALL_ENTITIES, Role
from gateway.auth import mint_dev_token
from gateway.settings import Settings
from mutations.billing.events import INVOICE_STATUS_CHANGED, BillingEvent, MoneyDict
from resolvers.subscription import Subscription
from store.db import make_engine, make_sessionmaker
from store.repositories import OutboxRepo

PROTOCOL = "graphql-transport-ws"
INVOICES = """subscription($account: ID, $entity: String, $after: ID) {
  invoiceStatusChanged(accountId: $account, legalEntity: $entity, lastEventId: $after) {
    eventId legalEntity accountId invoice { number status previousStatus amountRemaining { amount currency } }
  }
}"""
PAYMENTS = """subscription { paymentReceived { eventId accountId payment { kind amount { amount } } } }"""


def with_subscriptions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Build the app's schema with ``Subscription`` (until ``extend_schema_kwargs`` wires it itself)."""
    kwargs: Callable[[], dict[str, Any]] = getattr(resolvers.schema, "extend_schema_kwargs")  # noqa: B009
    if "subscription" not in kwargs():
        monkeypatch.setattr(
            resolvers.schema, "extend_schema_kwargs", lambda: {**kwargs(), "subscription": Subscription}
        )


def token(settings: Settings, entities: list[str], roles: tuple[Role, ...] = (Role.FINANCE,)) -> str:
    assert settings.jwt_secret is not None
    return mint_dev_token(
        settings.jwt_secret,
        "ana",
        roles,
        entities,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )


def all_entities_token(settings: Settings) -> str:
    return token(settings, [ALL_ENTITIES])


def billing_payload(
    *, entity: str | None, account: str, number: str, status: str = "PAID", previous: str | None = "OPEN"
) -> BillingEvent:
    money = MoneyDict(amount="0.00", currency="USD")
    return BillingEvent(
        legal_entity=entity,
        account_id=account,
        invoice={
            "id": f"inv-{number}",
            "erpId": number,
            "number": number,
            "status": status,
            "previousStatus": previous,
            "total": {"amount": "1200.00", "currency": "USD"},
            "amountPaid": {"amount": "1200.00", "currency": "USD"},
            "amountRemaining": money,
            "tranDate": "2026-11-30",
            "dueDate": "2026-12-30",
            "daysOverdue": 0,
        },
        payment=None,
        kind=None,
        occurred_at="2026-12-02T10:15:00.000Z",
        correlation_id="test",
        fingerprint=f"fp-{number}",
    )


async def emit_async(url: str, events: list[tuple[str, dict[str, Any]]]) -> list[int]:
    """Commit outbox rows (topic, payload) in one transaction, as a producer would; their ids."""
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine).begin() as session:
            repo = OutboxRepo(session)
            return [
                await repo.add(
                    topic, payload, key=payload["invoice"]["id"], legal_entity=payload["legal_entity"]
                )
                for topic, payload in events
            ]
    finally:
        await engine.dispose()


def emit(url: str, *payloads: BillingEvent, topic: str = INVOICE_STATUS_CHANGED) -> list[int]:
    return asyncio.run(emit_async(url, [(topic, dict(payload)) for payload in payloads]))


def init(token_value: str | None = None, **payload: Any) -> dict[str, Any]:
    if token_value is not None:
        payload["Authorization"] = f"Bearer {token_value}"
    return {"type": "connection_init", "payload": payload}


def subscribe(operation_id: str, query: str, **variables: Any) -> dict[str, Any]:
    return {"id": operation_id, "type": "subscribe", "payload": {"query": query, "variables": variables}}
