"""What every flow needs, built once by the gateway runtime (or a worker, or a test) and passed down.

    deps = FlowDeps(crm=crm, psa=psa, erp=erp, sessionmaker=sessionmaker, mapping=demo_mapping())
    result = await provision_engagement(deps, "006000000000002AAA", principal=p, correlation_id="c-1")

Flows never build clients or engines themselves: the caller owns their lifecycle (``aclose``, dispose).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical.mapping import MappingSet
from store.models import utcnow
from store.repositories.idempotency import DEFAULT_TTL
from subgraphs.crm.client import CrmClient
from subgraphs.erp.client import ErpClient
from subgraphs.psa.client import PsaClient

Clock = Callable[[], datetime]
Sessions = async_sessionmaker[AsyncSession]


@dataclass(frozen=True)
class FlowDeps:
    """The connectors, the store, the mapping in force and a clock (aware UTC; tests pass a fixed one).

    ``idempotency_ttl`` is the published retention of idempotency keys (Stripe: at least 24 h).
    """

    crm: CrmClient
    psa: PsaClient
    erp: ErpClient
    sessionmaker: Sessions
    mapping: MappingSet
    clock: Clock = utcnow
    idempotency_ttl: timedelta = DEFAULT_TTL

    def today(self) -> date:
        return self.clock().date()


__all__ = ["Clock", "FlowDeps", "Sessions"]
