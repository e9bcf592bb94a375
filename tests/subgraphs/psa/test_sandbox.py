from __future__ import annotations

import httpx
from starlette.applications import Starlette

from subgraphs.common.sandbox import Limits, SandboxOptions
from subgraphs.psa.sandbox import create_app
from subgraphs.psa.wire import parse_ts

from .conftest import BASE, HEADERS


def _submitted(client_entries: list[dict[str, object]]) -> dict[str, object]:
    return next(e for e in client_entries if not e["is_closed"])


async def _all_entries(raw: httpx.AsyncClient, **params: object) -> list[dict[str, object]]:
    body = (await raw.get("/v2/time_entries", params={"per_page": 2000, **params})).json()
    assert body["total_pages"] == 1
    return list(body["time_entries"])


async def test_missing_user_agent_is_400(app: Starlette) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        del client.headers["User-Agent"]
        headers = {k: v for k, v in HEADERS.items() if k != "User-Agent"}
        response = await client.get("/v2/users", headers=headers)
    assert response.status_code == 400
    assert "User-Agent" in response.json()["message"]


async def test_auth_headers(raw: httpx.AsyncClient) -> None:
    bad_token = await raw.get("/v2/users", headers={"Authorization": "Bearer nope"})
    assert bad_token.status_code == 401 and bad_token.json()["error"] == "invalid_token"
    no_account = await raw.get("/v2/users", headers={"Harvest-Account-Id": ""})
    assert no_account.status_code == 401
    other_account = await raw.get("/v2/users", headers={"Harvest-Account-Id": "someone-else"})
    assert other_account.status_code == 403


async def test_page_envelope_and_per_page_limit(raw: httpx.AsyncClient) -> None:
    body = (await raw.get("/v2/projects", params={"per_page": 5, "page": 2})).json()
    assert (body["page"], body["per_page"], body["previous_page"], body["next_page"]) == (2, 5, 1, 3)
    assert body["total_pages"] == -(-body["total_entries"] // 5)
    assert httpx.URL(body["links"]["next"]).params == httpx.QueryParams({"page": "3", "per_page": "5"})
    assert body["links"]["next"].startswith(f"{BASE}/v2/projects?")
    assert httpx.URL(body["links"]["last"]).params["page"] == str(body["total_pages"])
    assert len(body["projects"]) == 5
    too_many = await raw.get("/v2/time_entries", params={"per_page": 2001})
    assert too_many.status_code == 422 and "per_page" in too_many.json()["message"]


async def test_seeding_is_deterministic() -> None:
    def dump(app: Starlette) -> list[tuple[object, ...]]:
        conn = app.state.psa.conn
        return [
            tuple(r)
            for t in ("time_entries", "expenses", "projects", "milestones")
            for r in conn.execute(f"SELECT * FROM {t} ORDER BY id")
        ]

    first = dump(create_app(SandboxOptions(seed=11, accounts=30)))
    assert first == dump(create_app(SandboxOptions(seed=11, accounts=30)))
    assert first != dump(create_app(SandboxOptions(seed=12, accounts=30)))
    empty = create_app(SandboxOptions(seed=None))
    assert dump(empty) == []


async def test_default_limits_are_harvests() -> None:
    app = create_app(SandboxOptions(accounts=5))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=BASE, headers=HEADERS
    ) as raw:
        statuses = [(await raw.get("/v2/company")).status_code for _ in range(101)]
        limited = await raw.get("/v2/company")
        counters = (await raw.get("/__sandbox/counters")).json()
    assert statuses[:100] == [200] * 100 and statuses[100] == 429
    assert int(limited.headers["Retry-After"]) >= 1 and "message" in limited.json()
    assert counters["limits"]["rate_limit_requests"] == 100


async def test_approve_reopen_and_edit_bump_updated_at(raw: httpx.AsyncClient) -> None:
    entry = _submitted(await _all_entries(raw))
    path = f"/__sandbox/psa/time_entries/{entry['id']}"
    approved = (await raw.post(f"{path}/approve")).json()
    assert (approved["is_closed"], approved["is_locked"], approved["locked_reason"]) == (
        True,
        True,
        "Approved",
    )
    assert parse_ts(approved["updated_at"]) > parse_ts(str(entry["updated_at"]))

    locked = await raw.patch(f"/v2/time_entries/{entry['id']}", json={"hours": 1.0})
    assert locked.status_code == 422 and "locked" in locked.json()["message"]
    linked = await raw.patch(f"/v2/time_entries/{entry['id']}", json={"external_reference": {"id": "TB-1"}})
    assert linked.status_code == 200 and linked.json()["external_reference"]["id"] == "TB-1"

    reopened = (await raw.post(f"{path}/reopen")).json()
    assert (reopened["is_closed"], reopened["is_locked"], reopened["locked_reason"]) == (False, False, None)
    assert parse_ts(reopened["updated_at"]) > parse_ts(linked.json()["updated_at"])

    edited = (await raw.patch(f"/v2/time_entries/{entry['id']}", json={"hours": 1.25})).json()
    assert edited["hours"] == 1.25
    assert parse_ts(edited["updated_at"]) > parse_ts(reopened["updated_at"])
    rejected = (await raw.post(f"{path}/reject")).json()
    assert rejected["is_closed"] is False


