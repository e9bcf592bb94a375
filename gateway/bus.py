"""The event bus: outbox rows → GraphQL subscribers, in this process and across gateway processes.

One ``EventBus`` per process (the runtime owns it). Two halves:

* **Relay** (publisher). Every ``relay_interval_s``, or at once when ``wake()`` is called after a local
  commit, it claims unpublished outbox rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several
  processes never claim the same rows), marks them published and — on PostgreSQL — sends
  ``NOTIFY p2c_events '<highest id>'`` in the same transaction, so the notice goes out when the mark
  commits. On SQLite the signal is in-process. On PostgreSQL the producer does not wait for it:
  ``OutboxRepo.add`` already notifies in the emitting transaction, so pumps read a new row as soon as
  it commits, whichever process wrote it; the relay's own notice is then a backstop, and the relay ticks
  only every ``POSTGRES_RELAY_INTERVAL_S`` there (each tick is a transaction, in every process: at 50 ms
  that alone was most of an idle gateway's CPU).
* **Pump** (subscriber side). One ``LISTEN p2c_events`` connection per process (asyncpg, straight from
  the store URL). ``OutboxRepo.add``'s notice carries the row itself: when its id is the one after the
  last id dispatched, the pump offers it to every subscriber whose topics and filter take it without
  reading the outbox. Anything else — a gap in the ids (a notice lost, or a row too big for a notice),
  the relay's notice (an id), the in-process signal, a slow safety poll, a (re)connected LISTEN — makes
  the pump read the outbox after the last id it dispatched, in id order. So a lost notice costs latency,
  never an event, and no payload is limited by NOTIFY's 8 kB.

Ordering and resume: outbox ids become visible in id order (``OutboxRepo.add`` serialises emitting
transactions), so "after the last id" never skips one. ``subscribe(..., last_event_id=n)`` registers the
subscriber first, replays rows after ``n`` from the outbox, then reads its queue, dropping anything at or
below the highest id already delivered: no gap, no duplicate.

Backpressure: each subscriber has a bounded queue (``queue_size``). A subscriber that lets it fill is
dropped from the bus (memory stays bounded), its ``on_overflow`` is called (the WebSocket closes with
``SLOW_SUBSCRIBER_CLOSE_CODE``) and its iterator raises ``SubscriberTooSlow``; the client reconnects with
its last event id and loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical.errors import GatewayError
from gateway.logs import get_logger
from resolvers.types.events import BusEvent
from store.models import OutboxEvent, utcnow
from store.repositories.events import OUTBOX_CHANNEL

log = get_logger("gateway.bus")

CHANNEL = OUTBOX_CHANNEL  # OutboxRepo.add notifies it in the emitting transaction; the relay too
# Outside graphql-transport-ws's 4400-4499: "you fell behind; reconnect with lastEventId".
SLOW_SUBSCRIBER_CLOSE_CODE = 4008
SLOW_SUBSCRIBER_REASON = "subscriber too slow: reconnect with lastEventId"
SQLITE_RELAY_INTERVAL_S = 0.05  # the relay's in-process signal is how the pump learns of new rows
POSTGRES_RELAY_INTERVAL_S = 1.0  # a backstop: producers NOTIFY at commit (OutboxRepo.add)


class SubscriberTooSlow(GatewayError):
    code = "SUBSCRIBER_TOO_SLOW"
    http_status = 503


@dataclass(eq=False)
class _Subscriber:
    topics: frozenset[str]
    accept: Callable[[BusEvent], bool]
    queue: asyncio.Queue[BusEvent | None]
    on_overflow: Callable[[], None] | None = None
    overflowed: bool = False

    def offer(self, event: BusEvent) -> bool:
        """Queue ``event`` if wanted; False when the queue is full (the subscriber must go)."""
        if event.topic not in self.topics:
            return True
        try:
            wanted = self.accept(event)
        except Exception:  # a filter bug must not stop the pump for everyone else
            log.error("gateway.bus.filter_failed", exc_info=True, event_id=event.id)
            return True
        if not wanted:
            return True
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            return False
        return True


@dataclass
class BusStats:
    dispatched: int = 0  # events the pump read and offered
    relayed: int = 0  # outbox rows this process marked published
    dropped_subscribers: int = 0  # disconnected for being too slow
    notifications: int = 0  # NOTIFY messages received
    from_notices: int = 0  # events dispatched straight from the row a notice carried
    store_reads: int = 0  # outbox reads of the pump


def _setter(event: asyncio.Event) -> Callable[[object], None]:
    return lambda _connection: event.set()


def asyncpg_dsn(database_url: str) -> str:
    """``postgresql+asyncpg://…`` (SQLAlchemy) → ``postgresql://…`` (asyncpg)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


