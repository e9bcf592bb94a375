"""Sandbox-only plumbing of the CRM app: its settings, the admin routes under ``/__sandbox/crm/`` and the
``Sforce-Limit-Info`` header."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from subgraphs.common.sandbox import ADMIN_PREFIX, SandboxPlumbing
from subgraphs.crm.sandbox.schema import SfError
from subgraphs.crm.sandbox.webhooks import Webhooks

DEFAULT_REQUEST_BUDGET = 100_000


@dataclass
class Settings:
    client_id: str
    client_secret: str
    token_ttl_s: int
    query_batch_size: int = 2000
    tokens: dict[str, float] = field(default_factory=dict)  # token → expiry (monotonic)
    plumbing: SandboxPlumbing | None = None


async def _body(request: Request) -> dict[str, Any]:
    body = json.loads(await request.body() or b"{}")
    if not isinstance(body, dict):
        raise SfError(400, "JSON_PARSER_ERROR", "expecting a JSON object")
    return body


async def expire_tokens(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    expired = len(settings.tokens)
    settings.tokens.clear()
    return JSONResponse({"expired": expired})


async def webhook(request: Request) -> Response:
    hooks: Webhooks = request.app.state.webhooks
    if request.method == "PUT":
        body = await _body(request)
        hooks.configure(body.get("url"), str(body.get("secret", "")))
    elif request.method == "DELETE":
        hooks.configure(None)
    return JSONResponse(hooks.status())


async def admin_settings(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    if request.method == "PUT":
        body = await _body(request)
        if "query_batch_size" in body:
            settings.query_batch_size = max(1, int(body["query_batch_size"]))
    return JSONResponse({"query_batch_size": settings.query_batch_size, "token_ttl_s": settings.token_ttl_s})


# --- the Sforce-Limit-Info header ----------------------------------------------------------------------


def usage(settings: Settings) -> tuple[int, int]:
    plumbing = settings.plumbing
    if plumbing is None:
        return 0, DEFAULT_REQUEST_BUDGET
    used = int(plumbing.counters_body()["budget_used"])
    return used, plumbing.limits.request_budget or DEFAULT_REQUEST_BUDGET


class LimitInfoHeader:
    """Outside the plumbing so that its refusals (a 403 limit) carry the header too."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                used, budget = usage(self.settings)
                message["headers"] = [
                    *message.get("headers", []),
                    (b"sforce-limit-info", f"api-usage={used}/{budget}".encode()),
                ]
            await send(message)

        await self.app(scope, receive, send_with_header)
