"""The NetSuite connector: records, SuiteQL, paging, bulk reads and cached reference data.

    client = ErpClient.from_config(ErpConfig(), transport=httpx.ASGITransport(app=create_app(options)))
    customer_id = await client.upsert("customer", account.id, body)   # idempotent by external id
    async for page in client.suiteql_pages("SELECT id FROM customer ORDER BY id"):
        ...
    period = await client.period_for(date(2026, 11, 3))               # cached reference data

Retries, backoff honouring Retry-After, the concurrency cap and the per-attempt deadline come from
``subgraphs.common.transport``; auth is ``M2MAuth``; every failure leaves as a gateway ``UpstreamError``
(see ``errors.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import httpx

from canonical.entities import AccountingPeriod
from canonical.errors import UpstreamError
from subgraphs.common.transport import IDEMPOTENT, RetryPolicy, RetryTransport, Sleep, build_transport
from subgraphs.erp.auth import M2MAuth
from subgraphs.erp.config import SANDBOX_URL, ErpConfig
from subgraphs.erp.errors import from_exception, from_response
from subgraphs.erp.queries import Queries
from subgraphs.erp.refdata import Reference, ReferenceCache
from subgraphs.erp.wire import Page, Record

REST = "/services/rest"


class ErpClient(Queries):
    def __init__(
        self,
        http: httpx.AsyncClient,
        config: ErpConfig,
        *,
        transport: RetryTransport | None = None,
        auth: M2MAuth | None = None,
    ) -> None:
        self.http = http
        self.config = config
        self.transport = transport
        self.auth = auth
        self.reference = ReferenceCache(self._load_reference, config.reference_ttl_s)

    @classmethod
    def from_config(
        cls,
        config: ErpConfig,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> ErpClient:
        stack = build_transport(
            RetryPolicy.from_config(config.retry),
            config.max_concurrency,
            transport,
            timeout_s=config.timeout_s,
            sleep=sleep,
        )
        base_url = config.base_url or SANDBOX_URL
        timeout = httpx.Timeout(config.timeout_s)
        auth = M2MAuth(httpx.AsyncClient(transport=stack, base_url=base_url, timeout=timeout), config)
        http = httpx.AsyncClient(
            transport=stack,
            base_url=base_url,
            timeout=timeout,
            auth=auth,
            headers={"Accept": "application/json"},
        )
        return cls(http, config, transport=stack, auth=auth)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> ErpClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- one request, translated once ------------------------------------------------------------------
    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        idempotent: bool = False,
    ) -> httpx.Response:
        request = self.http.build_request(method, path, json=json, params=params, headers=headers)
        if idempotent:
            request.extensions[IDEMPOTENT] = True
        try:
            response = await self.http.send(request)
        except httpx.HTTPError as exc:
            raise from_exception(exc, f"{method} {path}") from exc
        if response.status_code >= 400:
            raise from_response(
                response,
                period_patterns=self.config.period_closed_patterns,
                project_patterns=self.config.project_closed_patterns,
            )
        return response

    @staticmethod
    def _id_from_location(response: httpx.Response) -> str:
        location = response.headers.get("Location", "")
        return str(location).rstrip("/").rsplit("/", 1)[-1]

    # -- records -------------------------------------------------------------------------------------------
    async def create(self, record_type: str, body: Record, *, idempotency_key: str | None = None) -> str:
        """POST a new record → its internal id. Retried only when it carries an idempotency key."""
        headers = {"X-NetSuite-Idempotency-Key": idempotency_key} if idempotency_key else None
        response = await self._send(
            "POST",
            f"{REST}/record/v1/{record_type}",
            json=body,
            headers=headers,
            idempotent=idempotency_key is not None,
        )
        return self._id_from_location(response)

    async def create_async(self, record_type: str, body: Record, *, idempotency_key: str) -> str:
        """Submit with ``Prefer: respond-async`` → the async job's URL (poll it with ``job``)."""
        response = await self._send(
            "POST",
            f"{REST}/record/v1/{record_type}",
            json=body,
            idempotent=True,
            headers={"Prefer": "respond-async", "X-NetSuite-Idempotency-Key": idempotency_key},
        )
        return str(response.headers.get("Location", ""))

    async def job(self, location: str) -> Record:
        path = httpx.URL(location).path
        return dict((await self._send("GET", path)).json())

    async def upsert(self, record_type: str, external_id: str, body: Record) -> str:
        """Create or replace the record with this external id (``PUT .../eid:<id>``) → its internal id."""
        response = await self._send("PUT", f"{REST}/record/v1/{record_type}/eid:{external_id}", json=body)
        return self._id_from_location(response)

    async def update(self, record_type: str, record_id: str, body: Record) -> None:
        await self._send("PATCH", f"{REST}/record/v1/{record_type}/{record_id}", json=body)

    async def delete(self, record_type: str, record_id: str) -> None:
        await self._send("DELETE", f"{REST}/record/v1/{record_type}/{record_id}")

    async def transform(
        self, record_type: str, record_id: str, target: str, body: Record | None = None
    ) -> str:
        response = await self._send(
            "POST", f"{REST}/record/v1/{record_type}/{record_id}/!transform/{target}", json=body or {}
        )
        return self._id_from_location(response)

    async def get(self, record_type: str, record_id: str) -> Record:
        return dict((await self._send("GET", f"{REST}/record/v1/{record_type}/{record_id}")).json())

    async def get_by_external_id(self, record_type: str, external_id: str) -> Record | None:
        """The record with this external id, or None — the dedupe question flows ask before writing."""
        try:
            return dict((await self._send("GET", f"{REST}/record/v1/{record_type}/eid:{external_id}")).json())
        except UpstreamError as exc:
            if exc.status == 404:
                return None
            raise

    # -- paging --------------------------------------------------------------------------------------------
    async def _pages(
        self,
        method: str,
        path: str,
        body: Record | None,
        page_size: int | None,
        headers: dict[str, str] | None = None,
    ) -> AsyncIterator[Page]:
        limit = min(page_size or self.config.page_size, 1000)
        offset = 0
        while True:
            response = await self._send(
                method,
                path,
                json=body,
                params={"limit": limit, "offset": offset},
                headers=headers,
                idempotent=True,
            )
            data = response.json()
            items = [{k: v for k, v in item.items() if k != "links"} for item in data.get("items", [])]
            yield Page(
                items,
                int(data.get("offset", offset)),
                int(data.get("totalResults", 0)),
                bool(data.get("hasMore")),
            )
            if not data.get("hasMore") or not items:
                return
            offset += limit

    def list_pages(self, record_type: str, *, page_size: int | None = None) -> AsyncIterator[Page]:
        """Pages of ``{"id": ...}`` for every record of a type (the list endpoint returns ids only)."""
        return self._pages("GET", f"{REST}/record/v1/{record_type}", None, page_size)

    def suiteql_pages(self, q: str, *, page_size: int | None = None) -> AsyncIterator[Page]:
        """Pages of rows; give ``q`` a unique ORDER BY so paging is stable."""
        return self._pages("POST", f"{REST}/query/v1/suiteql", {"q": q}, page_size, {"Prefer": "transient"})

    async def suiteql(self, q: str, *, page_size: int | None = None) -> list[Record]:
        rows: list[Record] = []
        async for page in self.suiteql_pages(q, page_size=page_size):
            rows.extend(page.items)
        return rows

    # -- reference data --------------------------------------------------------------------------------
    async def _load_reference(self) -> Reference:
        return await Reference.load(self.suiteql)

    async def reference_data(self) -> Reference:
        return await self.reference.get()

    def invalidate(self) -> None:
        """Forget cached reference data (after closing a period, adding a rate ...)."""
        self.reference.invalidate()

    async def period_for(self, on: date) -> AccountingPeriod | None:
        return (await self.reference.get()).period_for(on)

    async def ping(self) -> bool:
        await self._send("GET", f"{REST}/record/v1/subsidiary", params={"limit": 1})
        return True
