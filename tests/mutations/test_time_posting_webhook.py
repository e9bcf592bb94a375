"""``POST /webhooks/psa``: signed like the CRM's, the record re-read from the PSA, queued once."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from gateway.webhooks import signature
from store.models import InboxEvent, WorkItem
from subgraphs.psa.client import PsaClient
from tests.gateway.conftest import serve  # noqa: F401 — fixture
from tests.gateway.test_webhooks import Gateway, gateway, store_settings  # noqa: F401 — fixtures


async def post(gw: Gateway, event: dict[str, Any], signed: str | None = "right") -> Any:
    body = json.dumps(event).encode()
    headers = {"Content-Type": "application/json"}
    if signed == "right":
        headers["X-P2C-Signature"] = signature(body, gw.secret)
    elif signed is not None:
        headers["X-P2C-Signature"] = signed
    return await gw.http.post("/webhooks/psa", content=body, headers=headers)


async def approved_entry(gw: Gateway) -> dict[str, Any]:
    psa = gw.runtime.systems["psa"].client
    assert isinstance(psa, PsaClient)
    async for page in psa.time_entries(from_=None):
        for entry in page:
            if entry["is_closed"] and not entry["is_billed"]:
                return dict(entry)
    raise AssertionError("the demo firm has approved entries")


async def test_signed_time_entry_event_is_queued_once(gateway: Gateway) -> None:  # noqa: F811
    entry = await approved_entry(gateway)
    event = {"id": "d-1", "event": "time_entry.updated", "data": {"id": entry["id"]}}

    first = await post(gateway, event)
    again = await post(gateway, event)

    assert first.status_code == 202, first.text
    assert first.json() == {"status": "accepted"} and again.json() == {"status": "duplicate"}
    (item,) = await gateway.rows(WorkItem)
    assert item.kind == "post_time" and item.dedupe_key.startswith(f"post_time:{entry['id']}:v")
    assert item.payload["entry"]["id"] == entry["id"]
    # A second delivery id for the same version: a new inbox row, still one work item.
    await post(gateway, {**event, "id": "d-2"})
    assert len(await gateway.rows(WorkItem)) == 1


async def test_bad_signature_or_body_stores_nothing(gateway: Gateway) -> None:  # noqa: F811
    event = {"id": "d-9", "event": "time_entry.updated", "data": {"id": 1}}
    unsigned = await post(gateway, event, signed=None)
    forged = await post(gateway, event, signed="sha256=" + "0" * 64)
    assert (unsigned.status_code, forged.status_code) == (401, 401)
    malformed = await post(gateway, {"id": "d-10", "event": "nonsense"})
    assert malformed.status_code == 400
    assert await gateway.rows(InboxEvent) == []
    assert await gateway.rows(WorkItem) == []


async def test_unrelated_event_is_recorded_and_ignored(gateway: Gateway) -> None:  # noqa: F811
    response = await post(gateway, {"id": "d-3", "event": "project.updated", "data": {"id": 5}})
    assert response.json() == {"status": "ignored"}
    async with gateway.runtime.sessionmaker() as session:
        assert (await session.execute(sa.select(sa.func.count()).select_from(InboxEvent))).scalar() == 1
