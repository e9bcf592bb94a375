"""Shared subscriptions: each event is executed once per subscription group, and its frame encoded once.

Strawberry runs a subscription per subscriber: every event goes through the resolver, GraphQL execution
and JSON encoding once for every connection that subscribed. With 1,000 subscribers that is 1,000
executions of the same document over the same event. Here, subscribers whose results must be identical
share one execution:

* **The group key** is (document, operation name, variables without the resume point, the principal's
  roles, legal entities and all-entities grant). Entity filtering (``resolvers.subscription``) and field
  permissions (``resolvers.permissions``) read only roles and entities, so every member of a group is
  owed exactly the same payload. The group executes as a principal built from that key alone
  (``subject="subscriptions:shared"``), so nothing of one member's identity reaches another.
* **One group, one execution.** A group runs the operation once through ``schema.stream`` (the same
  resolvers, extensions, limits and error masking as a private subscription) on its own bus feed. Each
  result becomes a ``Frame``: the payload encoded to JSON once, plus the outbox id of the event. Every
  member gets the frame in its own bounded queue; its writer adds the operation id around the shared text
  and makes the one socket write per subscriber that remains.
* **Resume.** ``lastEventId`` (an operation variable) and SSE's ``Last-Event-ID`` are not part of the key.
  A member resuming from ``n`` joins the group first (live frames queue up), then replays the outbox after
  ``n`` through a private, replay-only execution, then takes the queued live frames, skipping those at or
  below the last replayed id: no gap, no duplicate, id order — the rule ``EventBus.subscribe`` follows.
* **Backpressure.** A member whose queue fills is dropped from its group and gets an overflow frame: the
  WebSocket closes with 4008, SSE sends ``SUBSCRIBER_TOO_SLOW`` and completes. A group that falls behind
  the bus overflows all of its members the same way. Either way the client reconnects with its last
  event id and loses nothing.

Only subscriptions whose shape allows it are shared: a parsable subscription whose root field takes
``lastEventId`` from a nullable variable (or not at all). Everything else — queries and mutations over
the socket, syntax errors, a literal ``lastEventId``, a resume point that is not an id — takes strawberry's
own path, which answers exactly as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from graphql import (
    FieldNode,
    GraphQLError,
    NonNullTypeNode,
    NullValueNode,
    VariableNode,
    get_operation_ast,
    parse,
)
from graphql import OperationType as CoreOperationType
from starlette.websockets import WebSocket
from strawberry.schema import BaseSchema
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import SubscribeMessage
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.types.graphql import OperationType

from canonical.principal import Principal, Role
from gateway.bus import SLOW_SUBSCRIBER_CLOSE_CODE, SLOW_SUBSCRIBER_REASON, EventBus
from gateway.logs import get_logger
from gateway.sse import ConnectionFeed, StreamContext
from resolvers.context import Context
from resolvers.schema import MAX_TOKENS

log = get_logger("gateway.ws")

RESUME_ARGUMENT = "lastEventId"
# Longer documents run privately: the shape cache keeps its keys, and a subscription is a few hundred bytes.
MAX_SHARED_QUERY_CHARS = 10_000
SHARED_SUBJECT = "subscriptions:shared"

ContextFactory = Callable[[Principal, ConnectionFeed], StreamContext]
FrameKind = Literal["next", "error", "complete", "overflow"]
Scope = tuple[frozenset[Role], frozenset[str], bool]
Shared = tuple["SubscriptionHub", ContextFactory]  # a connection's hub and how to build its contexts


# --- what can be shared ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Shape:
    resume_variable: str | None  # the variable the root field's lastEventId reads, if any


@functools.lru_cache(maxsize=512)
def _shape(query: str, operation_name: str | None) -> _Shape | None:
    """Whether a document can run shared, and where its resume point comes from (parsed once)."""
    try:
        document = parse(query, max_tokens=MAX_TOKENS)
    except GraphQLError:
        return None  # strawberry's path answers syntax errors and limits
    operation = get_operation_ast(document, operation_name)
    if operation is None or operation.operation != CoreOperationType.SUBSCRIPTION:
        return None
    resume: str | None = None
    for selection in operation.selection_set.selections:
        if not isinstance(selection, FieldNode):
            return None
        for argument in selection.arguments or ():
            if argument.name.value != RESUME_ARGUMENT or isinstance(argument.value, NullValueNode):
                continue
            if not isinstance(argument.value, VariableNode):
                return None  # a literal resume point: rare, and private
            name = argument.value.name.value
            if resume is not None and resume != name:
                return None
            resume = name
    if resume is not None:
        for definition in operation.variable_definitions or ():
            if definition.variable.name.value == resume and (
                isinstance(definition.type, NonNullTypeNode) or definition.default_value is not None
            ):
                return None  # without the variable the operation would not run as the member's would
    return _Shape(resume)


@dataclass(frozen=True)
class Plan:
    """A subscription that can run shared: the group's operation, and this subscriber's resume point."""

    query: str
    operation_name: str | None
    variables: Mapping[str, Any]  # the group's: without the resume variable
    variables_key: str
    resume: int | None


def plan_subscription(query: object, variables: object, operation_name: object) -> Plan | None:
    """The shared plan of a ``subscribe`` request, or None to run it strawberry's own way."""
    if not isinstance(query, str) or not (operation_name is None or isinstance(operation_name, str)):
        return None
    if variables is not None and not isinstance(variables, dict):
        return None
    if len(query) > MAX_SHARED_QUERY_CHARS:
        return None
    shape = _shape(query, operation_name)
    if shape is None:
        return None
    given: dict[str, Any] = dict(variables or {})
    resume: int | None = None
    if shape.resume_variable is not None:
        value = given.pop(shape.resume_variable, None)
        if isinstance(value, str) and value.strip().isdigit():
            resume = int(value.strip())
        elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            resume = value
        elif value is not None:
            return None  # the private path refuses it with the resolver's error
    try:
        key = json.dumps(given, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return None
    return Plan(query, operation_name, given, key, resume)


def scope_of(principal: Principal) -> Scope:
    """What a subscription's output depends on: roles (operations, field permissions) and entities."""
    return principal.roles, principal.legal_entities, principal.all_entities


def later(first: int | None, second: int | None) -> int | None:
    """The further of two resume points."""
    if first is None:
        return second
    return first if second is None else max(first, second)


# --- frames ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """One result, encoded once for every member: ``text`` is the JSON of ``body``."""

    kind: FrameKind
    event_id: int | None = None
    body: Any = None
    text: str = ""
    final: bool = False  # the stream ends after it (an error without data)


COMPLETE = Frame("complete")
OVERFLOW = Frame("overflow")


def _encode(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"), default=str)


def frame_of(result: ExecutionResult, event_id: int | None) -> Frame:
    """A result as the wire carries it; every error with an ``extensions.code``."""
    from gateway.graphql import coded  # the one place errors get their code

    errors = [coded(error, dict(error.formatted)) for error in result.errors or ()]
    if isinstance(result, PreExecutionError):
        return Frame("error", None, errors, _encode(errors), final=True)
    body: dict[str, Any] = {"data": result.data}
    if errors:
        body["errors"] = errors
    if result.extensions:
        body["extensions"] = result.extensions
    final = bool(errors) and result.data is None
    return Frame("next", None if errors else event_id, body, _encode(body), final)


def too_slow_body(queue_size: int) -> dict[str, Any]:
    return {
        "data": None,
        "errors": [
            {
                "message": f"more than {queue_size} events were waiting for this subscriber; "
                "reconnect with lastEventId to resume",
                "extensions": {"code": "SUBSCRIBER_TOO_SLOW", "queueSize": queue_size},
            }
        ],
    }


# --- groups ----------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Member:
    queue: asyncio.Queue[Frame]
    dropped: bool = False

    def offer(self, frame: Frame) -> bool:
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            return False
        return True

    def overflow(self) -> None:
        """Too far behind: what is queued is dropped, the overflow frame is all that is left."""
        self.dropped = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(OVERFLOW)


@dataclass(eq=False)
class Group:
    hub: SubscriptionHub
    key: tuple[str, str | None, str, Scope]
    plan: Plan
    principal: Principal
    make_context: ContextFactory
    members: set[Member] = field(default_factory=set)
    registered: asyncio.Event = field(default_factory=asyncio.Event)  # on the bus, or ended
    live: bool = False  # its feed reached the bus: members may replay and join
    executions: int = 0  # results produced (one per event, whatever the member count)
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(), name="p2c-subscription-group")

    def _on_registered(self) -> None:
        self.live = True
        self.registered.set()

    def _publish(self, frame: Frame) -> None:
        for member in list(self.members):
            if not member.offer(frame):
                self.members.discard(member)
                member.overflow()
                self.hub.stats_dropped += 1
                log.warning("gateway.ws.slow_subscriber", event_id=frame.event_id)

    def _overflowed(self) -> None:
        """The group itself fell behind the bus: every member reconnects with its last event id."""
        self.hub._forget(self)  # whoever subscribes next starts a fresh group
        for member in list(self.members):
            member.overflow()
        self.members.clear()

    async def _run(self) -> None:
        feed = ConnectionFeed(self.hub.bus, on_overflow=self._overflowed, on_registered=self._on_registered)
        try:
            results = await self.hub.schema.stream(
                self.plan.query,
                variable_values=dict(self.plan.variables),
                context_value=self.make_context(self.principal, feed),
                operation_name=self.plan.operation_name,
                allowed_operation_types=(OperationType.SUBSCRIPTION,),
            )
            async with contextlib.aclosing(results):
                async for result in results:
                    if not isinstance(result, ExecutionResult):  # incremental delivery: not for subscriptions
                        break
                    self.executions += 1
                    frame = frame_of(result, feed.last_delivered)
                    self._publish(frame)
                    if frame.final:
                        break
        except asyncio.CancelledError:
            raise
        except Exception:
            log.error("gateway.ws.group_failed", exc_info=True)
            errors = [{"message": "Unexpected error.", "extensions": {"code": "INTERNAL"}}]
            body = {"data": None, "errors": errors}
            self._publish(Frame("next", None, body, _encode(body), final=True))
        finally:
            # Ended: nobody joins this group any more, and whoever waits to replay stops waiting.
            self.hub._forget(self)
            self.registered.set()
        self._publish(COMPLETE)


class SubscriptionHub:
    """This process's subscription groups, over its event bus."""

    def __init__(self, schema: BaseSchema, bus: EventBus) -> None:
        self.schema = schema
        self.bus = bus
        self.queue_size = bus.queue_size
        self.groups: dict[tuple[str, str | None, str, Scope], Group] = {}
        self.stats_dropped = 0

    @property
    def member_count(self) -> int:
        return sum(len(group.members) for group in self.groups.values())

    def join(self, plan: Plan, principal: Principal, make_context: ContextFactory) -> tuple[Group, Member]:
        scope = scope_of(principal)
        key = (plan.query, plan.operation_name, plan.variables_key, scope)
        group = self.groups.get(key)
        if group is None:
            roles, entities, everything = scope
            shared = Principal(
                subject=SHARED_SUBJECT, roles=roles, legal_entities=entities, all_entities=everything
            )
            group = Group(self, key, plan, shared, make_context)
            self.groups[key] = group
            group.start()
        member = Member(asyncio.Queue(self.queue_size))
        group.members.add(member)
        return group, member

    def leave(self, group: Group, member: Member) -> None:
        group.members.discard(member)
        if not group.members and self.groups.get(group.key) is group:
            self._forget(group)
            if group.task is not None:
                group.task.cancel()

    def _forget(self, group: Group) -> None:
        if self.groups.get(group.key) is group:
            del self.groups[group.key]

    async def frames(
        self, group: Group, member: Member, resume: int | None, make_context: ContextFactory
    ) -> AsyncIterator[Frame]:
        """What one member sends, in id order: the replay after ``resume``, then the group's live
        frames not already replayed; ends after the first frame that ends the stream."""
        try:
            after = resume
            if resume is not None:
                await group.registered.wait()
                if group.live:
                    feed = ConnectionFeed(self.bus, last_event_id=resume, live=False)
                    async for frame in self._replay(group, feed, make_context):
                        yield frame
                        if frame.final:
                            yield COMPLETE
                            return
                    after = later(resume, feed.last_delivered)
            while True:
                frame = await member.queue.get()
                replayed = frame.event_id is not None and after is not None and frame.event_id <= after
                if frame.kind == "next" and replayed:
                    continue
                yield frame
                if frame.kind != "next":
                    return
        finally:
            self.leave(group, member)

    async def _replay(
        self, group: Group, feed: ConnectionFeed, make_context: ContextFactory
    ) -> AsyncIterator[Frame]:
        results = await self.schema.stream(
            group.plan.query,
            variable_values=dict(group.plan.variables),
            context_value=make_context(group.principal, feed),
            operation_name=group.plan.operation_name,
            allowed_operation_types=(OperationType.SUBSCRIPTION,),
        )
        async with contextlib.aclosing(results):
            async for result in results:
                if isinstance(result, ExecutionResult):
                    yield frame_of(result, feed.last_delivered)


# --- the WebSocket transport -------------------------------------------------------------------------------


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws with shared subscriptions; the protocol itself stays strawberry's."""

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        if (
            not self.connection_acknowledged
            or message["id"] in self.operations
            or (
                self.max_subscriptions_per_connection is not None
                and len(self.operations) >= self.max_subscriptions_per_connection
            )
        ):
            await super().handle_subscribe(message)  # refusals, as strawberry words them
            return
        payload = message["payload"]
        plan = plan_subscription(payload["query"], payload.get("variables"), payload.get("operationName"))
        websocket = getattr(self.websocket, "ws", None)
        # The view (``gateway.graphql.GraphQLView``) says whether this connection shares, and how.
        sharing: Callable[[WebSocket], Shared | None] | None
        sharing = getattr(self.view, "shared_subscriptions", None)
        shared = sharing(websocket) if sharing is not None and isinstance(websocket, WebSocket) else None
        if plan is None or shared is None or not isinstance(self.context, StreamContext):
            await super().handle_subscribe(message)
            return
        assert isinstance(websocket, WebSocket)
        hub, make_context = shared
        operation: Operation[Context, None] = Operation(
            self, message["id"], plan.query, payload.get("variables"), plan.operation_name
        )
        group, member = hub.join(plan, self.context.principal, make_context)
        frames = hub.frames(group, member, plan.resume, make_context)
        operation.task = asyncio.create_task(self._deliver(operation, websocket, frames, hub.queue_size))
        operation.task.add_done_callback(self._task_done)
        # Also when the task is cancelled before it ever ran (complete or disconnect right away).
        operation.task.add_done_callback(lambda _task: hub.leave(group, member))
        self.operations[message["id"]] = operation

    async def _deliver(
        self,
        operation: Operation[Context, None],
        websocket: WebSocket,
        frames: AsyncIterator[Frame],
        queue_size: int,
    ) -> None:
        prefix = '{"id":' + json.dumps(operation.id) + ',"type":"next","payload":'
        try:
            async for frame in frames:
                if frame.kind == "next":
                    await websocket.send_text(prefix + frame.text + "}")  # the one write per subscriber
                elif frame.kind == "error":
                    await operation.send_operation_message(
                        {"id": operation.id, "type": "error", "payload": frame.body}
                    )
                elif frame.kind == "overflow":
                    log.info("gateway.ws.closing_slow_subscriber", queue_size=queue_size)
                    await websocket.close(code=SLOW_SUBSCRIBER_CLOSE_CODE, reason=SLOW_SUBSCRIBER_REASON)
                else:
                    await operation.send_operation_message({"id": operation.id, "type": "complete"})
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the socket went away under us: nothing left to tell this client
            log.debug("gateway.ws.send_failed", error=type(exc).__name__)
        finally:
            with contextlib.suppress(Exception):
                await frames.aclose()  # type: ignore[attr-defined]
            if self.operations.get(operation.id) is operation:
                del self.operations[operation.id]


__all__ = [
    "Frame",
    "Group",
    "Plan",
    "Shared",
    "SubscriptionHub",
    "TransportWSHandler",
    "frame_of",
    "plan_subscription",
    "scope_of",
    "too_slow_body",
]
