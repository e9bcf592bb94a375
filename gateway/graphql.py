"""The ``/graphql`` endpoint: the engagement graph of ``resolvers`` served by Strawberry's ASGI view.

What the gateway adds around Strawberry, in the order a request meets it:

1. GET that asks for HTML → GraphiQL (development only; production answers 404). The page itself needs
   no token; every operation it runs does.
2. Body larger than ``P2C_GRAPHQL_MAX_BODY_BYTES`` → 413, before any of it is parsed.
3. ``Authorization: Bearer <jwt>`` → ``Principal`` through the runtime's one ``Authenticator``; missing or
   bad → 401 with ``WWW-Authenticate``.
4. A per-request ``resolvers.context.Context`` (fresh loaders), then execution — all of it under
   ``P2C_GRAPHQL_TIMEOUT_S`` (→ 504, code ``TIMEOUT``).

Every refusal is GraphQL-shaped JSON, never a trace::

    {"errors": [{"message": "token expired",
                 "extensions": {"code": "UNAUTHENTICATED", "correlationId": "..."}}]}

Errors inside an executed operation keep the code the graph gave them; one without a code gets one here
(``GRAPHQL_PARSE_FAILED``, ``GRAPHQL_VALIDATION_FAILED``), and an unexpected exception is masked as
``INTERNAL`` and logged for the operator.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Literal, cast

from cross_web import HTTPException as StrawberryHTTPException
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult
from strawberry.types.unset import UnsetType

from canonical.errors import GatewayError, Unauthenticated, UpstreamUnavailable
from canonical.principal import Principal
from gateway.bus import SLOW_SUBSCRIBER_CLOSE_CODE, SLOW_SUBSCRIBER_REASON
from gateway.correlation import current_correlation_id, new_correlation_id, scope_correlation_id
from gateway.logs import get_logger
from gateway.runtime import Runtime, get_runtime
from gateway.settings import Settings
from gateway.sse import ConnectionFeed, StreamContext, stream_context
from gateway.types import SYSTEMS, Message, Receive, Scope, Send
from gateway.ws import Shared, SubscriptionHub, TransportWSHandler
from resolvers.context import Context, build_context
from resolvers.operations import IDEMPOTENCY_KEY_HEADER, OperationsContext, with_operations
from resolvers.schema import build_schema
from subgraphs.crm.client import CrmClient
from subgraphs.erp.client import ErpClient
from subgraphs.psa.client import PsaClient

log = get_logger("gateway.graphql")

_PRINCIPAL = "p2c.principal"  # request scope state key, set for WebSocket connections
_REALM = 'realm="p2c-gateway"'
_HTTP_CODES = {400: "BAD_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 415: "UNSUPPORTED_MEDIA_TYPE"}


class PayloadTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")
        self.limit = limit


class GraphQLView(GraphQL[Context, None]):
    """Strawberry's view with the gateway's authentication, context, limits and error shape."""

    protocols = (GRAPHQL_TRANSPORT_WS_PROTOCOL,)  # not the legacy graphql-ws: it could run before auth
    graphql_transport_ws_handler_class = TransportWSHandler  # subscriptions run shared (gateway.ws)
    share_subscriptions = True  # False: one execution per subscriber (bench/subscriptions.py's baseline)
    _hub: SubscriptionHub | None = None

    def __init__(self, settings: Settings) -> None:
        ide: Literal["graphiql"] | None = "graphiql" if settings.mode == "development" else None
        # Built once per app: schema construction walks every type and is not per-request work.
        super().__init__(
            build_schema(production=settings.mode == "production"),
            graphql_ide=ide,
            multipart_uploads_enabled=False,
        )
        self.timeout_s = settings.graphql_timeout_s
        self.max_body_bytes = settings.graphql_max_body_bytes
        self.batching = settings.graphql_batching

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":  # pragma: no cover - the router sends only http and websocket here
            await super().__call__(scope, receive, send)
            return
        response = await self._respond(Request(scope, receive))
        await response(scope, receive, send)

    async def _respond(self, request: Request) -> Response:
        if self.should_render_graphql_ide(self.request_adapter_class(request)):
            if self.graphql_ide:
                return await self.render_graphql_ide(request)
            return error_response(request, 404, "NOT_FOUND", "not found")
        # The deadline covers reading the body too: a client trickling bytes holds nothing for long.
        timeout = asyncio.timeout(self.timeout_s)
        try:
            async with timeout:
                body = await read_body(request, self.max_body_bytes)
                request = Request(request.scope, replay(body, request.receive))
                runtime = get_runtime(request)
                principal = await runtime.authenticator.authenticate(request.headers.get("authorization"))
                context = self._context(runtime, principal, request)
                return await self.run(request, context=context)
        except TimeoutError:
            if not timeout.expired():
                raise
            log.warning("gateway.graphql.timeout", timeout_s=self.timeout_s)
            return error_response(
                request, 504, "TIMEOUT", f"the request took longer than {self.timeout_s:g} s and was stopped"
            )
        except PayloadTooLarge as exc:
            return error_response(request, 413, "PAYLOAD_TOO_LARGE", str(exc))
        except Unauthenticated as exc:
            return unauthenticated_response(request, exc)
        except GatewayError as exc:
            if exc.http_status >= 500:
                log.warning("gateway.graphql.error", code=exc.code, error=exc.message)
            return error_response(request, exc.http_status, exc.code, exc.message, exc.extensions)
        except StrawberryHTTPException as exc:
            code = _HTTP_CODES.get(exc.status_code, "BAD_REQUEST")
            return error_response(request, exc.status_code, code, exc.reason)

    def _context(
        self, runtime: Runtime, principal: Principal, connection: Request | WebSocket, *, lazy: bool = False
    ) -> Context:
        clients: dict[str, object] = {}
        for name in SYSTEMS:
            try:
                clients[name] = runtime.client(name)
            except LookupError as exc:
                raise UpstreamUnavailable(name, str(exc).removeprefix(f"{name}: ")) from None
        context = build_context(
            principal=principal,
            crm=cast(CrmClient, clients["crm"]),
            psa=cast(PsaClient, clients["psa"]),
            erp=cast(ErpClient, clients["erp"]),
            sessionmaker=runtime.sessionmaker,
            correlation_id=current_correlation_id() or scope_correlation_id(connection.scope),
            batching=self.batching,
            # the naive variant stays what it was: every read upstream, nothing kept across requests
            cache=runtime.read_cache if self.batching else None,
            lazy_loaders=lazy,  # streaming connections: loaders only if an operation reads
            tryton=runtime.tryton,
            erp_by_entity=runtime.settings.erp_by_entity(),
        )
        # Flows need the mapping in force; a mutation may take its key from the Idempotency-Key header.
        key = connection.headers.get(IDEMPOTENCY_KEY_HEADER)
        return with_operations(context, mapping=runtime.mapping, idempotency_key=key)

    # --- WebSocket (graphql-transport-ws) and streaming contexts ------------------------------------
    #
    # The token travels in ``connection_init`` (``{"Authorization": "Bearer …"}`` or ``{"token": "…"}``),
    # since browsers cannot set headers on a WebSocket; a bad or missing one closes with 4403 Forbidden.
    # An ``Authorization`` header at the handshake still works: a bad one refuses the handshake (403), a
    # good one stands when connection_init carries no token. Until the ack the connection's principal is
    # nobody (no role, no entity), and strawberry refuses ``subscribe`` before the ack (4401).

    def streaming_context(
        self, runtime: Runtime, principal: Principal, connection: Request | WebSocket, feed: ConnectionFeed
    ) -> StreamContext:
        """The context of a WebSocket connection or an SSE stream: subscriptions read ``feed``."""
        context = stream_context(
            cast(OperationsContext, self._context(runtime, principal, connection, lazy=True)), feed
        )
        context.authenticator = runtime.authenticator
        return context

    def shared_subscriptions(self, connection: Request | WebSocket) -> Shared | None:
        """This process's subscription groups and how to build a context on ``connection``; None when
        subscriptions run one per subscriber (sharing off, or no event bus)."""
        runtime = get_runtime(connection)
        if not self.share_subscriptions or runtime.bus is None:
            return None
        if self._hub is None or self._hub.bus is not runtime.bus:
            self._hub = SubscriptionHub(self.schema, runtime.bus)
        hub = self._hub

        def make_context(principal: Principal, feed: ConnectionFeed) -> StreamContext:
            return self.streaming_context(runtime, principal, connection, feed)

        return hub, make_context

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        websocket = WebSocket(scope, receive, send)
        header = websocket.headers.get("authorization")
        if header is not None:
            try:
                principal = await get_runtime(websocket).authenticator.authenticate(header)
            except GatewayError as exc:
                log.info("gateway.graphql.ws.refused", code=exc.code, reason=exc.message)
                # Closing before accepting answers the handshake with 403.
                await websocket.close(code=1008)
                return
            scope.setdefault("state", {})[_PRINCIPAL] = principal
        await super().__call__(scope, receive, send)

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> Context:
        # HTTP requests get their context passed to ``run``; only WebSocket connections arrive here.
        principal = request.scope.get("state", {}).get(_PRINCIPAL)
        runtime = get_runtime(request)
        on_overflow = _closer(response) if isinstance(response, WebSocket) else None
        feed = ConnectionFeed(runtime.bus, on_overflow=on_overflow)
        who = principal if isinstance(principal, Principal) else NOBODY
        return self.streaming_context(runtime, who, request, feed)

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        if not isinstance(context, StreamContext) or context.authenticator is None:  # pragma: no cover
            raise ConnectionRejectionError
        header = init_authorization(context.connection_params or {})
        if header is None:
            if context.principal is NOBODY:
                log.info("gateway.graphql.ws.refused", code="UNAUTHENTICATED", reason="missing bearer token")
                raise ConnectionRejectionError
            return _ACK
        try:
            context.principal = await context.authenticator.authenticate(header)
        except GatewayError as exc:
            log.info("gateway.graphql.ws.refused", code=exc.code, reason=exc.message)
            raise ConnectionRejectionError from None
        return _ACK

    # --- results ----------------------------------------------------------------------------------

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        response = await super().process_result(request, result)
        formatted = response.get("errors")
        if result.errors and formatted:
            response["errors"] = [
                coded(error, cast(dict[str, Any], body))
                for error, body in zip(result.errors, formatted, strict=True)
            ]
        return response


# Strawberry's limit extensions and graphql-core's rules raise plain GraphQLErrors without a code; the
# text is the only thing that tells them apart. Checked in order, first match wins.
_VALIDATION_CODES: tuple[tuple[str, str], ...] = (
    ("exceeds maximum operation depth", "QUERY_TOO_DEEP"),
    ("aliases found", "TOO_MANY_ALIASES"),
    ("more than", "TOO_MANY_TOKENS"),  # "Document contains more than N tokens. Parsing aborted."
    ("introspection has been disabled", "INTROSPECTION_DISABLED"),
    ("Syntax Error", "GRAPHQL_PARSE_FAILED"),
)


def coded(error: GraphQLError, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` (the formatted ``error``) with an ``extensions.code``.

    The graph's own ``GatewayErrors`` extension already coded gateway errors and masked unexpected ones;
    this names the rest — GraphQL's parse, validation and limit errors — and masks anything that still
    slipped through (an unexpected exception must never reach a caller in words).
    """
    extensions = dict(body.get("extensions") or {})
    if "code" in extensions:
        return body
    original = error.original_error
    if original is not None and not isinstance(original, GatewayError | GraphQLError):
        log.error("gateway.graphql.unmasked", error=type(original).__name__)
        return {**body, "message": "Unexpected error.", "extensions": {"code": "INTERNAL"}}
    if error.path is not None:
        code = "INTERNAL"  # an execution error with no cause we know, e.g. null for a non-null field
    else:
        code = next(
            (code for marker, code in _VALIDATION_CODES if marker in error.message),
            "GRAPHQL_VALIDATION_FAILED",
        )
    extensions["code"] = code
    return {**body, "extensions": extensions}


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or ``PayloadTooLarge`` as soon as it (or its declared length) passes ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands out ``body`` once, then defers to the server (for disconnects)."""
    sent = False

    async def receive_again() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive_again


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    extensions: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    correlation_id = scope_correlation_id(request.scope) or current_correlation_id() or new_correlation_id()
    error = {
        "message": message,
        "extensions": {**(extensions or {}), "code": code, "correlationId": correlation_id},
    }
    return JSONResponse({"errors": [error]}, status_code=status, headers=dict(headers or {}))


def unauthenticated_response(request: Request, exc: Unauthenticated) -> JSONResponse:
    # RFC 6750 §3: a request with no credentials gets the challenge alone; a bad token gets its error.
    if request.headers.get("authorization"):
        # A header value is latin-1 and the description sits inside quotes: keep it plain ASCII.
        description = exc.message.encode("ascii", "replace").decode().replace('"', "'").replace("\\", "/")
        challenge = f'Bearer {_REALM}, error="invalid_token", error_description="{description}"'
    else:
        challenge = f"Bearer {_REALM}"
    return error_response(
        request, 401, exc.code, exc.message, exc.extensions, headers={"WWW-Authenticate": challenge}
    )


_ACK: UnsetType = UnsetType()  # connection_ack without a payload
NOBODY = Principal(subject="anonymous")  # a WebSocket before connection_init: sees nothing
_CLOSING: set[asyncio.Task[None]] = set()


def init_authorization(params: Mapping[str, object]) -> str | None:
    """The ``Authorization`` value a ``connection_init`` payload carries, if any."""
    for name in ("Authorization", "authorization"):
        value = params.get(name)
        if isinstance(value, str):
            return value
    token = params.get("token")
    if isinstance(token, str):
        return f"Bearer {token}"
    return None


def _closer(websocket: WebSocket) -> Callable[[], None]:
    """What the bus calls when this connection's subscriber falls too far behind: close, with a code."""

    async def close() -> None:
        try:
            await websocket.close(code=SLOW_SUBSCRIBER_CLOSE_CODE, reason=SLOW_SUBSCRIBER_REASON)
        except Exception as exc:  # already closing or gone: nothing left to tell the client
            log.debug("gateway.graphql.ws.close_failed", error=type(exc).__name__)

    def schedule() -> None:
        task = asyncio.get_running_loop().create_task(close())
        _CLOSING.add(task)
        task.add_done_callback(_CLOSING.discard)

    return schedule


def graphql_app(settings: Settings) -> GraphQLView:
    return GraphQLView(settings)


__all__ = ["GraphQLView", "graphql_app"]
