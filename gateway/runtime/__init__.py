"""What one gateway process holds for its whole life, built by the app's lifespan.

    Runtime
    ├── settings        the validated Settings it was started with
    ├── engine          store AsyncEngine (one pool per process)
    ├── sessionmaker    async_sessionmaker bound to it
    ├── systems         {"crm" | "psa" | "erp": SystemRuntime(client, sandbox, config, ...)}
    ├── mapping         the loaded mapping (shipped demo mapping unless P2C_MAPPING_PATH)
    ├── authenticator   the one bearer-token Authenticator (it holds the JWKS cache)
    ├── read_cache      cross-request read caches of the graph (resolvers.cache.ReadCache)
    ├── bus             the event bus: outbox → subscriptions, LISTEN/NOTIFY across processes (gateway.bus)
    └── metrics         this app's Prometheus instruments

In the embedded demo (all three systems on in-process sandboxes) start-up also runs backfill once, so the
store holds the demo firm's cross-references the way a real firm's does after its first day; when a legal
entity books in Tryton, its cut-over day follows (``tryton_demo``: pending deals provisioned there, time
posted, invoices raised and written back).

Request code reaches it with ``get_runtime(request)``, never through a module-level global.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection

from gateway.auth import AuthConfig, Authenticator
from gateway.bus import EventBus
from gateway.metrics import Metrics
from gateway.runtime.demo import backfill_demo
from gateway.runtime.startup import load_mapping
from gateway.runtime.systems import SystemClient, SystemRuntime, build_system, build_tryton
from gateway.runtime.tryton_demo import tryton_day_one
from gateway.settings import Settings
from gateway.types import SYSTEMS, SystemName
from resolvers.cache import ReadCache
from store.db import make_engine, make_sessionmaker


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    systems: dict[SystemName, SystemRuntime]
    metrics: Metrics
    mapping: Any  # canonical.mapping's loaded mapping; None while that package is not installed
    authenticator: Authenticator
    read_cache: ReadCache = field(default_factory=ReadCache)
    bus: EventBus | None = None  # started by open_runtime
    tryton: Any = None  # the Tryton connector when a legal entity books in Tryton (issue 9)
    cut_over: list[Any] = field(default_factory=list)  # the demo's Tryton cut-over day, per entity

    def client(self, name: SystemName) -> SystemClient:
        """The connector of ``name``; raises ``LookupError`` with the reason when there is none."""
        system = self.systems[name]
        if system.client is None:
            raise LookupError(f"{name}: {system.unavailable or 'no connector'}")
        return system.client


@asynccontextmanager
async def open_runtime(settings: Settings, metrics: Metrics) -> AsyncIterator[Runtime]:
    """Build everything a process needs and close it all, in reverse order, on exit."""
    async with AsyncExitStack() as stack:
        mapping = load_mapping(settings)
        authenticator = Authenticator(AuthConfig.from_settings(settings))
        engine = make_engine(settings.database_url)
        stack.push_async_callback(engine.dispose)
        systems: dict[SystemName, SystemRuntime] = {}
        for name in SYSTEMS:
            system = build_system(name, settings)
            if system.client is not None:
                stack.push_async_callback(system.client.aclose)
            systems[name] = system
        tryton = build_tryton(settings)
        if tryton is not None:
            stack.push_async_callback(tryton.aclose)
        runtime = Runtime(
            settings=settings,
            engine=engine,
            sessionmaker=make_sessionmaker(engine),
            systems=systems,
            metrics=metrics,
            mapping=mapping,
            authenticator=authenticator,
            read_cache=ReadCache(psa_ttl_s=settings.psa.aggregate_ttl_s),
            tryton=tryton,
        )
        runtime.bus = EventBus(runtime.sessionmaker, settings.database_url)
        await runtime.bus.start()
        stack.push_async_callback(runtime.bus.close)
        if all(system.embedded for system in systems.values()):
            await backfill_demo(runtime)
            if tryton is not None:  # an entity books in Tryton: its cut-over day (tryton_demo)
                runtime.cut_over = await tryton_day_one(runtime)
        yield runtime


def get_runtime(connection: HTTPConnection) -> Runtime:
    """The runtime of the app serving this request (set by the lifespan)."""
    runtime = getattr(connection.app.state, "runtime", None)
    if not isinstance(runtime, Runtime):
        raise RuntimeError("the gateway runtime is not started (was the app's lifespan run?)")
    return runtime


__all__ = ["Runtime", "SystemClient", "SystemRuntime", "get_runtime", "open_runtime"]
