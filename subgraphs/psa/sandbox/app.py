"""The Harvest API v2 emulator's routes: auth headers, page and cursor paging, the documented filters,
the public writes, and the sandbox admin routes under ``/__sandbox/psa`` (approval has no public
Harvest endpoint; milestones are a Kantata-style extension, Harvest has none)."""

from __future__ import annotations

import base64
import binascii
import json
import math
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import wraps
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from subgraphs.common.sandbox import SandboxOptions
from subgraphs.psa.sandbox import writes
from subgraphs.psa.sandbox.records import (
    CLIENTS,
    EXPENSES,
    MILESTONES,
    PROJECTS,
    TASK_ASSIGNMENTS,
    TASKS,
    TIME_ENTRIES,
    USERS,
    Rejected,
    Resource,
)
from subgraphs.psa.sandbox.state import Clock
from subgraphs.psa.wire import format_ts, parse_ts

MAX_PER_PAGE = 2000
Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class PsaSandbox:
    conn: sqlite3.Connection
    clock: Clock
    options: SandboxOptions


def harvest_error(status: int, code: str, message: str) -> Response:
    """Harvest's error shape, also used by the plumbing for 429s and injected faults."""
    return JSONResponse({"message": message}, status_code=status)


def _sandbox(request: Request) -> PsaSandbox:
    sandbox: PsaSandbox = request.app.state.psa
    return sandbox


def _auth_problem(request: Request, options: SandboxOptions) -> Response | None:
    headers = request.headers
    if not headers.get("user-agent", "").strip():
        return harvest_error(400, "BAD_REQUEST", "Missing User-Agent header: identify your application")
    auth = headers.get("authorization", "")
    if not auth.startswith("Bearer ") or auth.removeprefix("Bearer ").strip() != options.client_secret:
        return JSONResponse(
            {
                "error": "invalid_token",
                "error_description": "The access token provided is "
                "expired, revoked, malformed or invalid for other reasons.",
            },
            status_code=401,
        )
    account = headers.get("harvest-account-id")
    if not account:
        return JSONResponse(
            {"error": "invalid_token", "error_description": "Missing Harvest-Account-Id header"},
            status_code=401,
        )
    if account != options.client_id:
        return harvest_error(403, "FORBIDDEN", "You do not have access to this account")
    return None


def harvest(handler: Callable[[Request, PsaSandbox], Awaitable[Response]]) -> Handler:
    """A public ``/v2`` endpoint: auth checked, ``Rejected`` rendered as Harvest renders errors."""

    @wraps(handler)
    async def endpoint(request: Request) -> Response:
        sandbox = _sandbox(request)
        problem = _auth_problem(request, sandbox.options)
        if problem is not None:
            return problem
        try:
            return await handler(request, sandbox)
        except Rejected as exc:
            return harvest_error(exc.status, "REJECTED", exc.message)

    return endpoint


