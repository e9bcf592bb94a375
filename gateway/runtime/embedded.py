"""Embedded mode: a system without ``base_url`` is served by its vendor sandbox inside this process.

The connector reaches the sandbox through ``httpx.ASGITransport`` (no socket), and the same sandbox is
mounted under ``/sandbox/<system>`` so a person can ``curl`` it. Sandbox packages are optional at
import time: when one is absent the gateway still starts and readiness names the missing system.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any, cast

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.types import SystemName
from subgraphs.common.config import SystemConfig

SandboxFactory = Callable[[Any], ASGIApp]


def import_optional(module: str) -> ModuleType | None:
    """The module, or None when it (or a package above it) is not installed.

    A module that exists but fails to import because of *its* missing dependency still raises.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and (module == exc.name or module.startswith(exc.name + ".")):
            return None
        raise


def embedded_base_url(name: SystemName) -> str:
    return f"http://{name}.sandbox"


def sandbox_options(
    *, seed: int | None, accounts: int, config: SystemConfig | None = None, db_path: str = ":memory:"
) -> Any:
    """``SandboxOptions`` seeding the demo firm; credentials match what the connector will send."""
    from subgraphs.common.sandbox import SandboxOptions

    if config is None:
        return SandboxOptions(db_path=db_path, seed=seed, accounts=accounts)
    return SandboxOptions(
        db_path=db_path,
        seed=seed,
        accounts=accounts,
        client_id=config.client_id,
        client_secret=config.client_secret.get_secret_value(),
    )


def load_sandbox_factory(name: SystemName) -> SandboxFactory | None:
    module = import_optional(f"subgraphs.{name}.sandbox")
    factory = getattr(module, "create_app", None) if module is not None else None
    return cast(SandboxFactory, factory) if callable(factory) else None


class SandboxMount:
    """ASGI app behind ``Mount("/sandbox/<name>")``: forwards to the sandbox the running app created.

    The lookup happens per request because sandboxes are created by the lifespan, after routing is
    fixed. The sandbox sees the path below the mount point, as if it were served on its own.
    """

    def __init__(self, name: SystemName, lookup: Callable[[Scope, SystemName], ASGIApp | None]) -> None:
        self.name = name
        self.lookup = lookup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sandbox = self.lookup(scope, self.name)
        if sandbox is None:
            raise HTTPException(404, detail=f"{self.name} is not served by an in-process sandbox")
        root_path: str = scope.get("root_path", "")
        path: str = scope["path"]
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :] or "/"
        await sandbox({**scope, "path": path, "raw_path": path.encode()}, receive, send)
