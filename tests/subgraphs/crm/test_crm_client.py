"""The connector against the sandbox: auth, bulk reads, writes, events, limits."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

import httpx
import pytest
from starlette.applications import Starlette

from canonical.errors import UpstreamAuthFailed, UpstreamNotFound, UpstreamRejected
from subgraphs.common.sandbox import SandboxAdmin
from subgraphs.crm.client import CrmClient
from subgraphs.crm.config import CrmConfig
from subgraphs.crm.loaders import load_accounts, load_invoices, load_opportunities
from subgraphs.crm.sandbox import deliver_via

ACCOUNT_IDS = [f"001{n:012d}AAA" for n in range(1, 41)]


async def test_token_is_fetched_once_and_refreshed_once_after_expiry(
    client: CrmClient, raw: httpx.AsyncClient, admin: SandboxAdmin
) -> None:
    await asyncio.gather(*(client.get("Account", i) for i in ACCOUNT_IDS[:10]))
    assert client.auth.fetches == 1  # concurrent first calls share one token request
    assert (await raw.post("/__sandbox/crm/expire-tokens")).json()["expired"] == 1
    await admin.reset_counters()
    account = await client.get("Account", ACCOUNT_IDS[0])
    assert account["Id"] == ACCOUNT_IDS[0]
    assert client.auth.fetches == 2
    by_endpoint = (await admin.counters())["by_endpoint"]
    assert by_endpoint["POST /services/oauth2/token"] == 1
    assert by_endpoint["GET /services/data/v62.0/sobjects/Account/{id}"] == 2  # 401, then the retry


async def test_wrong_secret_fails_fast_with_auth_error(app: Starlette, admin: SandboxAdmin) -> None:
    config = CrmConfig(client_secret="wrong")  # type: ignore[arg-type]
    crm = CrmClient.from_config(config, httpx.ASGITransport(app))
    with pytest.raises(UpstreamAuthFailed) as caught:
        await crm.query_all("SELECT Id FROM Account")
    await crm.aclose()
    assert caught.value.vendor_code == "invalid_client"
    assert (await admin.counters())["total"] == 1  # one token request, no loop, no query


async def test_a_stale_token_is_replaced_and_the_wire_says_invalid_session_id(
    client: CrmClient, raw: httpx.AsyncClient
) -> None:
    await client.get("Account", ACCOUNT_IDS[0])
    client.auth.token = "forged"
    assert (await client.get("Account", ACCOUNT_IDS[0]))["Id"] == ACCOUNT_IDS[0]
    response = await raw.get("/services/data/v62.0/limits", headers={"Authorization": "Bearer forged"})
    assert response.status_code == 401
    assert response.json() == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID", "fields": []}
    ]


async def test_bulk_reads_are_chunked_into_in_lists(
    app: Starlette, config: CrmConfig, admin: SandboxAdmin
) -> None:
    app.state.settings.query_batch_size = 2000
    crm = CrmClient.from_config(config.model_copy(update={"query_chunk_size": 15}), httpx.ASGITransport(app))
    accounts = await crm.accounts_by_ids([*ACCOUNT_IDS, "001999999999999AAA", ACCOUNT_IDS[0]])
    await crm.aclose()
    assert sorted(a["Id"] for a in accounts) == ACCOUNT_IDS
    by_endpoint = (await admin.counters())["by_endpoint"]
    assert by_endpoint["GET /services/data/v62.0/query"] == 3  # 41 distinct ids / 15 per query


async def test_loaders_return_one_entry_per_key_in_order(client: CrmClient) -> None:
    keys = [ACCOUNT_IDS[3], "001999999999999AAA", ACCOUNT_IDS[0]]
    loaded = await load_accounts(client, keys)
    assert [a.crm_id if a else None for a in loaded] == [ACCOUNT_IDS[3], None, ACCOUNT_IDS[0]]  # type: ignore[union-attr]
    opps = await load_opportunities(client, ["006000000000001AAA", "006000000000002AAA"])
    assert all(o is not None and not isinstance(o, Exception) and o.lines for o in opps)
    first = opps[0]
    assert first is not None and not isinstance(first, Exception)
    assert first.lines_total == first.amount and first.legal_entity in ("US01", "EU01")
    assert await load_invoices(client, ["nope"]) == [None]


async def test_upsert_creates_updates_and_refuses_ambiguity(client: CrmClient) -> None:
    fields = {"Name": "Upserted", "Legal_Entity__c": "US01", "CurrencyIsoCode": "USD"}
    created = await client.upsert("Account", "P2C_Id__c", "p2c-1", fields)
    assert created.created
    again = await client.upsert("Account", "P2C_Id__c", "p2c-1", {"Name": "Renamed"})
    assert again.id == created.id and not again.created
    assert (await client.get("Account", created.id))["Name"] == "Renamed"
    await client.create("Account", {"Name": "Twin", "P2C_Id__c": "p2c-1"})
    with pytest.raises(UpstreamRejected) as caught:
        await client.upsert("Account", "P2C_Id__c", "p2c-1", {"Name": "Which?"})
    assert caught.value.status == 300 and caught.value.vendor_code == "MULTIPLE_CHOICES"
    assert caught.value.details == {"matches": [created.id, caught.value.details["matches"][1]]}  # type: ignore[call-overload,index]


async def test_write_errors_carry_vendor_codes(client: CrmClient) -> None:
    with pytest.raises(UpstreamRejected) as caught:
        await client.create("Opportunity", {"Name": "No stage"})
    assert caught.value.vendor_code == "REQUIRED_FIELD_MISSING"
    with pytest.raises(UpstreamRejected) as caught:
        await client.update("Opportunity", "006000000000001AAA", {"IsWon": True})
    assert caught.value.vendor_code == "INVALID_FIELD_FOR_INSERT_UPDATE"
    with pytest.raises(UpstreamNotFound):
        await client.get("Account", "001999999999999AAA")
    with pytest.raises(UpstreamNotFound):
        await client.upsert("Account", "Name", "x", {})  # not an external id field


async def test_collections_upsert_chunks_by_200_and_keeps_order(
    client: CrmClient, admin: SandboxAdmin
) -> None:
    records = [{"P2C_Id__c": f"bulk-{i}", "Name": f"Bulk {i}", "Legal_Entity__c": "EU01"} for i in range(450)]
    results = await client.upsert_many("Account", "P2C_Id__c", records)
    assert len(results) == 450 and all(r["success"] and r["created"] for r in results)
    by_endpoint = (await admin.counters())["by_endpoint"]
    assert by_endpoint["PATCH /services/data/v62.0/composite/sobjects/Account/P2C_Id__c"] == 3
    again = await client.upsert_many("Account", "P2C_Id__c", records[:3])
    assert [r["id"] for r in again] == [r["id"] for r in results[:3]] and not any(r["created"] for r in again)


async def test_collections_all_or_none_rolls_back_everything(client: CrmClient) -> None:
    before = await client.events_since(0)
    records: list[dict[str, object]] = [
        {"Name": "ok", "Legal_Entity__c": "US01"},
        {"Name": "bad", "Nope__c": 1},
    ]
    results = await client.create_many("Account", records, all_or_none=True)
    assert [r["success"] for r in results] == [False, False]
    assert results[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert results[1]["errors"][0]["statusCode"] == "INVALID_FIELD"
    assert await client.events_since(0) == before
    partial = await client.create_many("Account", records)
    assert [r["success"] for r in partial] == [True, False]


async def test_over_200_records_in_one_call_is_refused(raw: httpx.AsyncClient, client: CrmClient) -> None:
    await client.ping()
    token = client.auth.token
    body = {"records": [{"attributes": {"type": "Account"}, "Name": str(i)} for i in range(201)]}
    response = await raw.post(
        "/services/data/v62.0/composite/sobjects", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 400 and response.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


async def test_limit_info_is_parsed_from_every_response(client: CrmClient) -> None:
    info = await client.ping()
    assert client.limit_info is not None and client.limit_info.max == 100_000 == info.max
    used = client.limit_info.used
    await client.get("Account", ACCOUNT_IDS[0])
    assert client.limit_info.used == used + 1


async def test_concurrency_cap_holds_under_50_concurrent_calls(
    app: Starlette, config: CrmConfig, admin: SandboxAdmin
) -> None:
    crm = CrmClient.from_config(config.model_copy(update={"max_concurrency": 4}), httpx.ASGITransport(app))
    await crm.ping()
    await admin.set_faults(latency_ms=5)
    await admin.reset_counters()
    await asyncio.gather(*(crm.get("Account", ACCOUNT_IDS[i % 40]) for i in range(50)))
    await crm.aclose()
    assert (await admin.counters())["peak_in_flight"] == 4


async def test_change_events_record_origin_and_fields(client: CrmClient) -> None:
    opp = "006000000000001AAA"
    await client.update("Opportunity", opp, {"StageName": "Closed Lost", "Provisioning_Status__c": "SKIPPED"})
    [event] = await client.events_since(0)
    header = event["payload"]["ChangeEventHeader"]
    assert header["entityName"] == "Opportunity" and header["recordIds"] == [opp]
    assert header["changeType"] == "UPDATE"
    assert header["changeOrigin"] == "com/salesforce/api/rest/62.0;client=p2c-gateway"
    assert {"StageName", "IsWon", "LastModifiedDate"} <= set(header["changedFields"])
    assert event["payload"]["StageName"] == "Closed Lost"
    assert client.is_own_echo(event)
    assert await client.events_since(event["replayId"]) == []
    stamp = (await client.get("Opportunity", opp))["SystemModstamp"]
    assert stamp > "2026-11-27"  # bumped by the change


async def test_events_from_someone_else_are_not_echoes(client: CrmClient, raw: httpx.AsyncClient) -> None:
    await client.ping()
    await raw.patch(
        "/services/data/v62.0/sobjects/Account/" + ACCOUNT_IDS[0],
        json={"Industry": "Energy"},
        headers={"Authorization": f"Bearer {client.auth.token}", "Sforce-Call-Options": "client=ui"},
    )
    await client.delete("Account", ACCOUNT_IDS[1])
    first, second = await client.events_since(0)
    assert first["payload"]["ChangeEventHeader"]["changeOrigin"].endswith(";client=ui")
    assert not client.is_own_echo(first)
    assert second["payload"]["ChangeEventHeader"]["changeType"] == "DELETE"


async def test_webhook_delivers_signed_events(
    app: Starlette, client: CrmClient, raw: httpx.AsyncClient
) -> None:
    received: list[httpx.Request] = []
    failures = iter([True])  # the first POST fails once: delivery retries

    def receiver(request: httpx.Request) -> httpx.Response:
        if next(failures, False):
            return httpx.Response(503)
        received.append(request)
        return httpx.Response(204)

    app.state.webhooks.deliver = deliver_via(httpx.AsyncClient(transport=httpx.MockTransport(receiver)))
    app.state.webhooks.backoff_s = 0
    await raw.put("/__sandbox/crm/webhook", json={"url": "http://gateway/webhooks/crm", "secret": "s3cret"})
    await client.create("Account", {"Name": "Hooked", "Legal_Entity__c": "US01"})
    await app.state.webhooks.drain()
    [request] = received
    body = request.content
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["X-P2C-Signature"], expected)
    event = json.loads(body)
    assert request.headers["X-P2C-Event-Id"] == str(event["replayId"])
    assert event["payload"]["ChangeEventHeader"]["changeType"] == "CREATE"
    assert (await raw.get("/__sandbox/crm/webhook")).json()["delivered"] == 1
