"""Per-request log line and metrics, as one pure ASGI middleware.

The route *template* (``/sandbox/crm/v2/projects/{id}``), never the raw path, labels the metrics, so
label cardinality stays bounded; unmatched paths share one label.
"""

from __future__ import annotations

import time
from typing import Final

from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.logs import get_logger
from gateway.metrics import Metrics

UNMATCHED: Final = "<unmatched>"
log = get_logger("gateway.request")


def route_template(scope: Scope) -> str:
    """The template of the innermost route that handled a request, prefixed by the mounts above it.

    Starlette's router records the route it chose in ``scope["route"]``; a mount moves the matched
    prefix into ``root_path``, which is how the mounted part is recovered.
    """
    route = scope.get("route")
    path = getattr(route, "path", None) if isinstance(route, BaseRoute) else None
    if not isinstance(path, str):
        return UNMATCHED
    root_path: str = scope.get("root_path", "")
    app_root_path: str = scope.get("app_root_path", root_path)
    mounted = root_path[len(app_root_path) :] if root_path.startswith(app_root_path) else ""
    if isinstance(route, Mount):
        # The request ended in a mounted app without its own router: the prefix is the template.
        return mounted or path or "/"
    return (mounted + path) or "/"


class InstrumentationMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before it starts a response

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            duration_s = time.perf_counter() - started
            method: str = scope["method"]
            self.metrics.observe_request(
                route=route_template(scope), method=method, status=status, duration_s=duration_s
            )
            # The path only: query strings may carry secrets and are not needed to follow a request.
            log.info(
                "gateway.request.finished",
                method=method,
                path=scope["path"],
                status=status,
                duration_ms=round(duration_s * 1000, 2),
            )
