"""Liveness and readiness.

``GET /healthz`` says the process is up; it touches nothing else. ``GET /readyz`` says whether this
process can do useful work now — store reachable, schema at head, every system answering::

    200 {"status": "ready", "checks": {"store": {"ok": true}, "migrations": {"ok": true, "revision": "…"},
         "crm": {"ok": true, "embedded": true}, "psa": {...}, "erp": {...}}}
    503 {"status": "not_ready", "checks": {..., "erp": {"ok": false, "error": "erp: connection refused"}}}

Checks run concurrently, each bounded by ``readiness_timeout_s``; errors are one-line messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from canonical.errors import GatewayError
from gateway.logs import get_logger, redact_text
from gateway.runtime import Runtime, get_runtime
from gateway.runtime.systems import SystemRuntime
from store.db import check_connection
from store.migrate import current_revision, head_revision

log = get_logger("gateway.health")
Check = dict[str, Any]
_MAX_ERROR = 300


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    runtime = get_runtime(request)
    checks = await run_checks(runtime)
    ready = all(check["ok"] for check in checks.values())
    if not ready:
        failing = {name: check.get("error") for name, check in checks.items() if not check["ok"]}
        log.warning("gateway.readiness.failed", checks=failing)
    body = {"status": "ready" if ready else "not_ready", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503)


async def run_checks(runtime: Runtime) -> dict[str, Check]:
    timeout = runtime.settings.readiness_timeout_s
    probes: dict[str, Callable[[], Awaitable[Check]]] = {
        "store": lambda: check_store(runtime),
        "migrations": lambda: check_migrations(runtime),
    }
    for name, system in runtime.systems.items():
        probes[name] = _system_probe(system)
    results = await asyncio.gather(*(_bounded(probe, timeout) for probe in probes.values()))
    checks = dict(zip(probes, results, strict=True))
    for name, system in runtime.systems.items():
        checks[name]["embedded"] = system.embedded
    return checks


async def check_store(runtime: Runtime) -> Check:
    await check_connection(runtime.engine)
    return {"ok": True}


async def check_migrations(runtime: Runtime) -> Check:
    revision = await current_revision(runtime.engine)
    head = head_revision()
    if revision != head:
        return {"ok": False, "revision": revision, "head": head, "error": "store schema is not at head"}
    return {"ok": True, "revision": revision}


def _system_probe(system: SystemRuntime) -> Callable[[], Awaitable[Check]]:
    async def probe() -> Check:
        if system.client is None:
            return {"ok": False, "error": system.unavailable or "no connector"}
        result = await system.client.ping()
        if result is False:
            return {"ok": False, "error": "ping failed"}
        return {"ok": True}

    return probe


async def _bounded(probe: Callable[[], Awaitable[Check]], limit_s: float) -> Check:
    try:
        async with asyncio.timeout(limit_s):
            return await probe()
    except TimeoutError:
        return {"ok": False, "error": f"no answer within {limit_s:g}s"}
    except Exception as exc:  # a readiness probe reports every failure, it never raises
        return {"ok": False, "error": describe_error(exc)}


def describe_error(exc: BaseException) -> str:
    message = exc.message if isinstance(exc, GatewayError) else f"{type(exc).__name__}: {exc}"
    line = " ".join(redact_text(message).split())
    return line if len(line) <= _MAX_ERROR else line[: _MAX_ERROR - 1] + "…"
