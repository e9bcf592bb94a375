"""The Tryton connector: JSON-RPC calls over a session, typed values, paging, buttons and wizards.

    client = TrytonClient.from_config(TrytonConfig(base_url="http://127.0.0.1:8001", password=...))
    (party_id,) = await client.create("party.party", [{"name": "Globex GmbH", "code": account_id}])
    rows = await client.search_read("account.invoice", [["party", "=", party_id]], ["state", "total_amount"])
    await client.button("account.invoice", "post", [invoice_id])
    await client.wizard("account.invoice.pay", "account.invoice", [invoice_id], [("choice", {"start": ...})])

Retries, the concurrency cap and the per-attempt deadline come from ``subgraphs.common.transport`` (reads
are retried, writes are not: Tryton has no idempotency key); the session is ``SessionAuth`` (log in, log in
again once on 401); every failure leaves as a gateway ``UpstreamError`` (see ``errors.py``).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Sequence
from datetime import date
from typing import Any

import httpx

from canonical.entities import AccountingPeriod
from canonical.errors import UpstreamAuthFailed, UpstreamError
from subgraphs.common.transport import IDEMPOTENT, RetryPolicy, RetryTransport, Sleep, build_transport
from subgraphs.erp_tryton.config import TrytonConfig
from subgraphs.erp_tryton.errors import SYSTEM, from_error, from_exception, from_response
from subgraphs.erp_tryton.wire import Context, Domain, Record, decode, request

#: Read-only RPC methods: safe to retry after a timeout or a 5xx.
READS = frozenset({"read", "search", "search_read", "search_count", "fields_get", "get_preferences"})


class SessionAuth(httpx.Auth):
    """``Authorization: Session base64(user:id:key)``; a 401 (an expired session) logs in again once."""

    def __init__(self, login_client: httpx.AsyncClient, config: TrytonConfig) -> None:
        self._http = login_client
        self._config = config
        self._header: str | None = None
        self._lock = asyncio.Lock()
        self.logins = 0

    async def header(self, *, stale: str | None = None) -> str:
        async with self._lock:
            if self._header is not None and self._header != stale:
                return self._header
            body = request(
                "common.db.login",
                [self._config.user, {"password": self._config.password.get_secret_value()},
                 self._config.language],
            )
            login = self._http.build_request("POST", f"/{self._config.database}/rpc/", json=body)
            login.extensions[IDEMPOTENT] = True
            try:
                response = await self._http.send(login)
            except httpx.HTTPError as exc:
                raise from_exception(exc, "common.db.login") from exc
            answer = response.json() if response.status_code == 200 else {}
            result = answer.get("result") if isinstance(answer, dict) else None
            if not isinstance(result, list) or len(result) < 2:
                raise UpstreamAuthFailed(
                    SYSTEM,
                    f"login of {self._config.user!r} to database {self._config.database!r} refused",
                    status=response.status_code,
                    endpoint="rpc common.db.login",
                )
            self.logins += 1
            token = f"{self._config.user}:{result[0]}:{result[1]}".encode()
            self._header = "Session " + base64.b64encode(token).decode()
            return self._header

    def forget(self) -> None:
        """Drop the session (tests use it to prove the re-login)."""
        self._header = "Session " + base64.b64encode(b"expired:0:0").decode()

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("SessionAuth works with httpx.AsyncClient only")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        header = await self.header()
        request.headers["Authorization"] = header
        response = yield request
        if response.status_code == 401:
            await response.aread()
            request.headers["Authorization"] = await self.header(stale=header)
            yield request


class TrytonClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        config: TrytonConfig,
        *,
        transport: RetryTransport | None = None,
        auth: SessionAuth | None = None,
    ) -> None:
        self.http = http
        self.config = config
        self.transport = transport
        self.auth = auth
        self._ids = itertools.count(1)
        self._cache: dict[str, tuple[float, Any]] = {}
        self.calls = 0

    @classmethod
    def from_config(
        cls,
        config: TrytonConfig,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> TrytonClient:
        if not config.base_url:
            raise UpstreamAuthFailed(SYSTEM, "P2C_TRYTON__BASE_URL is not set (run `p2c erp tryton init`)")
        stack = build_transport(
            RetryPolicy.from_config(config.retry),
            config.max_concurrency,
            transport,
            timeout_s=config.timeout_s,
            sleep=sleep,
        )
        timeout = httpx.Timeout(config.timeout_s)
        login = httpx.AsyncClient(transport=stack, base_url=config.base_url, timeout=timeout)
        auth = SessionAuth(login, config)
        http = httpx.AsyncClient(transport=stack, base_url=config.base_url, timeout=timeout, auth=auth)
        return cls(http, config, transport=stack, auth=auth)

    async def aclose(self) -> None:
        if self.auth is not None:
            await self.auth._http.aclose()
        await self.http.aclose()

    async def __aenter__(self) -> TrytonClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def context(self) -> Context:
        return {"company": self.config.company, "language": self.config.language}

    # -- one call, translated once ---------------------------------------------------------------------
    async def call(self, method: str, *params: Any, idempotent: bool = False) -> Any:
        body = request(method, list(params), next(self._ids))
        req = self.http.build_request("POST", f"/{self.config.database}/rpc/", json=body)
        if idempotent:
            req.extensions[IDEMPOTENT] = True
        self.calls += 1
        try:
            response = await self.http.send(req)
        except httpx.HTTPError as exc:
            raise from_exception(exc, method) from exc
        if response.status_code != 200:
            raise from_response(response, method)
        try:
            answer = response.json()
        except ValueError as exc:
            raise from_response(response, method) from exc
        if answer.get("error") is not None:
            raise from_error(answer["error"], method, self.config)
        return decode(answer.get("result"))

    async def model(self, model: str, method: str, *args: Any, context: Context | None = None) -> Any:
        """``model.<model>.<method>(*args, context)``; the company context is always sent (none → 422)."""
        ctx = {**self.context, **(context or {})}
        return await self.call(f"model.{model}.{method}", *args, ctx, idempotent=method in READS)

    # -- records -------------------------------------------------------------------------------------------
    async def create(
        self, model: str, rows: Sequence[Record], *, context: Context | None = None
    ) -> list[int]:
        return [int(i) for i in await self.model(model, "create", list(rows), context=context)]

    async def write(self, model: str, ids: Sequence[int], values: Record) -> None:
        await self.model(model, "write", list(ids), values)

    async def delete(self, model: str, ids: Sequence[int]) -> None:
        await self.model(model, "delete", list(ids))

    async def read(self, model: str, ids: Sequence[int], fields: Sequence[str]) -> list[Record]:
        if not ids:
            return []
        return list(await self.model(model, "read", list(ids), list(fields)))

    async def search_read(
        self,
        model: str,
        domain: Domain,
        fields: Sequence[str],
        *,
        offset: int = 0,
        limit: int | None = None,
        order: Sequence[tuple[str, str]] | None = (("id", "ASC"),),
    ) -> list[Record]:
        order_ = [list(o) for o in order] if order else None
        return list(await self.model(model, "search_read", domain, offset, limit, order_, list(fields)))

    async def pages(
        self, model: str, domain: Domain, fields: Sequence[str], *, page_size: int | None = None
    ) -> AsyncIterator[list[Record]]:
        """Pages of rows in id order (stable: ids only grow)."""
        size = page_size or self.config.page_size
        last = 0
        while True:
            rows = await self.search_read(model, [*domain, ["id", ">", last]], fields, limit=size)
            if rows:
                yield rows
            if len(rows) < size:
                return
            last = int(rows[-1]["id"])

    async def search_all(self, model: str, domain: Domain, fields: Sequence[str]) -> list[Record]:
        return [row async for page in self.pages(model, domain, fields) for row in page]

    async def button(self, model: str, name: str, ids: Sequence[int]) -> Any:
        """A workflow button (``post``, ``invoice`` ...): ``model.<model>.<name>([ids], ctx)``."""
        return await self.model(model, name, list(ids))

    async def wizard(
        self, name: str, model: str, ids: Sequence[int], states: Sequence[tuple[str, Record]]
    ) -> None:
        """Run a wizard on records: create, execute each ``(state, data)``, delete the session."""
        ctx = {**self.context, "active_model": model, "active_id": ids[0] if ids else None,
               "active_ids": list(ids)}
        session, _start, _end = await self.call(f"wizard.{name}.create", ctx)
        try:
            for state, data in states:
                await self.call(f"wizard.{name}.execute", session, data, state, ctx)
        finally:
            await self.call(f"wizard.{name}.delete", session, ctx)

    # -- reference data (cached) ---------------------------------------------------------------------
    async def _cached(self, key: str, load: Any) -> Any:
        hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.config.reference_ttl_s:
            return hit[1]
        value = await load()
        self._cache[key] = (time.monotonic(), value)
        return value

    def invalidate(self) -> None:
        self._cache.clear()

    async def products(self) -> dict[str, Record]:
        """Service products by code (the CRM product codes)."""

        async def load() -> dict[str, Record]:
            rows = await self.search_all("product.product", [["code", "!=", None]], ["code", "list_price"])
            return {str(r["code"]): r for r in rows}

        result: dict[str, Record] = await self._cached("products", load)
        return result

    async def employees(self) -> dict[str, int]:
        """Employee ids by e-mail (the employee's party carries it as its code)."""

        async def load() -> dict[str, int]:
            rows = await self.search_all("company.employee", [], ["party.code"])
            return {str(r["party."]["code"]).lower(): int(r["id"]) for r in rows if r.get("party.")}

        result: dict[str, int] = await self._cached("employees", load)
        return result

    async def payment_method(self) -> int:
        async def load() -> int:
            rows = await self.search_read(
                "account.invoice.payment.method", [["name", "=", self.config.payment_method]], ["id"], limit=1
            )
            if not rows:
                raise UpstreamError(SYSTEM, f"no payment method named {self.config.payment_method!r}")
            return int(rows[0]["id"])

        result: int = await self._cached("payment_method", load)
        return result

    async def periods(self) -> list[AccountingPeriod]:
        async def load() -> list[AccountingPeriod]:
            rows = await self.search_all(
                "account.period", [["type", "=", "standard"]], ["name", "start_date", "end_date", "state"]
            )
            return [
                AccountingPeriod(
                    name=str(r["name"]), start=r["start_date"], end=r["end_date"],
                    closed=r["state"] != "open", erp_id=str(r["id"]),
                )
                for r in rows
            ]

        result: list[AccountingPeriod] = await self._cached("periods", load)
        return result

    async def period_for(self, on: date) -> AccountingPeriod | None:
        return next((p for p in await self.periods() if p.contains(on)), None)

    async def ping(self) -> bool:
        await self.read("company.company", [self.config.company], ["id"])
        return True
