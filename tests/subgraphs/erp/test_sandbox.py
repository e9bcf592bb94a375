from __future__ import annotations

import asyncio

import httpx

REC = "/services/rest/record/v1"
SQL = "/services/rest/query/v1/suiteql"


async def test_create_returns_204_with_location(raw: httpx.AsyncClient) -> None:
    response = await raw.post(f"{REC}/customer", json={"companyName": "New Co", "subsidiary": {"id": "1"}})
    assert response.status_code == 204
    assert response.content == b""
    new_id = response.headers["Location"].rsplit("/", 1)[-1]
    assert response.headers["Location"].endswith(f"/services/rest/record/v1/customer/{new_id}")
    record = (await raw.get(f"{REC}/customer/{new_id}")).json()
    assert record["companyName"] == "New Co" and record["id"] == new_id and "lastModifiedDate" in record


async def test_eid_upsert_twice_keeps_one_record(raw: httpx.AsyncClient) -> None:
    body = {"companyName": "Upsert Co", "subsidiary": {"id": "1"}}
    first = await raw.put(f"{REC}/customer/eid:acc-1", json=body)
    second = await raw.put(f"{REC}/customer/eid:acc-1", json={**body, "companyName": "Upsert Co 2"})
    assert first.status_code == second.status_code == 204
    assert first.headers["Location"] == second.headers["Location"]
    rows = (
        await raw.post(
            SQL,
            json={"q": "SELECT id, companyname FROM customer WHERE externalid = 'acc-1'"},
            headers={"Prefer": "transient"},
        )
    ).json()
    assert rows["count"] == 1 and rows["items"][0]["companyname"] == "Upsert Co 2"
    by_eid = (await raw.get(f"{REC}/customer/eid:acc-1")).json()
    assert by_eid["externalId"] == "acc-1"


async def test_missing_record_is_404_envelope(raw: httpx.AsyncClient) -> None:
    response = await raw.get(f"{REC}/customer/424242")
    assert response.status_code == 404
    body = response.json()
    assert set(body) == {"type", "title", "status", "o:errorDetails"}
    assert body["o:errorDetails"][0]["o:errorCode"] == "NONEXISTENT_ID"


async def test_unknown_reference_is_invalid_fld_value(raw: httpx.AsyncClient) -> None:
    response = await raw.post(f"{REC}/job", json={"companyName": "X", "parent": {"id": "999999"}})
    detail = response.json()["o:errorDetails"][0]
    assert response.status_code == 400
    assert detail["o:errorCode"] == "INVALID_FLD_VALUE" and detail["o:errorPath"] == "parent"


async def test_list_paging(raw: httpx.AsyncClient) -> None:
    first = (await raw.get(f"{REC}/accountingPeriod", params={"limit": 5})).json()
    assert first["count"] == 5 and first["hasMore"] and first["totalResults"] == 12
    assert {link["rel"] for link in first["links"]} >= {"self", "next", "last"}
    last = (await raw.get(f"{REC}/accountingPeriod", params={"limit": 5, "offset": 10})).json()
    assert last["count"] == 2 and not last["hasMore"]
    assert (await raw.get(f"{REC}/accountingPeriod", params={"limit": 1001})).status_code == 400


async def test_suiteql_needs_prefer_transient(raw: httpx.AsyncClient) -> None:
    response = await raw.post(SQL, json={"q": "SELECT id FROM customer"})
    assert response.status_code == 400
    assert response.json()["o:errorDetails"][0]["o:errorCode"] == "INVALID_HEADER"


async def test_suiteql_limit_over_1000_is_400(raw: httpx.AsyncClient) -> None:
    response = await raw.post(
        SQL, params={"limit": 1001}, json={"q": "SELECT id FROM customer"}, headers={"Prefer": "transient"}
    )
    assert response.status_code == 400


async def test_without_token_401(app: object) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://erp") as http:  # type: ignore[arg-type]
        response = await http.get(f"{REC}/customer")
    assert response.status_code == 401
    assert response.json()["o:errorDetails"][0]["o:errorCode"] == "INVALID_LOGIN"


