"""Correlation ids: one per request, accepted from the caller when it is sane, echoed back, and bound
to a context variable so every log line and exception record of the request carries it.

A pure ASGI middleware (not ``BaseHTTPMiddleware``): no extra task, no body buffering.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar
from typing import Final

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER: Final = "X-Correlation-Id"
_HEADER_KEY: Final = HEADER.lower().encode("latin-1")
_SANE: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")

_correlation_id: ContextVar[str | None] = ContextVar("p2c_correlation_id", default=None)


def current_correlation_id() -> str | None:
    return _correlation_id.get()


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def accept_correlation_id(value: str | None) -> str:
    """The caller's id when it is safe to log and echo, else a fresh one."""
    if value is not None and _SANE.fullmatch(value):
        return value
    return new_correlation_id()


def scope_correlation_id(scope: Scope) -> str | None:
    """The id bound to a request scope — also readable after the context variable was reset,
    e.g. by the 500 handler that runs outside this middleware."""
    state = scope.get("state")
    value = state.get("correlation_id") if isinstance(state, dict) else None
    return value if isinstance(value, str) else None


class CorrelationIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        incoming = None
        for key, value in scope.get("headers", ()):
            if key == _HEADER_KEY:
                incoming = value.decode("latin-1")
                break
        correlation_id = accept_correlation_id(incoming)
        scope.setdefault("state", {})["correlation_id"] = correlation_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = correlation_id
            await send(message)

        token = _correlation_id.set(correlation_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _correlation_id.reset(token)
