"""The PSA connector: Harvest API v2 over an injected transport.

    client = PsaClient.from_config(PsaConfig(base_url="https://api.harvestapp.com"))
    async for entries in client.time_entries(updated_since=cursor):
        ...
    await client.aclose()

Stack (outside in): ``RetryTransport`` (429 honouring Retry-After, 5xx, transport errors; GET/PATCH/DELETE
only) → ``ConcurrencyLimit`` → ``RateBudget`` (sliding window, 100 / 15 s) → ``DeadlineTransport`` (per
attempt, ``timeout_s``) → the pooled HTTP transport, an ``ASGITransport`` to a sandbox, or a test's
``MockTransport``. Errors leave as ``UpstreamError`` subclasses (``errors.py``). Lists are read with
``paginate``, which always follows ``links.next``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

import httpx

from canonical.errors import UpstreamRejected
from subgraphs.common.transport import (
    DeadlineTransport,
    RetryPolicy,
    RetryTransport,
    Sleep,
    build_transport,
    pooled_transport,
)
from subgraphs.psa import errors
from subgraphs.psa.budget import RateBudget
from subgraphs.psa.config import DEFAULT_BASE_URL, PsaConfig
from subgraphs.psa.wire import (
    ExternalReference,
    WireClient,
    WireExpense,
    WireMilestone,
    WireProject,
    WireTask,
    WireTaskAssignment,
    WireTimeEntry,
    WireUser,
    format_ts,
)

Params = Mapping[str, str | int | float | bool | None]


@dataclass(frozen=True)
class Page:
    records: list[dict[str, Any]]
    total_entries: int
    next_url: str | None


def _param(value: str | int | float | bool | date | datetime | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return format_ts(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _filters(**values: str | int | float | bool | date | datetime | None) -> dict[str, str]:
    return {k.rstrip("_"): v for k, value in values.items() if (v := _param(value)) is not None}


class PsaClient:
    def __init__(
        self, http: httpx.AsyncClient, config: PsaConfig, *, retry: RetryTransport, budget: RateBudget
    ) -> None:
        self.http = http
        self.config = config
        self.retry = retry
        self.budget = budget

    @classmethod
    def from_config(
        cls,
        config: PsaConfig,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> PsaClient:
        """``transport`` None and ``base_url`` None → a fresh in-process sandbox with the demo firm."""
        if transport is None:
            if config.base_url is None:
                from subgraphs.common.sandbox import SandboxOptions
                from subgraphs.psa.sandbox import create_app

                transport = httpx.ASGITransport(
                    app=create_app(
                        SandboxOptions(
                            client_id=config.account_id or config.client_id,
                            client_secret=config.client_secret.get_secret_value(),
                        )
                    )
                )
            else:
                transport = pooled_transport(config.max_concurrency)
        # The deadline goes under the budget: time spent waiting for the budget is not the vendor's.
        budget = RateBudget(
            DeadlineTransport(transport, config.timeout_s),
            requests=config.rate_limit_requests,
            window_s=config.rate_limit_window_s,
            sleep=sleep,
        )
        retry = build_transport(
            RetryPolicy.from_config(config.retry), config.max_concurrency, budget, sleep=sleep
        )
        http = httpx.AsyncClient(
            transport=retry,
            base_url=config.base_url or DEFAULT_BASE_URL,
            timeout=config.timeout_s,
            headers={
                "Authorization": f"Bearer {config.client_secret.get_secret_value()}",
                "Harvest-Account-Id": config.account_id or config.client_id,
                "User-Agent": config.user_agent,
                "Accept": "application/json",
            },
        )
        return cls(http, config, retry=retry, budget=budget)

    @property
    def stats(self) -> dict[str, float | int]:
        limit = cast("Any", self.retry.inner).stats
        return {
            "requests": self.budget.stats.sent,
            "rate_limited": self.budget.stats.limited,
            "budget_waits": self.budget.stats.waits,
            "retries": self.retry.stats.retries,
            "peak_in_flight": limit.peak,
        }

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> PsaClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- plumbing ----------------------------------------------------------------------------------------
    async def request(
        self, method: str, url: str, *, params: Params | None = None, json: Mapping[str, Any] | None = None
    ) -> httpx.Response:
        request = self.http.build_request(method, url, params=params, json=json)
        try:
            response = await self.http.send(request)
        except httpx.HTTPError as exc:
            raise errors.from_exception(exc, request) from exc
        try:
            response.raise_for_status()
        except httpx.HTTPStatusError as exc:
            raise errors.from_response(response) from exc
        return response

    async def _json(
        self, method: str, url: str, *, params: Params | None = None, json: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        body = (await self.request(method, url, params=params, json=json)).json()
        return cast("dict[str, Any]", body)

    async def paginate(
        self, path: str, params: Params | None = None, *, key: str | None = None
    ) -> AsyncIterator[Page]:
        """Every page of a list, following ``links.next`` (page or cursor style alike)::

        async for page in client.paginate("/v2/projects", {"is_active": "true"}):
            handle(page.records)
        """
        key = key or path.rstrip("/").rsplit("/", 1)[-1]
        origin = self.http.base_url
        url: str | None = path
        first = True
        while url is not None:
            body = await self._json("GET", url, params=params if first else None)
            first = False
            url = (body.get("links") or {}).get("next")
            if url is not None:
                nxt = httpx.URL(url)
                # The token goes with every request: never follow a link off the vendor's origin.
                if (nxt.scheme, nxt.host, nxt.port) != (origin.scheme, origin.host, origin.port):
                    raise UpstreamRejected(errors.SYSTEM, f"links.next points off-origin: {nxt.host}")
            yield Page(list(body.get(key, [])), int(body.get("total_entries", 0)), url)

    async def _records(self, path: str, params: Params) -> AsyncIterator[list[dict[str, Any]]]:
        async for page in self.paginate(path, params):
            yield page.records

    # -- reads ------------------------------------------------------------------------------------------
    async def ping(self) -> bool:
        await self.request("GET", "/v2/company")
        return True

    async def time_entries(
        self,
        *,
        updated_since: datetime | str | None = None,
        from_: date | None = None,
        to: date | None = None,
        project_id: int | None = None,
        user_id: int | None = None,
        client_id: int | None = None,
        is_billed: bool | None = None,
        is_running: bool | None = None,
    ) -> AsyncIterator[list[WireTimeEntry]]:
        """Pages of time entries, keyset (cursor) paged so edits during the read skip nothing."""
        params = _filters(
            updated_since=updated_since,
            from_=from_,
            to=to,
            project_id=project_id,
            user_id=user_id,
            client_id=client_id,
            is_billed=is_billed,
            is_running=is_running,
        )
        params.update(cursor="", per_page=str(self.config.per_page))
        async for records in self._records("/v2/time_entries", params):
            yield cast("list[WireTimeEntry]", records)

    async def expenses(
        self,
        *,
        updated_since: datetime | str | None = None,
        from_: date | None = None,
        to: date | None = None,
        project_id: int | None = None,
        user_id: int | None = None,
        is_billed: bool | None = None,
    ) -> AsyncIterator[list[WireExpense]]:
        params = _filters(
            updated_since=updated_since,
            from_=from_,
            to=to,
            project_id=project_id,
            user_id=user_id,
            is_billed=is_billed,
        )
        params["per_page"] = str(self.config.per_page)
        async for records in self._records("/v2/expenses", params):
            yield cast("list[WireExpense]", records)

    async def projects(
        self,
        *,
        is_active: bool | None = None,
        client_id: int | None = None,
        updated_since: datetime | str | None = None,
    ) -> AsyncIterator[list[WireProject]]:
        params = _filters(
            is_active=is_active,
            client_id=client_id,
            updated_since=updated_since,
            per_page=self.config.per_page,
        )
        async for records in self._records("/v2/projects", params):
            yield cast("list[WireProject]", records)

    async def users(self, *, is_active: bool | None = None) -> list[WireUser]:
        params = _filters(is_active=is_active, per_page=self.config.per_page)
        return [cast("WireUser", r) async for page in self._records("/v2/users", params) for r in page]

    async def clients(self, *, is_active: bool | None = None) -> list[WireClient]:
        params = _filters(is_active=is_active, per_page=self.config.per_page)
        return [cast("WireClient", r) async for page in self._records("/v2/clients", params) for r in page]

    async def tasks(self) -> list[WireTask]:
        params = _filters(per_page=self.config.per_page)
        return [cast("WireTask", r) async for page in self._records("/v2/tasks", params) for r in page]

    async def time_entry(self, entry_id: int) -> WireTimeEntry:
        return cast("WireTimeEntry", await self._json("GET", f"/v2/time_entries/{entry_id}"))

    async def expense(self, expense_id: int) -> WireExpense:
        return cast("WireExpense", await self._json("GET", f"/v2/expenses/{expense_id}"))

    async def project(self, project_id: int) -> WireProject:
        return cast("WireProject", await self._json("GET", f"/v2/projects/{project_id}"))

    async def task_assignments(self, project_id: int) -> list[WireTaskAssignment]:
        path = f"/v2/projects/{project_id}/task_assignments"
        return [cast("WireTaskAssignment", r) async for page in self._records(path, {}) for r in page]

    async def milestones(self, project_id: int) -> list[WireMilestone]:
        """Sandbox extension (``/v2/projects/{id}/milestones``); a real Harvest answers 404."""
        path = f"/v2/projects/{project_id}/milestones"
        return [cast("WireMilestone", r) async for page in self._records(path, {}) for r in page]

    async def time_entries_by_project_ids(
        self, project_ids: Iterable[int], **filters: Any
    ) -> dict[int, list[WireTimeEntry]]:
        """All entries of each project: one paged read per project (Harvest filters one project_id at a
        time), run concurrently — the concurrency cap and the rate budget pace them."""
        ids = list(dict.fromkeys(project_ids))

        async def one(project_id: int) -> list[WireTimeEntry]:
            return [e async for page in self.time_entries(project_id=project_id, **filters) for e in page]

        async with asyncio.TaskGroup() as group:
            tasks = {pid: group.create_task(one(pid)) for pid in ids}
        return {pid: task.result() for pid, task in tasks.items()}

    # -- writes -----------------------------------------------------------------------------------------
    async def create_project(self, body: Mapping[str, Any]) -> WireProject:
        return cast("WireProject", await self._json("POST", "/v2/projects", json=body))

    async def update_project(self, project_id: int, body: Mapping[str, Any]) -> WireProject:
        return cast("WireProject", await self._json("PATCH", f"/v2/projects/{project_id}", json=body))

    async def create_task(self, body: Mapping[str, Any]) -> WireTask:
        return cast("WireTask", await self._json("POST", "/v2/tasks", json=body))

    async def create_task_assignment(self, project_id: int, body: Mapping[str, Any]) -> WireTaskAssignment:
        path = f"/v2/projects/{project_id}/task_assignments"
        return cast("WireTaskAssignment", await self._json("POST", path, json=body))

    async def create_time_entry(self, body: Mapping[str, Any]) -> WireTimeEntry:
        return cast("WireTimeEntry", await self._json("POST", "/v2/time_entries", json=body))

    async def update_time_entry(self, entry_id: int, body: Mapping[str, Any]) -> WireTimeEntry:
        return cast("WireTimeEntry", await self._json("PATCH", f"/v2/time_entries/{entry_id}", json=body))

    async def set_external_reference(
        self, entry_id: int, reference: ExternalReference | None
    ) -> WireTimeEntry:
        """Link an entry to the record we posted it as (allowed on approved, locked entries)."""
        return await self.update_time_entry(entry_id, {"external_reference": reference})

    async def delete_time_entry(self, entry_id: int) -> None:
        await self.request("DELETE", f"/v2/time_entries/{entry_id}")
