"""The NetSuite REST emulator: routes, paging, the error envelope, async jobs and the ERP admin routes.

Vendor API under ``/services/rest`` (see VENDOR_APIS.md, ERP). Admin (uncounted, unfaulted, no auth)::

    POST /__sandbox/erp/clock                  {"advanceSeconds": 86400} | {"set": "2026-12-01T09:00:00"}
    POST /__sandbox/erp/billing/run            {"asOf": "2026-11-30"} → {"invoices": [...], "errors": [...]}
    POST /__sandbox/erp/accounting-periods/{id}/close   (or /open)
    POST /__sandbox/erp/expire-tokens
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from subgraphs.common.sandbox import SandboxOptions
from subgraphs.erp.sandbox.auth import TOKEN_PATH, token_endpoint, token_valid
from subgraphs.erp.sandbox.billing import run_billing
from subgraphs.erp.sandbox.records import Records, not_found
from subgraphs.erp.sandbox.schema import TYPES
from subgraphs.erp.sandbox.state import SandboxError, Store
from subgraphs.erp.sandbox.suiteql import SuiteQLError, compile_query

REST = "/services/rest"
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
ERROR_TYPE = "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.{n}"


def envelope(
    status: int, code: str, detail: str, *, path: str | None = None, title: str | None = None
) -> Response:
    item: dict[str, str] = {"detail": detail, "o:errorCode": code}
    if path:
        item["o:errorPath"] = path
    body = {
        "type": ERROR_TYPE.format(n=max(1, status - 399)),
        "title": title or TITLES.get(status, "Error"),
        "status": status,
        "o:errorDetails": [item],
    }
    return Response(
        json.dumps(body), status_code=status, media_type="application/vnd.oracle.resource+json; type=error"
    )


def render_error(status: int, code: str, message: str) -> Response:
    return envelope(status, code, message)


def _error(exc: SandboxError) -> Response:
    return envelope(exc.status, exc.code, exc.detail, path=exc.path, title=exc.title)


class ErpSandbox:
    def __init__(self, store: Store, options: SandboxOptions) -> None:
        self.store = store
        self.records = Records(store)
        self.options = options

    def routes(self) -> list[Route]:
        admin = "/__sandbox/erp"
        return [
            Route(TOKEN_PATH, self.token, methods=["POST"]),
            Route(f"{REST}/record/v1/{{type}}", self.collection, methods=["GET", "POST"]),
            Route(
                f"{REST}/record/v1/{{type}}/{{id}}", self.instance, methods=["GET", "PUT", "PATCH", "DELETE"]
            ),
            Route(
                f"{REST}/record/v1/{{type}}/{{id}}/!transform/{{target}}", self.transform, methods=["POST"]
            ),
            Route(f"{REST}/query/v1/suiteql", self.suiteql, methods=["POST"]),
            Route(f"{REST}/async/v1/job/{{id:int}}", self.job, methods=["GET"]),
            Route(f"{admin}/clock", self.admin_clock, methods=["GET", "POST"]),
            Route(f"{admin}/billing/run", self.admin_billing, methods=["POST"]),
            Route(f"{admin}/accounting-periods/{{id:int}}/{{action}}", self.admin_period, methods=["POST"]),
            Route(f"{admin}/expire-tokens", self.admin_expire, methods=["POST"]),
        ]

    # -- plumbing --------------------------------------------------------------------------------------
    @staticmethod
    def base(request: Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc}{REST}"

    def _authorize(self, request: Request) -> None:
        if not token_valid(self.store, request.headers.get("authorization")):
            raise SandboxError(
                401,
                "INVALID_LOGIN",
                "Invalid login attempt. For more details, see the Login "
                "Audit Trail in the NetSuite UI at Setup > Users/Roles > User Management.",
            )

    @staticmethod
    async def _json(request: Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError as exc:
            raise SandboxError(400, "INVALID_CONTENT", "The request body is not valid JSON.") from exc
        if not isinstance(body, dict):
            raise SandboxError(400, "INVALID_CONTENT", "The request body must be a JSON object.")
        return body

    def _paging(self, request: Request, default: int) -> tuple[int, int]:
        try:
            limit = int(request.query_params.get("limit", default))
            offset = int(request.query_params.get("offset", 0))
        except ValueError as exc:
            raise SandboxError(400, "INVALID_PARAMETER", "limit and offset must be integers.") from exc
        if not 1 <= limit <= self.store.rules.max_page or offset < 0:
            raise SandboxError(
                400,
                "INVALID_PARAMETER",
                f"Invalid value for the parameter limit: it must be between 1 and "
                f"{self.store.rules.max_page}.",
                path="limit",
            )
        return limit, offset

    @staticmethod
    def _page(href: str, items: list[Any], total: int, limit: int, offset: int) -> JSONResponse:
        def link(rel: str, at: int) -> dict[str, str]:
            return {"rel": rel, "href": f"{href}?{urlencode({'limit': limit, 'offset': at})}"}

        has_more = offset + len(items) < total
        links = [link("self", offset)]
        if offset > 0:
            links.append(link("previous", max(0, offset - limit)))
        if has_more:
            links.append(link("next", offset + limit))
        links.append(link("last", max(0, (total - 1) // limit * limit)))
        return JSONResponse(
            {
                "links": links,
                "count": len(items),
                "hasMore": has_more,
                "items": items,
                "offset": offset,
                "totalResults": total,
            }
        )

    async def _write(self, request: Request, action: Callable[[], str]) -> Response:
        """Run a write, honouring ``Prefer: respond-async`` and ``X-NetSuite-Idempotency-Key``."""
        key = request.headers.get("x-netsuite-idempotency-key")
        db = self.store.db
        if key is not None and db.execute("SELECT 1 FROM idempotency WHERE key = ?", (key,)).fetchone():
            raise SandboxError(
                400,
                "IDEMPOTENCY_ERROR",
                f"A request with the idempotency key {key} has already been submitted.",
                title="Conflict",
            )
        is_async = "respond-async" in request.headers.get("prefer", "")
        location: str | None = None
        failure: SandboxError | None = None
        try:
            location = action()
        except SandboxError as exc:
            if not is_async:
                raise
            failure = exc
        if key is not None:
            db.execute("INSERT INTO idempotency VALUES (?, ?, ?)", (key, location, self.store.clock.stamp()))
        if is_async:
            error = (
                None
                if failure is None
                else json.dumps({"detail": failure.detail, "o:errorCode": failure.code})
            )
            job = db.execute(
                "INSERT INTO asyncjob (status, location, error, created) VALUES (?, ?, ?, ?)",
                ("failed" if failure else "succeeded", location, error, self.store.clock.stamp()),
            )
            return Response(
                status_code=202, headers={"Location": f"{self.base(request)}/async/v1/job/{job.lastrowid}"}
            )
        return Response(status_code=204, headers={"Location": location or ""})

    # -- vendor routes ---------------------------------------------------------------------------------
    async def token(self, request: Request) -> Response:
        return await token_endpoint(request, self.store, self.options)

    def _type(self, request: Request) -> str:
        type_ = str(request.path_params["type"])
        if type_ not in TYPES:
            raise SandboxError(404, "INVALID_RCRD_TYPE", f"Record type '{type_}' does not exist.")
        return type_

    async def collection(self, request: Request) -> Response:
        try:
            self._authorize(request)
            type_ = self._type(request)
            if request.method == "POST":
                body = await self._json(request)
                href = f"{self.base(request)}/record/v1/{type_}"
                return await self._write(request, lambda: f"{href}/{self.records.create(type_, body)}")
            limit, offset = self._paging(request, 1000)
            ids, total = self.store.page_ids(type_, limit, offset)
            href = f"{self.base(request)}/record/v1/{type_}"
            items = [{"links": [{"rel": "self", "href": f"{href}/{i}"}], "id": str(i)} for i in ids]
            return self._page(href, items, total, limit, offset)
        except SandboxError as exc:
            return _error(exc)

    async def instance(self, request: Request) -> Response:
        try:
            self._authorize(request)
            type_ = self._type(request)
            raw = str(request.path_params["id"])
            href = f"{self.base(request)}/record/v1/{type_}"
            if raw.startswith("eid:"):
                external_id = raw[4:]
                if request.method == "PUT":
                    body = await self._json(request)
                    return await self._write(
                        request, lambda: f"{href}/{self.records.upsert(type_, external_id, body)}"
                    )
                found = self.store.get_by_eid(type_, external_id)
                if found is None:
                    raise not_found(type_, raw)
                id_ = found.id
            else:
                try:
                    id_ = int(raw)
                except ValueError as exc:
                    raise SandboxError(400, "INVALID_ID", f"Invalid record id {raw}.") from exc
            if request.method == "PATCH":
                body = await self._json(request)

                def patch() -> str:
                    self.records.patch(type_, id_, body)
                    return f"{href}/{id_}"

                return await self._write(request, patch)
            stored = self.store.get(type_, id_)
            if stored is None:
                raise not_found(type_, raw)
            if request.method == "DELETE":
                if stored.body.get("billed"):
                    raise SandboxError(400, "USER_ERROR", "A billed record cannot be deleted.")
                self.store.delete(type_, id_)
                return Response(status_code=204)
            if request.method == "PUT":
                raise SandboxError(405, "INVALID_METHOD", "PUT is only supported with an external id (eid:).")
            return JSONResponse(stored.as_record(self.base(request)))
        except SandboxError as exc:
            return _error(exc)

    async def transform(self, request: Request) -> Response:
        try:
            self._authorize(request)
            type_, target = self._type(request), str(request.path_params["target"])
            if type_ != "salesOrder" or target != "invoice":
                raise SandboxError(
                    400, "INVALID_TRANSFORM", f"Transform {type_} → {target} is not supported."
                )
            source = self.store.get(type_, int(str(request.path_params["id"])))
            if source is None:
                raise not_found(type_, request.path_params["id"])
            body = {
                **{k: v for k, v in source.body.items() if k not in ("status", "tranId")},
                **await self._json(request),
                "createdFrom": {"id": str(source.id)},
            }
            body.setdefault("tranDate", self.store.clock.today().isoformat())
            href = f"{self.base(request)}/record/v1/invoice"
            return await self._write(request, lambda: f"{href}/{self.records.create('invoice', body)}")
        except (SandboxError, ValueError) as exc:
            return _error(exc if isinstance(exc, SandboxError) else SandboxError(400, "INVALID_ID", str(exc)))

    async def suiteql(self, request: Request) -> Response:
        try:
            self._authorize(request)
            if "transient" not in request.headers.get("prefer", ""):
                raise SandboxError(
                    400, "INVALID_HEADER", "The request must carry the header Prefer: transient."
                )
            limit, offset = self._paging(request, 1000)
            q = (await self._json(request)).get("q")
            try:
                compiled = compile_query(str(q or ""), self.store.clock.today().isoformat())
                db = self.store.db
                total = db.execute(f"SELECT COUNT(*) FROM ({compiled.sql})", compiled.params).fetchone()[0]
                rows = db.execute(
                    f"{compiled.sql} LIMIT ? OFFSET ?", [*compiled.params, limit, offset]
                ).fetchall()
            except SuiteQLError as exc:
                raise SandboxError(
                    400,
                    "INVALID_PARAMETER",
                    f"Invalid search query. Detailed unprocessed description follows. {exc}",
                    path="q",
                ) from exc
            except Exception as exc:  # sqlite refusing what the parser let through is still the query's fault
                raise SandboxError(
                    400, "INVALID_PARAMETER", f"Invalid search query. {exc}", path="q"
                ) from exc
            items = [{"links": [], **dict(zip(compiled.columns, row, strict=True))} for row in rows]
            return self._page(f"{self.base(request)}/query/v1/suiteql", items, int(total), limit, offset)
        except SandboxError as exc:
            return _error(exc)

    async def job(self, request: Request) -> Response:
        try:
            self._authorize(request)
            row = self.store.db.execute(
                "SELECT id, status, location, error FROM asyncjob WHERE id = ?", (request.path_params["id"],)
            ).fetchone()
            if row is None:
                raise not_found("asyncJob", request.path_params["id"])
            href = f"{self.base(request)}/async/v1/job/{row[0]}"
            return JSONResponse(
                {
                    "links": [{"rel": "self", "href": href}],
                    "id": str(row[0]),
                    "completed": True,
                    "progress": row[1],
                    "status": row[1],
                    "location": row[2],
                    "errors": [json.loads(row[3])] if row[3] else [],
                }
            )
        except SandboxError as exc:
            return _error(exc)

    # -- admin ---------------------------------------------------------------------------------------------
    async def admin_clock(self, request: Request) -> Response:
        if request.method == "POST":
            body = await self._json(request)
            clock = self.store.clock
            if "set" in body:
                target = datetime.fromisoformat(str(body["set"]))
                target = target if target.tzinfo else target.replace(tzinfo=UTC)
                clock.offset += target - clock.now()
            clock.offset += timedelta(seconds=float(body.get("advanceSeconds", 0)))
        return JSONResponse({"now": self.store.clock.stamp()})

    async def admin_billing(self, request: Request) -> Response:
        body = await self._json(request)
        as_of = date.fromisoformat(str(body.get("asOf") or self.store.clock.today().isoformat()))
        return JSONResponse(run_billing(self.records, as_of))

    async def admin_period(self, request: Request) -> Response:
        action = request.path_params["action"]
        if action not in ("close", "open"):
            return envelope(404, "NOT_FOUND", f"unknown action {action}")
        try:
            self.records.patch(
                "accountingPeriod", int(request.path_params["id"]), {"closed": action == "close"}
            )
        except SandboxError as exc:
            return _error(exc)
        return JSONResponse({"id": str(request.path_params["id"]), "closed": action == "close"})

    async def admin_expire(self, request: Request) -> Response:
        expired = len(self.store.tokens)
        self.store.tokens.clear()
        return JSONResponse({"expired": expired})


def build_app(store: Store, options: SandboxOptions) -> Starlette:
    sandbox = ErpSandbox(store, options)
    app = Starlette(routes=sandbox.routes())
    app.state.sandbox = sandbox
    return app
