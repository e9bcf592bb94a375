"""Salesforce REST routes over ``CrmState``, wrapped in the shared sandbox plumbing.

Sandbox extensions beyond Salesforce's API (documented in ``sandbox/__init__.py``):
``GET /services/data/vNN.0/p2c/events?after=&limit=`` and the admin routes under ``/__sandbox/crm/``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from subgraphs.common.sandbox import ADMIN_PREFIX, Limits, SandboxOptions, SandboxPlumbing
from subgraphs.crm.sandbox.admin import (
    DEFAULT_REQUEST_BUDGET,
    LimitInfoHeader,
    Settings,
    admin_settings,
    expire_tokens,
    usage,
    webhook,
)
from subgraphs.crm.sandbox.schema import SfError, sobject
from subgraphs.crm.sandbox.seed import seed
from subgraphs.crm.sandbox.state import CrmState, Page
from subgraphs.crm.sandbox.webhooks import Deliver, Webhooks
from subgraphs.demo import generate_firm

MAX_COLLECTION = 200
_VERSION = re.compile(r"^v(\d+)\.0$")
_CLIENT = re.compile(r"(?:^|,)\s*client=([^,\s]+)")
_BATCH = re.compile(r"batchSize=(\d+)")
Handler = Callable[[Request], Awaitable[Response]]


def render_error(status: int, code: str, message: str) -> Response:
    """Salesforce shape for the plumbing's faults; any limit is Salesforce's 403, never a 429."""
    if status == 429 or code == "REQUEST_LIMIT_EXCEEDED":
        status, code = 403, "REQUEST_LIMIT_EXCEEDED"
    return JSONResponse([{"message": message, "errorCode": code, "fields": []}], status_code=status)


def _errors(exc: SfError) -> Response:
    return JSONResponse([exc.as_item()], status_code=exc.status)


def _endpoint(handler: Handler, *, auth: bool = True) -> Handler:
    async def wrapped(request: Request) -> Response:
        try:
            version = request.path_params.get("version")
            if version is not None and not _VERSION.match(version):
                raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
            if auth:
                _authorize(request)
            return await handler(request)
        except SfError as exc:
            return _errors(exc)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return _errors(SfError(400, "JSON_PARSER_ERROR", f"Unexpected character: {exc}"))

    return wrapped


def _authorize(request: Request) -> None:
    settings: Settings = request.app.state.settings
    header = request.headers.get("Authorization", "")
    token = header[7:] if header.startswith("Bearer ") else ""
    expiry = settings.tokens.get(token)
    if expiry is None or expiry < time.monotonic():
        settings.tokens.pop(token, None)
        raise SfError(401, "INVALID_SESSION_ID", "Session expired or invalid")


def _state(request: Request) -> CrmState:
    state: CrmState = request.app.state.crm
    return state


def _origin(request: Request) -> str:
    version = _VERSION.match(request.path_params.get("version", "v62.0"))
    origin = f"com/salesforce/api/rest/{version.group(1) if version else '62'}.0"
    client = _CLIENT.search(request.headers.get("Sforce-Call-Options", ""))
    return f"{origin};client={client.group(1)}" if client else origin


async def _json(request: Request) -> Any:
    return json.loads(await request.body() or b"null")


def _fields(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise SfError(400, "JSON_PARSER_ERROR", "Expecting a JSON object with the record's fields")
    return body


# --- auth ----------------------------------------------------------------------------------------------


async def token(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    form = dict(parse_qsl((await request.body()).decode()))
    if form.get("grant_type") != "client_credentials":
        return JSONResponse(
            {"error": "unsupported_grant_type", "error_description": "grant type not supported"},
            status_code=400,
        )
    if not (
        hmac.compare_digest(form.get("client_id", ""), settings.client_id)
        and hmac.compare_digest(form.get("client_secret", ""), settings.client_secret)
    ):
        return JSONResponse(
            {"error": "invalid_client", "error_description": "invalid client credentials"}, status_code=400
        )
    access = "00D000000000001AAA!" + secrets.token_urlsafe(24)
    settings.tokens[access] = time.monotonic() + settings.token_ttl_s
    issued = str(int(time.time() * 1000))
    signature = base64.b64encode(
        hmac.new(settings.client_secret.encode(), (issued + access).encode(), hashlib.sha256).digest()
    ).decode()
    return JSONResponse(
        {
            "access_token": access,
            "instance_url": str(request.base_url).rstrip("/"),
            "id": "https://login.salesforce.com/id/00D000000000001AAA/005000000000001AAA",
            "token_type": "Bearer",
            "issued_at": issued,
            "signature": signature,
        }
    )


# --- reads ---------------------------------------------------------------------------------------------


def _batch_size(request: Request) -> int:
    settings: Settings = request.app.state.settings
    asked = _BATCH.search(request.headers.get("Sforce-Query-Options", ""))
    size = min(max(int(asked.group(1)), 200), 2000) if asked else 2000
    return min(size, settings.query_batch_size)


def _page(request: Request, page: Page) -> Response:
    body: dict[str, Any] = {
        "totalSize": page.total,
        "done": page.next_locator is None,
        "records": page.records,
    }
    if page.next_locator:
        body["nextRecordsUrl"] = f"/services/data/{request.path_params['version']}/query/{page.next_locator}"
    return JSONResponse(body)


async def query(request: Request) -> Response:
    soql = request.query_params.get("q")
    if not soql:
        raise SfError(400, "MALFORMED_QUERY", "A query string (q) is required")
    return _page(request, _state(request).query(soql, _batch_size(request)))


async def query_more(request: Request) -> Response:
    return _page(request, _state(request).query_more(request.path_params["locator"], _batch_size(request)))


async def limits(request: Request) -> Response:
    used, budget = usage(request.app.state.settings)
    return JSONResponse({"DailyApiRequests": {"Max": budget, "Remaining": max(0, budget - used)}})


async def versions(request: Request) -> Response:
    return JSONResponse([{"label": "Winter '25", "url": "/services/data/v62.0", "version": "62.0"}])


async def events(request: Request) -> Response:
    after = int(request.query_params.get("after", "0"))
    limit = min(int(request.query_params.get("limit", "100")), 1000)
    state = _state(request)
    return JSONResponse(
        {"events": state.events_after(after, limit), "latestReplayId": state.latest_replay_id()}
    )


# --- writes --------------------------------------------------------------------------------------------


def _publish(request: Request, changes: list[dict[str, Any]]) -> None:
    hooks: Webhooks = request.app.state.webhooks
    hooks.publish(changes)


async def record(request: Request) -> Response:
    state, p = _state(request), request.path_params
    if request.method == "GET":
        return JSONResponse(state.get(p["sobject"], p["id"]))
    with state.transaction() as txn:
        if request.method == "DELETE":
            change = state.delete(p["sobject"], p["id"], _origin(request), txn.key)
        else:
            change = state.update(
                p["sobject"], p["id"], _fields(await _json(request)), _origin(request), txn.key
            )
    _publish(request, [change])
    return Response(status_code=204)


async def create(request: Request) -> Response:
    state = _state(request)
    with state.transaction() as txn:
        record_id, change = state.create(
            request.path_params["sobject"], _fields(await _json(request)), _origin(request), txn.key
        )
    _publish(request, [change])
    return JSONResponse({"id": record_id, "success": True, "errors": []}, status_code=201)


async def by_external_id(request: Request) -> Response:
    state, p = _state(request), request.path_params
    obj = sobject(p["sobject"])
    if request.method == "GET":
        ids = state.find_by(obj, p["field"], p["value"])
        if len(ids) != 1:
            return _ambiguous(obj.name, ids) if ids else _errors(SfError(404, "NOT_FOUND", "not found"))
        return JSONResponse(state.get(obj.name, ids[0]))
    body = _fields(await _json(request))
    try:
        with state.transaction() as txn:
            record_id, created, change = state.upsert(
                obj.name, p["field"], p["value"], body, _origin(request), txn.key
            )
    except SfError as exc:
        if exc.status == 300:
            return _ambiguous(obj.name, exc.fields)
        raise
    _publish(request, [change])
    return JSONResponse(
        {"id": record_id, "success": True, "errors": [], "created": created},
        status_code=201 if created else 200,
    )


def _ambiguous(obj_name: str, ids: list[str]) -> Response:
    return JSONResponse([f"/services/data/v62.0/sobjects/{obj_name}/{i}" for i in ids], status_code=300)


async def collection(request: Request) -> Response:
    """POST /composite/sobjects (create) and PATCH /composite/sobjects/{Obj}/{Field} (upsert)."""
    state, p = _state(request), request.path_params
    body = _fields(await _json(request))
    records = body.get("records")
    if not isinstance(records, list):
        raise SfError(400, "JSON_PARSER_ERROR", "records must be a list")
    if len(records) > MAX_COLLECTION:
        raise SfError(
            400,
            "EXCEEDED_ID_LIMIT",
            f"record limit reached. cannot submit more than {MAX_COLLECTION} records into this call",
        )
    all_or_none = bool(body.get("allOrNone", False))
    origin = _origin(request)
    results: list[dict[str, Any]] = []
    changes: list[dict[str, Any]] = []
    failed = False
    try:
        with state.transaction() as txn:
            for item in records:
                try:
                    with txn.savepoint():
                        fields = _fields(item)
                        obj_name = p.get("sobject") or fields.get("attributes", {}).get("type", "")
                        if "field" in p:
                            value = next(
                                (v for k, v in fields.items() if k.lower() == p["field"].lower()), None
                            )
                            if not isinstance(value, str) or not value:
                                raise SfError(
                                    400, "REQUIRED_FIELD_MISSING", f"{p['field']} is required", [p["field"]]
                                )
                            record_id, created, change = state.upsert(
                                obj_name, p["field"], value, fields, origin, txn.key
                            )
                            results.append(
                                {"id": record_id, "success": True, "errors": [], "created": created}
                            )
                        else:
                            record_id, change = state.create(obj_name, fields, origin, txn.key)
                            results.append({"id": record_id, "success": True, "errors": []})
                        changes.append(change)
                except SfError as exc:
                    failed = True
                    code = "DUPLICATE_EXTERNAL_ID" if exc.status == 300 else exc.code
                    results.append(
                        {
                            "success": False,
                            "errors": [
                                {
                                    "statusCode": code,
                                    "message": exc.message,
                                    "fields": [] if exc.status == 300 else exc.fields,
                                }
                            ],
                        }
                    )
            if failed and all_or_none:
                raise _RolledBack
    except _RolledBack:
        changes = []
        results = [
            r
            if not r["success"]
            else {
                "success": False,
                "errors": [
                    {
                        "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                        "message": "Record rolled back because not all records were valid and the "
                        "request was using AllOrNone header",
                        "fields": [],
                    }
                ],
            }
            for r in results
        ]
    _publish(request, changes)
    return JSONResponse(results)


class _RolledBack(Exception):
    pass


async def _not_found(request: Request, exc: Exception) -> Response:
    return _errors(SfError(404, "NOT_FOUND", "The requested resource does not exist"))


def create_app(
    options: SandboxOptions,
    *,
    state: CrmState | None = None,
    deliver: Deliver | None = None,
    query_batch_size: int = 2000,
) -> Starlette:
    """The CRM sandbox; ``state`` shares an org between apps, ``deliver`` carries webhook POSTs (default:
    a fresh ``httpx.AsyncClient``), ``query_batch_size`` caps records per query batch (tests page with 5)."""
    if state is None:
        state = CrmState(options.db_path)
        # A file database survives restarts: seed it once, never on top of an existing org.
        if options.seed is not None and state.is_empty():
            seed(state, generate_firm(options.seed, options.accounts))
    settings = Settings(options.client_id, options.client_secret, options.token_ttl_s, query_batch_size)
    enforced = options.limits or Limits(request_budget=DEFAULT_REQUEST_BUDGET)

    def stack(app: ASGIApp) -> ASGIApp:
        settings.plumbing = SandboxPlumbing(app, render_error=render_error, limits=enforced)
        return LimitInfoHeader(settings.plumbing, settings)

    base = "/services/data/{version}"
    routes = [
        Route("/services/oauth2/token", _endpoint(token, auth=False), methods=["POST"]),
        Route("/services/data", _endpoint(versions, auth=False), methods=["GET"]),
        Route(f"{base}/limits", _endpoint(limits), methods=["GET"]),
        Route(f"{base}/query", _endpoint(query), methods=["GET"]),
        Route(f"{base}/query/{{locator}}", _endpoint(query_more), methods=["GET"]),
        Route(f"{base}/p2c/events", _endpoint(events), methods=["GET"]),
        Route(f"{base}/sobjects/{{sobject}}", _endpoint(create), methods=["POST"]),
        Route(f"{base}/sobjects/{{sobject}}/{{id}}", _endpoint(record), methods=["GET", "PATCH", "DELETE"]),
        Route(
            f"{base}/sobjects/{{sobject}}/{{field}}/{{value}}",
            _endpoint(by_external_id),
            methods=["GET", "PATCH"],
        ),
        Route(f"{base}/composite/sobjects", _endpoint(collection), methods=["POST"]),
        Route(f"{base}/composite/sobjects/{{sobject}}/{{field}}", _endpoint(collection), methods=["PATCH"]),
        Route(f"{ADMIN_PREFIX}/crm/expire-tokens", expire_tokens, methods=["POST"]),
        Route(
            f"{ADMIN_PREFIX}/crm/webhook", _endpoint(webhook, auth=False), methods=["GET", "PUT", "DELETE"]
        ),
        Route(f"{ADMIN_PREFIX}/crm/settings", _endpoint(admin_settings, auth=False), methods=["GET", "PUT"]),
    ]
    app = Starlette(
        routes=routes, middleware=[Middleware(stack)], exception_handlers={404: _not_found, 405: _not_found}
    )
    app.state.crm = state
    app.state.settings = settings
    app.state.webhooks = Webhooks(deliver)
    return app
