"""One connector (and, in embedded mode, one sandbox) per system for the life of the process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, cast

import httpx
from starlette.types import ASGIApp

from canonical.errors import ConfigurationError
from gateway.logs import get_logger
from gateway.runtime.embedded import (
    embedded_base_url,
    import_optional,
    load_sandbox_factory,
    sandbox_options,
)
from gateway.settings import Settings
from gateway.types import SystemName
from subgraphs.common.config import SystemConfig
from subgraphs.common.transport import ObservedTransport, pooled_transport

log = get_logger("gateway.runtime")

_CLIENT_CLASSES: dict[SystemName, str] = {"crm": "CrmClient", "psa": "PsaClient", "erp": "ErpClient"}


class SystemClient(Protocol):
    """What the gateway shell needs of a connector; resolvers and flows use the concrete class."""

    async def ping(self) -> object: ...

    async def aclose(self) -> None: ...


class ClientFactory(Protocol):
    def from_config(self, config: Any, transport: httpx.AsyncBaseTransport | None = None) -> SystemClient: ...


@dataclass
class SystemRuntime:
    name: SystemName
    config: SystemConfig  # as the connector sees it: base_url filled in when embedded
    embedded: bool
    client: SystemClient | None = None
    sandbox: ASGIApp | None = None
    unavailable: str | None = None  # why there is no client, for readiness and logs


def load_client_factory(name: SystemName) -> ClientFactory | None:
    module = import_optional(f"subgraphs.{name}.client")
    factory = getattr(module, _CLIENT_CLASSES[name], None) if module is not None else None
    return cast(ClientFactory, factory) if factory is not None else None


def build_system(name: SystemName, settings: Settings) -> SystemRuntime:
    """The connector for ``name``, over the vendor's URL or over its in-process sandbox."""
    config = settings.system(name)
    embedded = config.base_url is None
    system = SystemRuntime(name=name, config=config, embedded=embedded)
    transport: httpx.AsyncBaseTransport | None = None
    if embedded:
        try:
            factory = load_sandbox_factory(name)
            if factory is not None:
                options = sandbox_options(
                    seed=settings.demo_seed, accounts=settings.demo_accounts, config=config
                )
                system.sandbox = factory(options)
        except Exception as exc:
            # A broken sandbox must not take the whole demo down: the gateway serves what it can
            # and /readyz names the system that failed.
            system.unavailable = f"sandbox failed to start: {type(exc).__name__}: {exc}"
            log.error("gateway.sandbox.failed", system=name, reason=system.unavailable)
            log.debug("gateway.sandbox.failed.trace", exc_info=True, system=name)
            return system
        if system.sandbox is None:
            system.unavailable = f"sandbox not available (no subgraphs.{name}.sandbox.create_app)"
            log.warning("gateway.sandbox.unavailable", system=name, reason=system.unavailable)
            return system
        system.config = config = config.model_copy(update={"base_url": embedded_base_url(name)})
        transport = httpx.ASGITransport(app=system.sandbox)
        log.info(
            "gateway.sandbox.started", system=name, seed=settings.demo_seed, accounts=settings.demo_accounts
        )

    try:
        client_factory = load_client_factory(name)
        if client_factory is None:
            system.unavailable = (
                f"connector not available (no subgraphs.{name}.client.{_CLIENT_CLASSES[name]})"
            )
            log.warning("gateway.connector.unavailable", system=name, reason=system.unavailable)
            return system
        # The base of the connector's stack, named after the system: metrics and spans per attempt.
        base = transport if transport is not None else pooled_transport(config.max_concurrency)
        system.client = client_factory.from_config(config, transport=ObservedTransport(base, name))
    except Exception as exc:  # same reasoning as for the sandbox: report, do not crash
        system.unavailable = f"connector failed to start: {type(exc).__name__}: {exc}"
        log.error("gateway.connector.failed", system=name, reason=system.unavailable)
        log.debug("gateway.connector.failed.trace", exc_info=True, system=name)
    return system


def build_tryton(settings: Settings) -> Any:
    """The Tryton connector when a legal entity books in Tryton (``P2C_LEGAL_ENTITIES__<code>__ERP``), else
    None. Tryton has no in-process sandbox: settings already refused a Tryton entity without a base URL."""
    if "tryton" not in settings.erp_by_entity().values():
        return None
    module = import_optional("subgraphs.erp_tryton.client")
    if module is None:
        raise ConfigurationError("a legal entity books in Tryton but subgraphs.erp_tryton is not installed")
    log.info("gateway.connector.tryton", base_url=settings.tryton.base_url, database=settings.tryton.database)
    return module.TrytonClient.from_config(settings.tryton)