_EVENT_COLUMNS = (
    OutboxEvent.id,
    OutboxEvent.topic,
    OutboxEvent.legal_entity,
    OutboxEvent.payload,
    OutboxEvent.key,
)


def to_event(row: OutboxEvent | sa.Row[Any]) -> BusEvent:
    return _event(row.id, row.topic, row.legal_entity, row.payload, row.key)


def _event(id: int, topic: str, legal_entity: str | None, value: object, key: str | None) -> BusEvent:
    payload = value if isinstance(value, dict) else {"value": value}
    entity = legal_entity if legal_entity is not None else payload.get("legal_entity")
    return BusEvent(
        id=id,
        topic=topic,
        legal_entity=entity if isinstance(entity, str) else None,
        payload=payload,
        key=key,
    )


def notice_event(payload: object) -> BusEvent | None:
    """The outbox row a notice of ``OutboxRepo.add`` carries; None for any other notice."""
    if not isinstance(payload, str) or not payload.startswith("{"):
        return None
    try:
        row = json.loads(payload)
        if not isinstance(row, Mapping) or isinstance(row.get("id"), bool):
            return None
        topic, entity, key = row.get("topic"), row.get("legal_entity"), row.get("key")
        if not isinstance(topic, str):
            return None
        return _event(
            int(row["id"]),
            topic,
            entity if isinstance(entity, str) else None,
            row.get("payload"),
            key if isinstance(key, str) else None,
        )
    except (ValueError, TypeError, KeyError):
        return None


