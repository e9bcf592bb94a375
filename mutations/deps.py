"""What every flow needs, built once by the gateway runtime (or a worker, or a test) and passed down.

    deps = FlowDeps(crm=crm, psa=psa, erp=erp, sessionmaker=sessionmaker, mapping=demo_mapping())
    result = await provision_engagement(deps, "006000000000002AAA", principal=p, correlation_id="c-1")

Flows never build clients or engines themselves: the caller owns their lifecycle (``aclose``, dispose).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical.errors import ConfigurationError
from canonical.mapping import MappingSet
from store.models import utcnow
from store.repositories.idempotency import DEFAULT_TTL
from subgraphs.crm.client import CrmClient
from subgraphs.erp.client import ErpClient
from subgraphs.erp_tryton.client import TrytonClient
from subgraphs.psa.client import PsaClient

Clock = Callable[[], datetime]
Sessions = async_sessionmaker[AsyncSession]


@dataclass(frozen=True)
class FlowDeps:
    """The connectors, the store, the mapping in force and a clock (aware UTC; tests pass a fixed one).

    ``idempotency_ttl`` is the published retention of idempotency keys (Stripe: at least 24 h).

    The ERP seam: ``erp_by_entity`` says which ERP books each legal entity ("netsuite", the default, or
    "tryton"); ``tryton`` is the Tryton connector when any entity uses it. Flows ask ``tryton_for(entity)``
    and take the Tryton adapter (``mutations/*/tryton.py``) when it answers a client.
    """

    crm: CrmClient
    psa: PsaClient
    erp: ErpClient
    sessionmaker: Sessions
    mapping: MappingSet
    clock: Clock = utcnow
    idempotency_ttl: timedelta = DEFAULT_TTL
    tryton: TrytonClient | None = None
    erp_by_entity: Mapping[str, str] = field(default_factory=dict)

    def today(self) -> date:
        return self.clock().date()

    def erp_of(self, legal_entity: str | None) -> str:
        return self.erp_by_entity.get(legal_entity or "", "netsuite")

    def tryton_for(self, legal_entity: str | None) -> TrytonClient | None:
        """The Tryton connector when ``legal_entity`` books in Tryton, else None (NetSuite: ``erp``)."""
        if self.erp_of(legal_entity) != "tryton":
            return None
        if self.tryton is None:
            raise ConfigurationError(
                f"legal entity {legal_entity} books in Tryton but no Tryton connector is configured "
                "(P2C_TRYTON__BASE_URL)"
            )
        return self.tryton

    def tryton_entities(self) -> list[str]:
        return sorted(code for code, erp in self.erp_by_entity.items() if erp == "tryton")


__all__ = ["Clock", "FlowDeps", "Sessions"]
