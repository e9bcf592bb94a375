"""The Salesforce connector: auth, paging, chunked bulk reads, upserts by external id, change events.

    client = CrmClient.from_config(CrmConfig(), transport=httpx.ASGITransport(create_app(SandboxOptions())))
    async for page in client.query_pages("SELECT Id, Name FROM Account WHERE Industry = 'Retail'"):
        ...
    await client.aclose()

Layering follows httpx: the retry, concurrency and deadline transports from ``subgraphs.common.transport``
under an ``httpx.AsyncClient``, OAuth as an ``httpx.Auth`` flow. Every failure leaves as a
``canonical.errors`` upstream error (see ``errors.py``); nothing here lets an ``httpx`` exception escape.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, cast
from urllib.parse import quote

import httpx

from canonical.errors import UpstreamRejected
from subgraphs.common.transport import IDEMPOTENT, RetryHook, RetryPolicy, Sleep, build_transport
from subgraphs.crm import errors
from subgraphs.crm.config import SANDBOX_BASE_URL, CrmConfig
from subgraphs.crm.wire import (
    ACCOUNT_FIELDS,
    INVOICE_FIELDS,
    LINE_FIELDS,
    OPPORTUNITY_FIELDS,
    AccountRecord,
    ChangeEvent,
    InvoiceRecord,
    OpportunityLineRecord,
    OpportunityRecord,
    QueryPage,
    SaveResult,
)

COLLECTION_LIMIT = 200  # records per sObject Collections call, Salesforce's hard limit
_LIMIT_INFO = re.compile(r"api-usage=(\d+)/(\d+)")


@dataclass(frozen=True)
class LimitInfo:
    used: int
    max: int

    @property
    def remaining(self) -> int:
        return max(0, self.max - self.used)


@dataclass(frozen=True)
class UpsertResult:
    id: str
    created: bool


def soql_literal(value: str | int | Decimal | bool | date | datetime | None) -> str:
    """A value as a SOQL literal; strings are escaped, so caller data can never change the query."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, datetime):
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int | Decimal):
        return str(value)
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def _encode(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)  # Salesforce numbers are JSON numbers; 18 digits of precision at most anyway
    if isinstance(value, date | datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def _decode(response: httpx.Response) -> Any:
    return json.loads(response.content, parse_float=Decimal)


class SalesforceAuth(httpx.Auth):
    """OAuth 2.0 client credentials: the token is fetched lazily, shared, and refreshed once on a 401.

    Concurrent requests share one token fetch (the lock is held across the token request). A refusal of
    the token request is handed back as the response, so the caller sees it and nothing loops.
    """

    requires_response_body = True

    def __init__(self, token_url: str, client_id: str, client_secret: str) -> None:
        self.token_url, self.client_id, self.client_secret = token_url, client_id, client_secret
        self.token: str | None = None
        self.fetches = 0
        self._lock = asyncio.Lock()

    def _token_request(self) -> httpx.Request:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }
        # Asking for a token twice is harmless, so the retry transport may repeat this POST.
        return httpx.Request("POST", self.token_url, data=form, extensions={IDEMPOTENT: True})

    def _store(self, response: httpx.Response) -> bool:
        if response.status_code != 200:
            return False
        self.fetches += 1
        self.token = str(_decode(response)["access_token"])
        return True

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if self.token is None:
            async with self._lock:
                if self.token is None:
                    token_response = yield self._token_request()
                    if not self._store(token_response):
                        return
        sent = self.token
        request.headers["Authorization"] = f"Bearer {sent}"
        response = yield request
        if response.status_code != 401:
            return
        async with self._lock:
            # Someone else may have refreshed while this request was out; then just use theirs.
            if self.token == sent:
                token_response = yield self._token_request()
                if not self._store(token_response):
                    return
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


