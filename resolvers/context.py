"""The per-request context every resolver receives as ``info.context``.

The gateway builds one per HTTP request or WebSocket operation (its GraphQL view's ``get_context``)::

    context = build_context(principal=principal, crm=crm, psa=psa, erp=erp,
                            sessionmaker=sessionmaker, correlation_id=request_id)
    result = await schema.execute(query, context_value=context)

Clients, the sessionmaker and the ``ReadCache`` (``cache=``, one per process, built by the gateway runtime:
upstream aggregates and cross-references kept a few seconds across requests, see ``resolvers.cache``) are
long-lived and shared; the ``Loaders`` are new every time.

``batching=False`` is the naive resolver variant the read benchmark compares against: every loader is
built with aiodataloader's ``batch=False``, so each key costs its own upstream call (per-request caching
stays, so asking twice for one key still costs one call). Never use it to serve traffic::

    naive = build_context(principal=p, crm=crm, psa=psa, erp=erp, sessionmaker=sm, batching=False)
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from strawberry.types import Info as StrawberryInfo

from canonical.analytics import HealthThresholds
from canonical.principal import Principal
from resolvers.cache import ReadCache
from resolvers.loaders import Loaders
from subgraphs.crm.client import CrmClient
from subgraphs.erp.client import ErpClient
from subgraphs.psa.client import PsaClient


@dataclass
class Context:
    principal: Principal
    crm: CrmClient
    psa: PsaClient
    erp: ErpClient
    sessionmaker: async_sessionmaker[AsyncSession]
    loaders: Loaders
    correlation_id: str
    as_of: date
    thresholds: HealthThresholds = field(default_factory=HealthThresholds)
    tryton: Any = None  # the Tryton connector; flows route a Tryton entity's ERP steps to it
    erp_by_entity: Mapping[str, str] = field(default_factory=dict)  # legal entity → netsuite | tryton


Info = StrawberryInfo[Context, None]


class LazyLoaders:
    """``Loaders`` built on first attribute access.

    A streaming connection (WebSocket, SSE) gets its context once and mostly only subscribes: the
    subscription resolvers read the event bus, never a loader, so building ~40 DataLoaders per connection
    costs CPU at connect and memory for nothing. An operation that does read (a query over the WebSocket)
    builds them then, once per connection, exactly as before.
    """

    __slots__ = ("_build", "_loaders")

    def __init__(self, build: Callable[[], Loaders]) -> None:
        self._build = build
        self._loaders: Loaders | None = None

    def __getattr__(self, name: str) -> Any:
        loaders = self._loaders
        if loaders is None:
            loaders = self._loaders = self._build()
        return getattr(loaders, name)


def build_context(
    *,
    principal: Principal,
    crm: CrmClient,
    psa: PsaClient,
    erp: ErpClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    correlation_id: str | None = None,
    as_of: date | None = None,
    thresholds: HealthThresholds | None = None,
    batching: bool = True,
    cache: ReadCache | None = None,
    lazy_loaders: bool = False,
    tryton: Any = None,
    erp_by_entity: Mapping[str, str] | None = None,
) -> Context:
    """A context with fresh loaders. ``as_of`` defaults to today: the date aging and DSO count from.

    ``lazy_loaders``: build them on first use (streaming connections, see ``LazyLoaders``)."""
    day = as_of or date.today()
    limits = thresholds or HealthThresholds()

    def loaders() -> Loaders:
        return Loaders(
            crm, psa, erp, sessionmaker, as_of=day, batching=batching, cache=cache, thresholds=limits,
            tryton=tryton,
        )

    return Context(
        principal=principal,
        crm=crm,
        psa=psa,
        erp=erp,
        sessionmaker=sessionmaker,
        loaders=cast(Loaders, LazyLoaders(loaders)) if lazy_loaders else loaders(),
        correlation_id=correlation_id or uuid.uuid4().hex,
        as_of=day,
        thresholds=limits,
        tryton=tryton,
        erp_by_entity=dict(erp_by_entity or {}),
    )
