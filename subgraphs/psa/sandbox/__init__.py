"""Harvest API v2 emulator (the PSA sandbox).

    app = create_app(SandboxOptions(seed=7, accounts=200))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://psa.sandbox")

Public endpoints (``Authorization: Bearer <client_secret>``, ``Harvest-Account-Id: <client_id>``, a
``User-Agent``): ``/v2/company``, ``/v2/users[/{id}]``, ``/v2/clients[/{id}]``, ``/v2/projects[/{id}]`` (GET,
POST, PATCH), ``/v2/projects/{id}/task_assignments`` (GET, POST), ``/v2/tasks[/{id}]`` (GET, POST),
``/v2/time_entries[/{id}]`` (GET, POST, PATCH, DELETE), ``/v2/expenses[/{id}]``. Lists take ``page`` and
``per_page`` (≤ 2000) or ``cursor`` (keyset by id) and always answer ``links.next``. Sandbox extension:
``GET /v2/projects/{id}/milestones`` (Harvest has no milestones; Kantata-style PSAs do).

Admin routes (no auth, not counted, not faulted) — Harvest's public API cannot approve, so the workflow
is driven here: ``POST /__sandbox/psa/time_entries/{id}/approve|reopen|reject``,
``POST /__sandbox/psa/expenses/{id}/approve|reopen|reject``, ``POST /__sandbox/psa/time_entries/approve_week``
``{"project_id", "week_of", "user_id"?, "ids"?}``, ``POST /__sandbox/psa/milestones/{id}/complete``,
``POST /__sandbox/psa/projects/{id}/close``, ``POST /__sandbox/psa/projects/{id}/tasks/{task_id}/close``,
``GET|POST /__sandbox/psa/clock`` ``{"now": iso}`` or ``{"advance_s": n}``. Plus the shared
``/__sandbox/faults`` and ``/__sandbox/counters``. Limits default to Harvest's 100 requests per 15 s.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware

from subgraphs.common.sandbox import Limits, SandboxOptions, SandboxPlumbing
from subgraphs.psa.sandbox.app import PsaSandbox, harvest_error, routes
from subgraphs.psa.sandbox.state import build_state

__all__ = ["HARVEST_LIMITS", "PsaSandbox", "create_app"]

HARVEST_LIMITS = Limits(rate_limit_requests=100, rate_limit_window_s=15.0)


def create_app(options: SandboxOptions) -> Starlette:
    """Build the sandbox, its SQLite state seeded eagerly (ASGITransport runs no lifespan)."""
    conn, clock = build_state(options.db_path, options.seed, options.accounts)
    limits = options.limits if options.limits is not None else Limits(**HARVEST_LIMITS.as_dict())
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(SandboxPlumbing, render_error=harvest_error, limits=limits),
        ],
    )
    app.state.psa = PsaSandbox(conn, clock, options)
    return app
