"""``POST /webhooks/crm`` on the started gateway (embedded sandboxes), on SQLite and PostgreSQL stores."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.routing import Router

from gateway.app import create_app
from gateway.runtime import Runtime
from gateway.settings import Settings, load_settings
from gateway.webhooks import MAX_BODY_BYTES, signature, webhook_routes
from store.models import InboxEvent, WorkItem
from subgraphs.crm.client import CrmClient
from subgraphs.crm.config import CrmConfig
from subgraphs.crm.wire import ChangeEvent
from tests.gateway.conftest import Serve


@dataclass
class Gateway:
    app: Starlette
    http: httpx.AsyncClient
    runtime: Runtime
    crm: CrmClient  # the gateway's own connector
    sales: CrmClient  # someone else writing to the CRM
    secret: str

    async def post(self, body: bytes, signed: str | None = "right") -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if signed == "right":
            headers["X-P2C-Signature"] = signature(body, self.secret)
        elif signed is not None:
            headers["X-P2C-Signature"] = signed
        return await self.http.post("/webhooks/crm", content=body, headers=headers)

    async def change(self, by: CrmClient, opportunity_id: str, **fields: Any) -> ChangeEvent:
        events = await self.crm.events_since(0, limit=1000)
        after = events[-1]["replayId"] if events else 0
        await by.update("Opportunity", opportunity_id, fields)
        (event,) = await self.crm.events_since(after)
        return event

    async def open_opportunity(self) -> str:
        query = "SELECT Id FROM Opportunity WHERE IsClosed = FALSE ORDER BY Id LIMIT 1"
        return str((await self.crm.query_all(query))[0]["Id"])

    async def rows(self, model: type[Any]) -> list[Any]:
        async with self.runtime.sessionmaker() as session:
            return list((await session.execute(sa.select(model))).scalars())


def with_webhooks(settings: Settings) -> Starlette:
    """The app with the webhook routes, whether or not ``gateway.app.routes()`` lists them yet."""
    app = create_app(settings)
    if not any(getattr(route, "path", None) == "/webhooks/crm" for route in app.router.routes):
        router: Router = app.router
        router.routes[:0] = webhook_routes()
    return app


@pytest.fixture
def store_settings(scratch_database_url: str) -> Settings:
    return load_settings(database_url=scratch_database_url, demo_accounts=5)


@pytest.fixture
async def gateway(store_settings: Settings, serve: Serve) -> AsyncIterator[Gateway]:
    app = with_webhooks(store_settings)
    async with serve(app) as http:
        runtime: Runtime = app.state.runtime
        crm = runtime.systems["crm"].client
        assert isinstance(crm, CrmClient)
        sandbox = runtime.systems["crm"].sandbox
        assert sandbox is not None
        config = CrmConfig.model_validate(
            runtime.systems["crm"].config.model_dump() | {"client_name": "sales-ui"}
        )
        sales = CrmClient.from_config(config, httpx.ASGITransport(sandbox))
        secret = store_settings.webhook_secret
        assert secret is not None
        try:
            yield Gateway(app, http, runtime, crm, sales, secret.get_secret_value())
        finally:
            await sales.aclose()


def encode(event: ChangeEvent | dict[str, Any]) -> bytes:
    return json.dumps(event, default=float, separators=(",", ":")).encode()


async def test_signed_closed_won_event_is_accepted_and_queued(gateway: Gateway) -> None:
    opportunity = await gateway.open_opportunity()
    event = await gateway.change(gateway.sales, opportunity, StageName="Closed Won")

    response = await gateway.post(encode(event))

    assert response.status_code == 202, response.text
    assert response.json() == {"status": "accepted"}
    (item,) = await gateway.rows(WorkItem)
    assert item.kind == "provision" and item.payload["opportunity_id"] == opportunity
    assert item.payload["correlation_id"] == response.headers["X-Correlation-Id"]


@pytest.mark.parametrize("signed", [None, "sha256=" + "0" * 64, "sha256=nonsense", "", "md5=abc"])
async def test_bad_or_missing_signature_is_401_and_nothing_is_stored(
    gateway: Gateway, signed: str | None
) -> None:
    event = await gateway.change(gateway.sales, await gateway.open_opportunity(), StageName="Closed Won")

    response = await gateway.post(encode(event), signed=signed)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"
    assert response.json()["error"]["message"] == "bad webhook signature"
    assert await gateway.rows(InboxEvent) == []
    assert await gateway.rows(WorkItem) == []


async def test_signature_with_another_secret_or_over_another_body_is_refused(gateway: Gateway) -> None:
    body = encode(await gateway.change(gateway.sales, await gateway.open_opportunity(), Amount=5))

    wrong_secret = await gateway.post(body, signed=signature(body, gateway.secret + "x"))
    tampered = await gateway.post(
        body.replace(b'"Amount":5', b'"Amount":6'), signed=signature(body, gateway.secret)
    )

    assert (wrong_secret.status_code, tampered.status_code) == (401, 401)
    assert await gateway.rows(InboxEvent) == []


async def test_duplicate_delivery_is_one_inbox_row_and_one_item(gateway: Gateway) -> None:
    body = encode(
        await gateway.change(gateway.sales, await gateway.open_opportunity(), StageName="Closed Won")
    )

    first, second = await gateway.post(body), await gateway.post(body)

    assert [first.json(), second.json()] == [{"status": "accepted"}, {"status": "duplicate"}]
    assert len(await gateway.rows(InboxEvent)) == 1
    assert len(await gateway.rows(WorkItem)) == 1


async def test_echo_of_our_own_write_is_ignored(gateway: Gateway) -> None:
    event = await gateway.change(gateway.crm, await gateway.open_opportunity(), StageName="Closed Won")

    response = await gateway.post(encode(event))

    assert (response.status_code, response.json()) == (202, {"status": "ignored"})
    assert [row.status for row in await gateway.rows(InboxEvent)] == ["IGNORED"]
    assert await gateway.rows(WorkItem) == []


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"replayId": 1}', b"\xff\xfe"])
async def test_signed_but_malformed_body_is_400(gateway: Gateway, body: bytes) -> None:
    response = await gateway.post(body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BAD_REQUEST"
    assert await gateway.rows(InboxEvent) == []


async def test_body_over_a_megabyte_is_413_before_anything_else(gateway: Gateway) -> None:
    body = b'{"pad": "' + b"x" * MAX_BODY_BYTES + b'"}'

    response = await gateway.post(body)

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert await gateway.rows(InboxEvent) == []
