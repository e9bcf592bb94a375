"""Subscriptions over Server-Sent Events, for clients that cannot open a WebSocket.

    GET /graphql/stream?query=subscription{invoiceStatusChanged{eventId invoice{status}}}&variables={...}
    Authorization: Bearer <jwt>
    Last-Event-ID: 41            (optional; an EventSource sends it by itself when it reconnects)

Answers ``text/event-stream``; every event is::

    id: 42
    event: next
    data: {"data": {"invoiceStatusChanged": {...}}}

``id`` is the outbox event id, so a reconnecting ``EventSource`` resumes exactly after the last event it
got. Refusals before the stream opens are GraphQL-shaped JSON with a status (401 no/bad token, 422 no
query or bad variables); a query that does not validate, or an error during the stream, is one
``event: next`` carrying coded ``errors``, then ``event: complete``.
A comment line (``: keep-alive``) goes out every ``KEEPALIVE_S`` so proxies keep the connection.

This module also holds what both streaming transports (SSE and the WebSocket of ``gateway.graphql``) put
on the resolvers' context: ``StreamContext`` (the operations context plus the event feed and the
WebSocket's ``connection_init`` payload) and ``ConnectionFeed`` (the bus, seen by one connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from strawberry.types.graphql import OperationType

from canonical.errors import GatewayError, Unauthenticated, ValidationFailed
from gateway.auth import Authenticator
from gateway.bus import EventBus
from gateway.logs import get_logger
from resolvers.operations import OperationsContext
from resolvers.types.events import BusEvent

if TYPE_CHECKING:
    from gateway.graphql import GraphQLView
    from gateway.ws import Frame

log = get_logger("gateway.sse")

KEEPALIVE_S = 15.0


@dataclass
class ConnectionFeed:
    """The bus as one connection's subscriptions see it (``resolvers.types.events.EventFeed``).

    ``last_event_id`` is the resume point the transport itself carries (SSE's ``Last-Event-ID``); it
    wins over the operation's ``lastEventId`` argument when it is further on. ``last_delivered`` is the
    id of the newest event handed out, which SSE writes as the event's ``id:``.
    """

    bus: EventBus | None
    on_overflow: Callable[[], None] | None = None
    last_event_id: int | None = None
    on_registered: Callable[[], None] | None = None  # see ``EventBus.subscribe``
    live: bool = True  # False: the replay after the resume point only (a shared group's catch-up)
    last_delivered: int | None = field(default=None, init=False)

    async def subscribe(
        self,
        *,
        topics: frozenset[str],
        accept: Callable[[BusEvent], bool],
        last_event_id: int | None = None,
    ) -> AsyncIterator[BusEvent]:
        if self.bus is None:
            raise GatewayError("the event bus is not running")
        resume = last_event_id
        if self.last_event_id is not None and (resume is None or self.last_event_id > resume):
            resume = self.last_event_id
        events = self.bus.subscribe(
            topics=topics,
            accept=accept,
            last_event_id=resume,
            on_overflow=self.on_overflow,
            on_registered=self.on_registered,
            live=self.live,
        )
        try:
            async for event in events:
                self.last_delivered = event.id
                yield event
        finally:
            await events.aclose()  # type: ignore[attr-defined]


@dataclass
class StreamContext(OperationsContext):
    """The context of a streaming connection: ``events`` feeds the subscription resolvers."""

    events: ConnectionFeed | None = None
    connection_params: dict[str, Any] | None = None  # the WebSocket's connection_init payload
    authenticator: Authenticator | None = None  # checks the token connection_init carries


def stream_context(context: OperationsContext, feed: ConnectionFeed) -> StreamContext:
    fields = {name: getattr(context, name) for name in OperationsContext.__dataclass_fields__}
    return StreamContext(**fields, events=feed)


def _event(kind: str, body: Any, event_id: int | None = None) -> str:
    return _raw_event(kind, json.dumps(body, separators=(",", ":"), default=str), event_id)


def _raw_event(kind: str, data: str, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {data}\n\n"


def _request_data(request: Request) -> tuple[str, dict[str, Any] | None, str | None]:
    query = request.query_params.get("query")
    if not query:
        raise ValidationFailed("the query parameter 'query' is required", subject="query")
    raw = request.query_params.get("variables")
    variables: dict[str, Any] | None = None
    if raw:
        try:
            parsed = json.loads(raw)
        except ValueError:
            raise ValidationFailed("'variables' must be a JSON object", subject="variables") from None
        if not isinstance(parsed, dict):
            raise ValidationFailed("'variables' must be a JSON object", subject="variables")
        variables = parsed
    return query, variables, request.query_params.get("operationName")


def _last_event_id(request: Request) -> int | None:
    value = (request.headers.get("last-event-id") or "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise ValidationFailed("Last-Event-ID must be an event id received earlier", subject="Last-Event-ID")
    return int(value)


def sse_endpoint(view: GraphQLView) -> Callable[[Request], Any]:
    """The ``GET /graphql/stream`` endpoint over ``view``'s schema, authentication and context."""
    from gateway.graphql import error_response, unauthenticated_response
    from gateway.runtime import get_runtime
    from gateway.ws import later, plan_subscription

    async def stream(request: Request) -> Response:
        overflowed = asyncio.Event()
        try:
            query, variables, operation_name = _request_data(request)
            runtime = get_runtime(request)
            principal = await runtime.authenticator.authenticate(request.headers.get("authorization"))
            resume = _last_event_id(request)
            feed = ConnectionFeed(runtime.bus, overflowed.set, resume)
            context = view.streaming_context(runtime, principal, request, feed)
        except Unauthenticated as exc:
            return unauthenticated_response(request, exc)
        except GatewayError as exc:
            return error_response(request, exc.http_status, exc.code, exc.message, exc.extensions)
        shared = view.shared_subscriptions(request)
        plan = plan_subscription(query, variables, operation_name) if shared is not None else None
        if shared is not None and plan is not None:
            # One execution per subscription group (gateway.ws); this stream only writes the frames.
            hub, make_context = shared

            def join() -> tuple[AsyncIterator[Frame], Callable[[], None]]:  # on the stream's first step
                group, member = hub.join(plan, principal, make_context)
                frames = hub.frames(group, member, later(plan.resume, resume), make_context)
                return frames, lambda: hub.leave(group, member)

            return StreamingResponse(
                _shared_events(join, hub.queue_size),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        result = await view.schema.stream(
            query,
            variable_values=variables,
            context_value=context,
            operation_name=operation_name,
            allowed_operation_types=(OperationType.SUBSCRIPTION,),
        )
        return StreamingResponse(
            _events(view, request, result, feed),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return stream


class _KeepAlive:
    """What ``_paced`` yields when nothing came within ``KEEPALIVE_S``."""


KEEPALIVE: Any = _KeepAlive()


async def _paced(items: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
    """``items`` as they come, and ``KEEPALIVE`` after each ``KEEPALIVE_S`` without one. The wait for
    the next item survives keep-alives (it is not restarted), and is cancelled when the stream ends."""
    pending: asyncio.Task[Any] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(items))
            done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE_S)
            if not done:
                yield KEEPALIVE
                continue
            task, pending = pending, None
            try:
                item = task.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending


async def _shared_events(
    join: Callable[[], tuple[AsyncIterator[Frame], Callable[[], None]]], queue_size: int
) -> AsyncIterator[str]:
    """The SSE lines of one member of a subscription group: the shared JSON of each frame."""
    from gateway.ws import too_slow_body

    frames, leave = join()
    try:
        yield ": stream open\n\n"
        async with contextlib.aclosing(_paced(frames)) as paced:
            async for frame in paced:
                if frame is KEEPALIVE:
                    yield ": keep-alive\n\n"
                elif frame.kind == "next":
                    yield _raw_event("next", frame.text, frame.event_id)
                    if frame.final:
                        break
                elif frame.kind == "error":  # the operation did not validate
                    yield _event("next", {"data": None, "errors": frame.body})
                    break
                elif frame.kind == "overflow":
                    yield _event("next", too_slow_body(queue_size))
                    break
                else:
                    break
        yield _event("complete", None)
    finally:
        with contextlib.suppress(Exception):
            await frames.aclose()  # type: ignore[attr-defined]
        leave()  # also when the frames never started (aclose does not run their finally then)


async def _events(
    view: GraphQLView, request: Request, results: Any, feed: ConnectionFeed
) -> AsyncIterator[str]:
    """The SSE lines of one subscription: each result as ``next``, keep-alives between, ``complete``."""
    try:
        yield ": stream open\n\n"
        async with contextlib.aclosing(_paced(aiter(results))) as paced:
            async for result in paced:
                if result is KEEPALIVE:
                    yield ": keep-alive\n\n"
                    continue
                body = await view.process_result(request, result)  # codes errors like /graphql does
                yield _event("next", body, feed.last_delivered if not result.errors else None)
                if result.errors and result.data is None:
                    break
        yield _event("complete", None)
    finally:
        with contextlib.suppress(Exception):
            await results.aclose()


__all__ = ["KEEPALIVE_S", "ConnectionFeed", "StreamContext", "sse_endpoint", "stream_context"]