@dataclass
class EventBus:
    sessionmaker: async_sessionmaker[AsyncSession]
    database_url: str
    queue_size: int = 1000
    relay: bool = True  # run the publisher half here (a process may leave it to another)
    relay_interval_s: float | None = None  # None: 50 ms on SQLite, POSTGRES_RELAY_INTERVAL_S on PostgreSQL
    safety_poll_s: float = 2.0  # read the outbox even without a notice (a lost LISTEN connection)
    page: int = 500
    stats: BusStats = field(default_factory=BusStats)

    def __post_init__(self) -> None:
        self.postgres = make_url(self.database_url).get_backend_name() == "postgresql"
        if self.relay_interval_s is None:
            self.relay_interval_s = POSTGRES_RELAY_INTERVAL_S if self.postgres else SQLITE_RELAY_INTERVAL_S
        self._subscribers: set[_Subscriber] = set()
        self._watermark: int | None = None  # highest outbox id dispatched; None until the store answers
        self._pump_signal = asyncio.Event()
        self._notices: deque[BusEvent] = deque()  # rows notices carried, not dispatched yet
        self._read_store = True  # the pump must read the outbox (not just take the notices)
        self._relay_signal = asyncio.Event()
        self._listening = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    # --- life ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            self._watermark = await self._last_id()
        except Exception as exc:  # a store not migrated yet must not stop the gateway; the pump retries
            log.warning("gateway.bus.store_unavailable", error=f"{type(exc).__name__}: {exc}")
        self._tasks.append(asyncio.create_task(self._pump(), name="p2c-bus-pump"))
        if self.postgres:
            self._tasks.append(asyncio.create_task(self._listen(), name="p2c-bus-listen"))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._listening.wait()
        if self.relay:
            self._tasks.append(asyncio.create_task(self._relay(), name="p2c-bus-relay"))
        log.info("gateway.bus.started", postgres=self.postgres, relay=self.relay, after_id=self._watermark)

    async def close(self) -> None:
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for subscriber in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                subscriber.queue.put_nowait(None)  # ends its iterator
        self._subscribers.clear()

    def wake(self) -> None:
        """A local transaction committed outbox rows: relay and pump now rather than at the next tick."""
        self._relay_signal.set()
        self._read_store = True
        self._pump_signal.set()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    @property
    def last_dispatched_id(self) -> int | None:
        return self._watermark

    # --- subscribing --------------------------------------------------------------------------------

    async def subscribe(
        self,
        *,
        topics: frozenset[str],
        accept: Callable[[BusEvent], bool],
        last_event_id: int | None = None,
        on_overflow: Callable[[], None] | None = None,
        on_registered: Callable[[], None] | None = None,
        live: bool = True,
    ) -> AsyncIterator[BusEvent]:
        """``live=False``: only the replay after ``last_event_id``, then the iterator ends (a shared
        subscription's catch-up, ``gateway.ws``). ``on_registered`` is called once the subscriber is on
        the bus: from then on every event that commits reaches it."""
        if self._closed:
            return
        subscriber = _Subscriber(topics, accept, asyncio.Queue(self.queue_size), on_overflow)
        if live:
            # Registered before the replay reads: whatever commits from now on reaches the queue too.
            self._subscribers.add(subscriber)
            if on_registered is not None:
                on_registered()
        delivered = (self._watermark or 0) if last_event_id is None else last_event_id
        try:
            if last_event_id is not None:
                while True:
                    rows = await self._after(delivered, topics)
                    for event in rows:
                        self._check(subscriber)
                        delivered = event.id
                        if accept(event):
                            yield event
                    if len(rows) < self.page:
                        break
            while live:
                self._check(subscriber)
                queued = await subscriber.queue.get()
                if queued is None:
                    return
                if queued.id <= delivered:
                    continue  # already replayed
                delivered = queued.id
                yield queued
        finally:
            self._subscribers.discard(subscriber)

    def _check(self, subscriber: _Subscriber) -> None:
        if subscriber.overflowed:
            raise SubscriberTooSlow(
                f"more than {self.queue_size} events were waiting for this subscriber; "
                "reconnect with lastEventId to resume",
                queueSize=self.queue_size,
            )

    def _dispatch(self, event: BusEvent) -> None:
        for subscriber in list(self._subscribers):
            if subscriber.offer(event):
                continue
            subscriber.overflowed = True
            self._subscribers.discard(subscriber)
            self.stats.dropped_subscribers += 1
            log.warning("gateway.bus.slow_subscriber", event_id=event.id, queue_size=self.queue_size)
            if subscriber.on_overflow is not None:
                try:
                    subscriber.on_overflow()
                except Exception:
                    log.error("gateway.bus.on_overflow_failed", exc_info=True)

    # --- the pump -------------------------------------------------------------------------------------

    async def _pump(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.safety_poll_s):
                    await self._pump_signal.wait()
            except TimeoutError:
                self._read_store = True
            self._pump_signal.clear()
            try:
                store, self._read_store = self._read_store, False
                await self.drain(store=store)
            except Exception as exc:
                self._read_store = True
                log.warning("gateway.bus.pump_failed", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.5)

    async def drain(self, *, store: bool = True) -> int:
        """Dispatch every outbox row after the watermark; how many. ``store=False``: only the rows the
        notices carried, as long as they follow on from the watermark (a gap reads the outbox)."""
        if self._watermark is None:
            self._notices.clear()
            self._watermark = await self._last_id()
            return 0
        count = 0
        while self._notices:
            event = self._notices.popleft()
            if event.id <= self._watermark:
                continue  # read from the outbox already
            if event.id != self._watermark + 1:
                self._notices.clear()  # a gap: the outbox has it, and everything after
                store = True
                break
            self._watermark = event.id
            self._dispatch(event)
            count += 1
            self.stats.dispatched += 1
            self.stats.from_notices += 1
        if not store:
            return count
        while True:
            rows = await self._after(self._watermark, None)
            for event in rows:
                self._watermark = event.id
                self._dispatch(event)
            count += len(rows)
            self.stats.dispatched += len(rows)
            self.stats.store_reads += 1
            if len(rows) < self.page:
                return count

    async def _after(self, last_id: int, topics: frozenset[str] | None) -> list[BusEvent]:
        # Columns, not ORM entities: the pump reads once per event in every process.
        query = sa.select(*_EVENT_COLUMNS).where(OutboxEvent.id > last_id)
        if topics is not None:
            query = query.where(OutboxEvent.topic.in_(sorted(topics)))
        query = query.order_by(OutboxEvent.id).limit(self.page)
        async with self.sessionmaker() as session:
            return [to_event(row) for row in (await session.execute(query))]

    async def _last_id(self) -> int:
        async with self.sessionmaker() as session:
            return int((await session.execute(sa.select(sa.func.max(OutboxEvent.id)))).scalar() or 0)

    # --- LISTEN -------------------------------------------------------------------------------------

    def _notified(self, connection: Any, pid: int, channel: str, payload: object) -> None:
        self.stats.notifications += 1
        event = notice_event(payload)
        if event is None:
            self._read_store = True  # the relay's id, or a row too big to carry
        else:
            self._notices.append(event)
        self._pump_signal.set()

    async def _listen(self) -> None:
        """Keep one LISTEN connection; reconnect with backoff when it drops."""
        delay = 0.5
        while True:
            connection: asyncpg.Connection | None = None
            try:
                connection = await asyncpg.connect(asyncpg_dsn(self.database_url))
                lost = asyncio.Event()
                connection.add_termination_listener(_setter(lost))
                await connection.add_listener(CHANNEL, self._notified)
                self._listening.set()
                self._read_store = True  # catch up on whatever committed while not listening
                self._pump_signal.set()
                delay = 0.5
                await lost.wait()
                log.warning("gateway.bus.listen_lost")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("gateway.bus.listen_failed", error=f"{type(exc).__name__}: {exc}", retry_s=delay)
            finally:
                self._listening.clear()
                if connection is not None and not connection.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.shield(connection.close(timeout=2))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    # --- the relay ----------------------------------------------------------------------------------

    async def _relay(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.relay_interval_s):
                    await self._relay_signal.wait()
            self._relay_signal.clear()
            try:
                while await self.relay_once() >= self.page:
                    pass
            except Exception as exc:
                log.warning("gateway.bus.relay_failed", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.5)

    async def relay_once(self) -> int:
        """Claim unpublished rows, mark them published and announce the highest id; how many."""
        claim = (
            sa.select(OutboxEvent.id)
            .where(OutboxEvent.published_at.is_(None))
            .order_by(OutboxEvent.id)
            .limit(self.page)
        )
        if self.postgres:
            claim = claim.with_for_update(skip_locked=True)
        async with self.sessionmaker.begin() as session:
            ids = list((await session.execute(claim)).scalars())
            if not ids:
                return 0
            await session.execute(
                sa.update(OutboxEvent).where(OutboxEvent.id.in_(ids)).values(published_at=utcnow())
            )
            if self.postgres:
                # Delivered by PostgreSQL when this transaction commits, to every LISTENing process.
                await session.execute(sa.select(sa.func.pg_notify(CHANNEL, str(max(ids)))))
        self.stats.relayed += len(ids)
        if not self.postgres:
            self._read_store = True  # on PostgreSQL the producer's notice (or the relay's) wakes the pump
            self._pump_signal.set()
        return len(ids)


__all__ = [
    "CHANNEL",
    "SLOW_SUBSCRIBER_CLOSE_CODE",
    "BusStats",
    "EventBus",
    "SubscriberTooSlow",
    "asyncpg_dsn",
]