class CrmClient:
    def __init__(self, http: httpx.AsyncClient, config: CrmConfig, auth: SalesforceAuth) -> None:
        self.http = http
        self.config = config
        self.auth = auth
        self.api = f"/services/data/{config.api_version}"
        self.limit_info: LimitInfo | None = None
        http.event_hooks["response"].append(self._on_response)

    @classmethod
    def from_config(
        cls,
        config: CrmConfig,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        base_url: str | None = None,
        sleep: Sleep = asyncio.sleep,
        on_retry: RetryHook | None = None,
    ) -> CrmClient:
        """``transport`` None → pooled HTTP to ``config.base_url``; given (an in-process sandbox's
        ``ASGITransport``) → that, under the same retry and concurrency stack."""
        root = (base_url or config.base_url or SANDBOX_BASE_URL).rstrip("/")
        policy = RetryPolicy.from_config(config.retry, is_limit=errors.is_limit)
        stack = build_transport(
            policy,
            config.max_concurrency,
            transport,
            timeout_s=config.timeout_s,
            on_retry=on_retry,
            sleep=sleep,
        )
        auth = SalesforceAuth(
            root + errors.TOKEN_PATH, config.client_id, config.client_secret.get_secret_value()
        )
        headers = {"Sforce-Call-Options": f"client={config.client_name}", "Accept": "application/json"}
        if config.query_batch_size:
            headers["Sforce-Query-Options"] = f"batchSize={config.query_batch_size}"
        http = httpx.AsyncClient(
            base_url=root, transport=stack, auth=auth, headers=headers, timeout=config.timeout_s
        )
        return cls(http, config, auth)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _on_response(self, response: httpx.Response) -> None:
        match = _LIMIT_INFO.search(response.headers.get("Sforce-Limit-Info", ""))
        if match:
            self.limit_info = LimitInfo(int(match.group(1)), int(match.group(2)))

    async def _request(
        self, method: str, path: str, *, body: object = None, params: Mapping[str, str] | None = None
    ) -> httpx.Response:
        content = None if body is None else json.dumps(body, default=_encode).encode()
        headers = {"Content-Type": "application/json"} if content is not None else None
        try:
            response = await self.http.request(method, path, content=content, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise errors.from_exception(exc) from exc
        errors.raise_for_response(response)
        return response

    # -- reads -----------------------------------------------------------------------------------------
    async def query_pages(self, soql: str) -> AsyncIterator[QueryPage]:
        """Each batch of a SOQL query, following ``nextRecordsUrl`` until ``done``."""
        url: str = f"{self.api}/query"
        params: dict[str, str] | None = {"q": soql}
        while True:
            page = cast(QueryPage, _decode(await self._request("GET", url, params=params)))
            yield page
            next_url = page.get("nextRecordsUrl")
            if page.get("done", True) or not next_url:
                return
            url, params = next_url, None

    async def query_all(self, soql: str) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        async for page in self.query_pages(soql):
            records.extend(page.get("records", []))
        return records

    async def records_where_in(
        self, sobject: str, fields: Sequence[str], field: str, values: Iterable[str], *, extra: str = ""
    ) -> list[dict[str, Any]]:
        """``SELECT fields FROM sobject WHERE field IN (...)`` in chunks of ``query_chunk_size`` values, so
        the URL stays short; chunks run concurrently under the connector's concurrency cap."""
        unique = list(dict.fromkeys(v for v in values if v))
        size = self.config.query_chunk_size
        chunks = [unique[i : i + size] for i in range(0, len(unique), size)]
        select = f"SELECT {', '.join(fields)} FROM {sobject} WHERE {field} IN "
        queries = [select + "(" + ", ".join(soql_literal(v) for v in chunk) + ")" + extra for chunk in chunks]
        results = await asyncio.gather(*(self.query_all(q) for q in queries))
        return [record for chunk in results for record in chunk]

    async def accounts_by_ids(self, ids: Iterable[str]) -> list[AccountRecord]:
        return cast(list[AccountRecord], await self.records_where_in("Account", ACCOUNT_FIELDS, "Id", ids))

    async def opportunities_by_ids(self, ids: Iterable[str]) -> list[OpportunityRecord]:
        return cast(
            list[OpportunityRecord], await self.records_where_in("Opportunity", OPPORTUNITY_FIELDS, "Id", ids)
        )

    async def lines_for_opportunities(self, ids: Iterable[str]) -> list[OpportunityLineRecord]:
        return cast(
            list[OpportunityLineRecord],
            await self.records_where_in(
                "OpportunityLineItem", LINE_FIELDS, "OpportunityId", ids, extra=" ORDER BY OpportunityId, Id"
            ),
        )

    async def invoices_by_p2c_ids(self, ids: Iterable[str]) -> list[InvoiceRecord]:
        return cast(
            list[InvoiceRecord], await self.records_where_in("Invoice__c", INVOICE_FIELDS, "P2C_Id__c", ids)
        )

    async def accounts(
        self,
        *,
        modified_since: datetime | None = None,
        legal_entity: str | None = None,
        limit: int | None = None,
    ) -> list[AccountRecord]:
        where = []
        if modified_since is not None:
            where.append(f"SystemModstamp > {soql_literal(modified_since)}")
        if legal_entity is not None:
            where.append(f"Legal_Entity__c = {soql_literal(legal_entity)}")
        return cast(
            list[AccountRecord], await self.query_all(_select("Account", ACCOUNT_FIELDS, where, limit))
        )

    async def opportunities(
        self, *, modified_since: datetime | None = None, stage: str | None = None, limit: int | None = None
    ) -> list[OpportunityRecord]:
        where = []
        if modified_since is not None:
            where.append(f"SystemModstamp > {soql_literal(modified_since)}")
        if stage is not None:
            where.append(f"StageName = {soql_literal(stage)}")
        return cast(
            list[OpportunityRecord],
            await self.query_all(_select("Opportunity", OPPORTUNITY_FIELDS, where, limit)),
        )

    async def get(self, sobject: str, record_id: str) -> dict[str, Any]:
        return cast(
            dict[str, Any], _decode(await self._request("GET", f"{self.api}/sobjects/{sobject}/{record_id}"))
        )

    # -- writes ----------------------------------------------------------------------------------------
    async def create(self, sobject: str, fields: Mapping[str, Any]) -> str:
        """Not retried: a create has no key to dedupe on. Prefer ``upsert`` by external id."""
        response = await self._request("POST", f"{self.api}/sobjects/{sobject}", body=dict(fields))
        return str(_decode(response)["id"])

    async def update(self, sobject: str, record_id: str, fields: Mapping[str, Any]) -> None:
        await self._request("PATCH", f"{self.api}/sobjects/{sobject}/{record_id}", body=dict(fields))

    async def delete(self, sobject: str, record_id: str) -> None:
        await self._request("DELETE", f"{self.api}/sobjects/{sobject}/{record_id}")

    async def upsert(
        self, sobject: str, external_field: str, value: str, fields: Mapping[str, Any]
    ) -> UpsertResult:
        body = {k: v for k, v in fields.items() if k.lower() != external_field.lower()}
        path = f"{self.api}/sobjects/{sobject}/{external_field}/{quote(value, safe='')}"
        response = await self._request("PATCH", path, body=body)
        if response.status_code == 300:
            matches = [str(url).rsplit("/", 1)[-1] for url in _decode(response)]
            raise UpstreamRejected(
                errors.SYSTEM,
                f"{sobject} {external_field}={value} matches {len(matches)} records: {', '.join(matches)}",
                status=300,
                vendor_code="MULTIPLE_CHOICES",
                endpoint=errors.endpoint(response.request),
                details={"matches": matches},
            )
        result = _decode(response)
        return UpsertResult(str(result["id"]), bool(result.get("created", response.status_code == 201)))

    async def upsert_many(
        self,
        sobject: str,
        external_field: str,
        records: Sequence[Mapping[str, Any]],
        *,
        all_or_none: bool = False,
    ) -> list[SaveResult]:
        """sObject Collections upsert, 200 records a call, results in input order. ``all_or_none`` holds per
        call: a failure rolls back its own chunk of 200, not chunks already committed."""
        path = f"{self.api}/composite/sobjects/{sobject}/{external_field}"
        return await self._collections("PATCH", path, sobject, records, all_or_none)

    async def create_many(
        self, sobject: str, records: Sequence[Mapping[str, Any]], *, all_or_none: bool = False
    ) -> list[SaveResult]:
        path = f"{self.api}/composite/sobjects"
        return await self._collections("POST", path, sobject, records, all_or_none)

    async def _collections(
        self, method: str, path: str, sobject: str, records: Sequence[Mapping[str, Any]], all_or_none: bool
    ) -> list[SaveResult]:
        """One sObject Collections call per ``COLLECTION_LIMIT`` records, in order."""
        results: list[SaveResult] = []
        for start in range(0, len(records), COLLECTION_LIMIT):
            chunk = [
                {"attributes": {"type": sobject}, **r} for r in records[start : start + COLLECTION_LIMIT]
            ]
            response = await self._request(method, path, body={"allOrNone": all_or_none, "records": chunk})
            results.extend(cast(list[SaveResult], _decode(response)))
        return results

    # -- events and health -----------------------------------------------------------------------------
    async def events_since(self, replay_id: int, limit: int = 1000) -> list[ChangeEvent]:
        """Change events after ``replay_id`` (the sandbox's polling stand-in for the Pub/Sub API)."""
        response = await self._request(
            "GET", f"{self.api}/p2c/events", params={"after": str(replay_id), "limit": str(limit)}
        )
        return cast(list[ChangeEvent], _decode(response)["events"])

    def is_own_echo(self, event: ChangeEvent) -> bool:
        """Whether an event reports one of our own writes (so a sync does not bounce it back)."""
        origin = str(event["payload"].get("ChangeEventHeader", {}).get("changeOrigin", ""))
        return origin.endswith(f";client={self.config.client_name}")

    async def ping(self) -> LimitInfo:
        """Readiness: authenticates and reads the API allowance."""
        body = _decode(await self._request("GET", f"{self.api}/limits"))["DailyApiRequests"]
        return LimitInfo(int(body["Max"]) - int(body["Remaining"]), int(body["Max"]))


def _select(sobject: str, fields: Sequence[str], where: list[str], limit: int | None) -> str:
    soql = f"SELECT {', '.join(fields)} FROM {sobject}"
    if where:
        soql += " WHERE " + " AND ".join(where)
    soql += " ORDER BY SystemModstamp, Id"
    return soql + (f" LIMIT {limit}" if limit is not None else "")