async def test_updated_since_follows_the_clock(raw: httpx.AsyncClient) -> None:
    entries = await _all_entries(raw)
    latest = max(parse_ts(str(e["updated_at"])) for e in entries)
    now = (await raw.post("/__sandbox/psa/clock", json={"advance_s": 86_400})).json()["now"]
    assert parse_ts(now) > latest
    assert await _all_entries(raw, updated_since=now) == []
    target = _submitted(entries)
    await raw.post(f"/__sandbox/psa/time_entries/{target['id']}/approve")
    changed = await _all_entries(raw, updated_since=now)
    assert [e["id"] for e in changed] == [target["id"]]
    assert parse_ts(str(changed[0]["updated_at"])) >= parse_ts(now)
    bad = await raw.get("/v2/time_entries", params={"updated_since": "yesterday"})
    assert bad.status_code == 422


async def test_filters(raw: httpx.AsyncClient) -> None:
    entries = await _all_entries(raw)
    project_id = entries[0]["project"]["id"]  # type: ignore[index]
    by_project = await _all_entries(raw, project_id=project_id)
    assert by_project and all(e["project"]["id"] == project_id for e in by_project)  # type: ignore[index]
    assert len(by_project) == sum(1 for e in entries if e["project"]["id"] == project_id)  # type: ignore[index]
    billed = await _all_entries(raw, is_billed="true")
    assert billed and all(e["is_billed"] for e in billed)
    window = await _all_entries(raw, **{"from": "2026-11-02", "to": "2026-11-06"})
    assert window and all("2026-11-02" <= str(e["spent_date"]) <= "2026-11-06" for e in window)


async def test_partial_approval_of_a_week(raw: httpx.AsyncClient) -> None:
    entries = [
        e for e in await _all_entries(raw, **{"from": "2026-11-23", "to": "2026-11-27"}) if not e["is_closed"]
    ]
    project_id = entries[0]["project"]["id"]  # type: ignore[index]
    week = [e for e in entries if e["project"]["id"] == project_id]  # type: ignore[index]
    users = sorted({e["user"]["id"] for e in week})  # type: ignore[index]
    response = await raw.post(
        "/__sandbox/psa/time_entries/approve_week",
        json={"project_id": project_id, "week_of": "2026-11-25", "user_id": users[0]},
    )
    approved = set(response.json()["approved"])
    assert approved == {e["id"] for e in week if e["user"]["id"] == users[0]}  # type: ignore[index]
    after = {e["id"]: e for e in await _all_entries(raw, project_id=project_id)}
    assert all(after[e["id"]]["is_closed"] == (e["id"] in approved) for e in week)  # type: ignore[index]


async def test_milestone_completion_and_project_close(raw: httpx.AsyncClient) -> None:
    projects = (await raw.get("/v2/projects")).json()["projects"]
    with_milestones = None
    for project in projects:
        milestones = (await raw.get(f"/v2/projects/{project['id']}/milestones")).json()["milestones"]
        open_ones = [m for m in milestones if not m["is_completed"]]
        if open_ones:
            with_milestones, milestone = project, open_ones[0]
            break
    assert with_milestones is not None
    first = (await raw.post(f"/__sandbox/psa/milestones/{milestone['id']}/complete")).json()
    second = (await raw.post(f"/__sandbox/psa/milestones/{milestone['id']}/complete")).json()
    assert first["is_completed"] and second["is_completed"]
    assert parse_ts(milestone["updated_at"]) < parse_ts(first["updated_at"]) < parse_ts(second["updated_at"])
    assert first["completed_on"] == second["completed_on"]

    pid = with_milestones["id"]
    task_id = (await raw.get(f"/v2/projects/{pid}/task_assignments")).json()["task_assignments"][0]["task"][
        "id"
    ]
    body = {"project_id": pid, "task_id": task_id, "spent_date": "2026-11-27", "hours": 2}
    assert (await raw.post("/v2/time_entries", json=body)).status_code == 201
    closed = (await raw.post(f"/__sandbox/psa/projects/{pid}/close")).json()
    assert closed["is_active"] is False
    refused = await raw.post("/v2/time_entries", json=body)
    assert refused.status_code == 422


async def test_unknown_records_are_404(raw: httpx.AsyncClient) -> None:
    assert (await raw.get("/v2/time_entries/1")).status_code == 404
    assert (await raw.post("/__sandbox/psa/time_entries/1/approve")).status_code == 404
    assert (await raw.get("/v2/projects/1/milestones")).status_code == 404


async def test_limits_can_be_lifted_for_a_run() -> None:
    app = create_app(SandboxOptions(accounts=5, limits=Limits()))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=BASE, headers=HEADERS
    ) as raw:
        statuses = {(await raw.get("/v2/company")).status_code for _ in range(120)}
    assert statuses == {200}