async def test_raw_calls_over_the_cap_get_429(raw: httpx.AsyncClient, admin: object) -> None:
    await admin.set_faults(latency_ms=30)  # type: ignore[attr-defined]
    responses = await asyncio.gather(*(raw.get(f"{REC}/subsidiary/1") for _ in range(40)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(429) > 0 and statuses.count(200) >= 15
    limited = next(r for r in responses if r.status_code == 429)
    assert limited.json()["o:errorDetails"][0]["o:errorCode"] == "CONCURRENCY_LIMIT_EXCEEDED"
    assert "Retry-After" in limited.headers


async def test_idempotency_key_duplicate_is_conflict(raw: httpx.AsyncClient) -> None:
    headers = {"Prefer": "respond-async", "X-NetSuite-Idempotency-Key": "9f0c6a52-1"}
    body = {"companyName": "Async Co", "subsidiary": {"id": "1"}}
    first = await raw.post(f"{REC}/customer", json=body, headers=headers)
    assert first.status_code == 202
    assert "/services/rest/async/v1/job/" in first.headers["Location"]
    job = (await raw.get(httpx.URL(first.headers["Location"]).path)).json()
    assert job["status"] == "succeeded" and "/record/v1/customer/" in job["location"]
    again = await raw.post(f"{REC}/customer", json=body, headers=headers)
    assert again.status_code == 400
    assert again.json()["title"] == "Conflict"
    assert again.json()["o:errorDetails"][0]["o:errorCode"] == "IDEMPOTENCY_ERROR"


async def test_transform_sales_order_to_invoice(raw: httpx.AsyncClient) -> None:
    created = await raw.post(
        f"{REC}/salesOrder", json={"entity": {"id": "1000"}, "tranDate": "2026-11-20", "total": 500}
    )
    so_id = created.headers["Location"].rsplit("/", 1)[-1]
    response = await raw.post(f"{REC}/salesOrder/{so_id}/!transform/invoice", json={})
    assert response.status_code == 204
    invoice = (await raw.get(httpx.URL(response.headers["Location"]).path)).json()
    assert invoice["createdFrom"] == {"id": so_id} and invoice["status"] == "open" and invoice["total"] == 500


async def _sql(raw: httpx.AsyncClient, q: str) -> list[dict[str, object]]:
    response = await raw.post(SQL, json={"q": q}, headers={"Prefer": "transient"})
    assert response.status_code == 200, response.text
    return [{k: v for k, v in row.items() if k != "links"} for row in response.json()["items"]]


async def test_sublist_tables_follow_every_write(raw: httpx.AsyncClient) -> None:
    invoice = (
        await _sql(
            raw,
            "SELECT id, entity, foreigntotal FROM transaction WHERE type = 'CustInvc' "
            "AND amountpaid = 0 ORDER BY id",
        )
    )[0]
    body = {
        "customer": {"id": str(invoice["entity"])},
        "tranDate": "2026-11-20",
        "payment": 10,
        "apply": {"items": [{"doc": {"id": str(invoice["id"])}, "amount": 10}]},
    }
    assert (await raw.put(f"{REC}/customerPayment/eid:pay-1", json=body)).status_code == 204
    links = "SELECT nextdoc, nexttype, foreignamount FROM NextTransactionLineLink WHERE previousdoc = "
    rows = await _sql(raw, f"{links}{invoice['id']} ORDER BY nextdoc")
    assert [(r["nexttype"], r["foreignamount"]) for r in rows] == [("CustPymt", 10)]
    body["apply"] = {"items": [{"doc": {"id": str(invoice["id"])}, "amount": 7}]}
    await raw.put(f"{REC}/customerPayment/eid:pay-1", json=body)
    assert [r["foreignamount"] for r in await _sql(raw, f"{links}{invoice['id']} ORDER BY nextdoc")] == [7]

    job = (await _sql(raw, "SELECT id FROM job ORDER BY id"))[0]["id"]
    schedule = {
        "job": {"id": str(job)},
        "scheduleType": "milestone",
        "milestones": [{"id": "m1", "name": "Kick-off", "amount": 100, "dueDate": "2026-12-01"}],
        "rateCard": [{"labourCategory": "Engineer", "rate": 150}],
    }
    created = await raw.post(f"{REC}/billingSchedule", json=schedule)
    schedule_id = created.headers["Location"].rsplit("/", 1)[-1]
    events = (
        "SELECT milestone, name, amount, completed FROM billingschedulemilestone "
        f"WHERE billingschedule = {schedule_id}"
    )
    assert await _sql(raw, events) == [
        {"milestone": "m1", "name": "Kick-off", "amount": 100, "completed": "F"}
    ]
    rates = await _sql(
        raw, f"SELECT labourcategory, rate FROM billingschedulerate WHERE billingschedule = {schedule_id}"
    )
    assert rates == [{"labourcategory": "Engineer", "rate": 150}]
    await raw.patch(f"{REC}/billingSchedule/{schedule_id}", json={"milestones": []})
    assert await _sql(raw, events) == []
    assert (await raw.delete(f"{REC}/billingSchedule/{schedule_id}")).status_code == 204
    assert (
        await _sql(raw, f"SELECT rate FROM billingschedulerate WHERE billingschedule = {schedule_id}") == []
    )