def admin(handler: Callable[[Request, PsaSandbox], Awaitable[Response]]) -> Handler:
    @wraps(handler)
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request, _sandbox(request))
        except Rejected as exc:
            return harvest_error(exc.status, "REJECTED", exc.message)

    return endpoint


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise Rejected(422, "The request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise Rejected(422, "The request body must be a JSON object")
    return body


def _id(request: Request, name: str = "id") -> int:
    try:
        return int(request.path_params[name])
    except ValueError:
        raise Rejected(404, "Not found") from None


def _encode_cursor(after: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": after}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    if not cursor:
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return int(data["after"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise Rejected(422, "cursor is invalid") from None


def paged(
    request: Request, sandbox: PsaSandbox, resource: Resource, fixed: Mapping[str, object] | None = None
) -> Response:
    """One page of ``resource``: ``page``/``per_page`` or, when ``cursor`` is given, keyset paging by id
    (stable while records change underneath; ``links.next`` carries the next opaque cursor)."""
    params = request.query_params
    try:
        per_page = int(params.get("per_page", MAX_PER_PAGE))
    except ValueError:
        per_page = 0
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise Rejected(422, f"per_page must be between 1 and {MAX_PER_PAGE}")
    where, args = resource.where(params, fixed)
    total = resource.count(sandbox.conn, where, args)
    pages = max(1, math.ceil(total / per_page))
    url = request.url
    body: dict[str, Any]
    if "cursor" in params:
        after = _decode_cursor(params["cursor"])
        keyset = f"{where} AND r.id > ?" if where else " WHERE r.id > ?"
        rows = resource.rows(sandbox.conn, keyset, [*args, after], limit=per_page + 1)
        more = len(rows) > per_page
        rows = rows[:per_page]
        body = {
            "page": None,
            "next_page": None,
            "previous_page": None,
            "links": {
                "first": str(url.include_query_params(cursor="", per_page=per_page)),
                "next": str(
                    url.include_query_params(cursor=_encode_cursor(rows[-1]["id"]), per_page=per_page)
                )
                if more
                else None,
                "previous": None,
                "last": None,
            },
        }
    else:
        try:
            page = int(params.get("page", 1))
        except ValueError:
            page = 0
        if page < 1:
            raise Rejected(422, "page must be a positive integer")
        rows = resource.rows(sandbox.conn, where, args, limit=per_page, offset=(page - 1) * per_page)

        def link(n: int) -> str:
            return str(url.include_query_params(page=n, per_page=per_page))

        body = {
            "page": page,
            "next_page": page + 1 if page < pages else None,
            "previous_page": page - 1 if page > 1 else None,
            "links": {
                "first": link(1),
                "next": link(page + 1) if page < pages else None,
                "previous": link(page - 1) if page > 1 else None,
                "last": link(pages),
            },
        }
    return JSONResponse(
        {resource.name: rows, "per_page": per_page, "total_pages": pages, "total_entries": total, **body}
    )


def _lister(resource: Resource) -> Handler:
    @harvest
    async def endpoint(request: Request, sandbox: PsaSandbox) -> Response:
        return paged(request, sandbox, resource)

    return endpoint


def _getter(resource: Resource) -> Handler:
    @harvest
    async def endpoint(request: Request, sandbox: PsaSandbox) -> Response:
        return JSONResponse(resource.one(sandbox.conn, _id(request)))

    return endpoint


def _project_child(resource: Resource) -> Handler:
    @harvest
    async def endpoint(request: Request, sandbox: PsaSandbox) -> Response:
        project_id = _id(request)
        PROJECTS.one(sandbox.conn, project_id)
        return paged(request, sandbox, resource, {"project_id": project_id})

    return endpoint


@harvest
async def company(request: Request, sandbox: PsaSandbox) -> Response:
    return JSONResponse(
        {
            "base_uri": str(request.base_url).rstrip("/"),
            "name": "Northwind Consulting",
            "is_active": True,
            "week_start_day": "Monday",
            "time_format": "decimal",
            "clock": "24h",
            "expense_feature": True,
            "approval_feature": True,
        }
    )


@harvest
async def create_time_entry(request: Request, sandbox: PsaSandbox) -> Response:
    new_id = writes.create_time_entry(sandbox.conn, sandbox.clock, await _body(request))
    return JSONResponse(TIME_ENTRIES.one(sandbox.conn, new_id), status_code=201)


@harvest
async def update_time_entry(request: Request, sandbox: PsaSandbox) -> Response:
    entry_id = _id(request)
    writes.update_time_entry(sandbox.conn, sandbox.clock, entry_id, await _body(request))
    return JSONResponse(TIME_ENTRIES.one(sandbox.conn, entry_id))


@harvest
async def delete_time_entry(request: Request, sandbox: PsaSandbox) -> Response:
    writes.delete_time_entry(sandbox.conn, _id(request))
    return Response(status_code=200)


@harvest
async def create_project(request: Request, sandbox: PsaSandbox) -> Response:
    new_id = writes.create_project(sandbox.conn, sandbox.clock, await _body(request))
    return JSONResponse(PROJECTS.one(sandbox.conn, new_id), status_code=201)


@harvest
async def update_project(request: Request, sandbox: PsaSandbox) -> Response:
    project_id = _id(request)
    writes.update_project(sandbox.conn, sandbox.clock, project_id, await _body(request))
    return JSONResponse(PROJECTS.one(sandbox.conn, project_id))


@harvest
async def create_task(request: Request, sandbox: PsaSandbox) -> Response:
    new_id = writes.create_task(sandbox.conn, sandbox.clock, await _body(request))
    return JSONResponse(TASKS.one(sandbox.conn, new_id), status_code=201)


@harvest
async def create_task_assignment(request: Request, sandbox: PsaSandbox) -> Response:
    new_id = writes.create_task_assignment(sandbox.conn, sandbox.clock, _id(request), await _body(request))
    return JSONResponse(TASK_ASSIGNMENTS.one(sandbox.conn, new_id), status_code=201)


# -- sandbox admin -----------------------------------------------------------------------------------------
_ACTIONS = {"approve", "reopen", "reject"}


def _entry_action(table: str, resource: Resource) -> Handler:
    @admin
    async def endpoint(request: Request, sandbox: PsaSandbox) -> Response:
        if request.path_params["action"] not in _ACTIONS:
            raise Rejected(404, "Not found")
        writes.set_approval(sandbox.conn, sandbox.clock, table, _id(request), request.path_params["action"])
        return JSONResponse(resource.one(sandbox.conn, _id(request)))

    return endpoint


@admin
async def approve_week(request: Request, sandbox: PsaSandbox) -> Response:
    return JSONResponse({"approved": writes.approve_week(sandbox.conn, sandbox.clock, await _body(request))})


@admin
async def complete_milestone(request: Request, sandbox: PsaSandbox) -> Response:
    writes.complete_milestone(sandbox.conn, sandbox.clock, _id(request))
    return JSONResponse(MILESTONES.one(sandbox.conn, _id(request)))


@admin
async def close_project(request: Request, sandbox: PsaSandbox) -> Response:
    writes.close_project(sandbox.conn, sandbox.clock, _id(request))
    return JSONResponse(PROJECTS.one(sandbox.conn, _id(request)))


@admin
async def close_task(request: Request, sandbox: PsaSandbox) -> Response:
    writes.close_task_assignment(sandbox.conn, sandbox.clock, _id(request), _id(request, "task_id"))
    return JSONResponse({"closed": True})


@admin
async def clock(request: Request, sandbox: PsaSandbox) -> Response:
    """``{"now": iso}`` sets sandbox time, ``{"advance_s": n}`` moves it; updated_at stays increasing."""
    if request.method == "POST":
        body = await _body(request)
        if "now" in body:
            try:
                sandbox.clock.set(parse_ts(str(body["now"])))
            except ValueError:
                raise Rejected(422, "now is not an ISO 8601 timestamp") from None
        if "advance_s" in body:
            sandbox.clock.advance(float(body["advance_s"]))
    return JSONResponse({"now": format_ts(sandbox.clock.now())})


ADMIN = "/__sandbox/psa"
routes = [
    Route("/v2/company", company),
    Route("/v2/users", _lister(USERS)),
    Route("/v2/users/{id}", _getter(USERS)),
    Route("/v2/clients", _lister(CLIENTS)),
    Route("/v2/clients/{id}", _getter(CLIENTS)),
    Route("/v2/projects", _lister(PROJECTS)),
    Route("/v2/projects", create_project, methods=["POST"]),
    Route("/v2/projects/{id}", _getter(PROJECTS)),
    Route("/v2/projects/{id}", update_project, methods=["PATCH"]),
    Route("/v2/projects/{id}/task_assignments", _project_child(TASK_ASSIGNMENTS)),
    Route("/v2/projects/{id}/task_assignments", create_task_assignment, methods=["POST"]),
    Route("/v2/projects/{id}/milestones", _project_child(MILESTONES)),  # sandbox extension
    Route("/v2/tasks", _lister(TASKS)),
    Route("/v2/tasks", create_task, methods=["POST"]),
    Route("/v2/tasks/{id}", _getter(TASKS)),
    Route("/v2/time_entries", _lister(TIME_ENTRIES)),
    Route("/v2/time_entries", create_time_entry, methods=["POST"]),
    Route("/v2/time_entries/{id}", _getter(TIME_ENTRIES)),
    Route("/v2/time_entries/{id}", update_time_entry, methods=["PATCH"]),
    Route("/v2/time_entries/{id}", delete_time_entry, methods=["DELETE"]),
    Route("/v2/expenses", _lister(EXPENSES)),
    Route("/v2/expenses/{id}", _getter(EXPENSES)),
    Route(f"{ADMIN}/time_entries/approve_week", approve_week, methods=["POST"]),
    Route(
        f"{ADMIN}/time_entries/{{id}}/{{action}}",
        _entry_action("time_entries", TIME_ENTRIES),
        methods=["POST"],
    ),
    Route(f"{ADMIN}/expenses/{{id}}/{{action}}", _entry_action("expenses", EXPENSES), methods=["POST"]),
    Route(f"{ADMIN}/milestones/{{id}}/complete", complete_milestone, methods=["POST"]),
    Route(f"{ADMIN}/projects/{{id}}/close", close_project, methods=["POST"]),
    Route(f"{ADMIN}/projects/{{id}}/tasks/{{task_id}}/close", close_task, methods=["POST"]),
    Route(f"{ADMIN}/clock", clock, methods=["GET", "POST"]),
]
