"""Plumbing every vendor sandbox shares: options, fault injection, request counters, the admin API.

A sandbox is its vendor app wrapped by ``SandboxPlumbing`` (pure ASGI). The wrapper serves
``/__sandbox/faults`` and ``/__sandbox/counters`` itself and, for every other request, applies the faults
in force before the vendor app sees it. Vendor-shaped error bodies come from the sandbox's
``render_error`` so a 429 from the ERP looks like NetSuite's and a limit from the CRM is Salesforce's 403.

    app = SandboxPlumbing(vendor_app, render_error=netsuite_error, limits=Limits(concurrency_cap=15))

Admin API (JSON): ``GET|PUT|DELETE /__sandbox/faults`` (PUT merges the given fields; a ``limits`` object
in the body changes the enforced limits), ``GET|DELETE /__sandbox/counters``. Any other ``/__sandbox/...``
path goes to the vendor app for its own admin routes, uncounted and unfaulted.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any
from urllib.parse import unquote

import httpx
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

ADMIN_PREFIX = "/__sandbox"

#: render_error(status, vendor_code, message) -> a vendor-shaped response
ErrorRenderer = Callable[[int, str, str], Response]


@dataclass
class SandboxOptions:
    """How to build a sandbox. State lives in its own SQLite (``db_path``), never the gateway's store."""

    db_path: str = ":memory:"
    seed: int | None = 7  # None → empty (no demo firm)
    accounts: int = 200
    client_id: str = "p2c-demo"
    client_secret: str = "p2c-demo-secret"
    token_ttl_s: int = 3600
    limits: Limits | None = None  # None → the vendor's own defaults


@dataclass
class Limits:
    """Vendor limits a sandbox enforces; each vendor picks its defaults (NetSuite: cap 15;
    Harvest: 100 per 15 s)."""

    concurrency_cap: int | None = None
    rate_limit_requests: int | None = None
    rate_limit_window_s: float = 15.0
    request_budget: int | None = None  # Salesforce's rolling API allowance

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Faults:
    """Faults in force. Probabilities are per request; ``fail_records`` maps a needle (an id, an external
    id) to the status every request mentioning it in its path or body gets."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_rates: dict[str, float] = field(default_factory=dict)  # {"503": 0.1, "429": 0.05}
    timeout_rate: float = 0.0
    timeout_s: float = 30.0
    fail_records: dict[str, int] = field(default_factory=dict)
    budget_exhausted: bool = False
    retry_after_s: float = 1.0
    seed: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any], base: Faults | None = None) -> Faults:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(unknown)}")
        merged = asdict(base or cls())
        merged.update(data)
        faults = cls(**merged)
        for status in faults.error_rates:
            if not (status.isdigit() and 400 <= int(status) <= 599):
                raise ValueError(f"error_rates key {status!r} is not an HTTP error status")
        return faults


# An id starts with a digit (NetSuite/Harvest numbers, Salesforce key prefixes, query locators), is an
# external-id reference (``eid:...``) or is Salesforce-shaped (15/18 alphanumerics with a digit). Resource
# names that merely hold a digit (``oauth2``, ``Product2``, ``v62.0``) are not.
_ID_SEGMENT = re.compile(r"^(?:\d[\w:.\-]*|[\w.\-]*:[\w:.\-]+|(?=\D*\d)[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?)$")


def endpoint_key(method: str, path: str) -> str:
    """``GET /record/v1/customer/{id}`` — id-shaped path segments become ``{id}``."""
    parts = ["{id}" if _ID_SEGMENT.match(p) else p for p in path.split("/")]
    return f"{method} {'/'.join(parts)}"


class SandboxPlumbing:
    def __init__(self, app: ASGIApp, *, render_error: ErrorRenderer, limits: Limits | None = None) -> None:
        self.app = app
        self.render_error = render_error
        self.limits = limits or Limits()
        self.faults = Faults()
        self.counters: Counter[str] = Counter()
        self.in_flight = 0
        self.peak_in_flight = 0
        self.rejected: Counter[str] = Counter()
        self._window: deque[float] = deque()
        self._budget_used = 0
        self._rng = random.Random(0)

    # -- admin -----------------------------------------------------------------------------------
    def counters_body(self) -> dict[str, Any]:
        return {
            "total": sum(self.counters.values()),
            "by_endpoint": dict(sorted(self.counters.items())),
            "rejected": dict(self.rejected),
            "peak_in_flight": self.peak_in_flight,
            "budget_used": self._budget_used,
            "limits": self.limits.as_dict(),
        }

    async def _admin(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"][len(ADMIN_PREFIX) :]
        method = scope["method"]
        response: Response
        if path == "/faults" and method == "GET":
            response = JSONResponse(asdict(self.faults))
        elif path == "/faults" and method in ("PUT", "POST"):
            try:
                body = json.loads(await _read_body(receive) or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("body must be a JSON object")
                limits = body.pop("limits", None)
                faults = Faults.from_json(body, self.faults)
                # Validate both halves before applying either: a refused PUT changes nothing.
                new_limits = self.limits if limits is None else Limits(**{**self.limits.as_dict(), **limits})
                self.faults, self.limits = faults, new_limits
                self._rng = random.Random(self.faults.seed)
            except (ValueError, TypeError) as exc:
                response = JSONResponse({"error": str(exc)}, status_code=400)
            else:
                response = JSONResponse(asdict(self.faults))
        elif path == "/faults" and method == "DELETE":
            self.faults = Faults()
            response = JSONResponse(asdict(self.faults))
        elif path == "/counters" and method == "GET":
            response = JSONResponse(self.counters_body())
        elif path == "/counters" and method == "DELETE":
            self.counters.clear()
            self.rejected.clear()
            self.peak_in_flight = self.in_flight
            self._budget_used = 0
            response = JSONResponse(self.counters_body())
        else:
            # Vendor-specific admin routes (expire tokens, approve an entry, run billing ...) live in the
            # vendor app under the same prefix: not counted, not faulted.
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)

    # -- requests ----------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith(ADMIN_PREFIX):
            await self._admin(scope, receive, send)
            return
        key = endpoint_key(scope["method"], scope["path"])
        self.counters[key] += 1
        refusal = self._refusal()
        if refusal is not None:
            self.rejected[refusal[1]] += 1
            await refusal[0](scope, receive, send)
            return
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            await self._serve(scope, receive, send)
        finally:
            self.in_flight -= 1

    def _limit_response(self, code: str, message: str, status: int = 429) -> Response:
        response = self.render_error(status, code, message)
        response.headers["Retry-After"] = f"{max(1, round(self.faults.retry_after_s))}"
        return response

    def _refusal(self) -> tuple[Response, str] | None:
        limits, faults = self.limits, self.faults
        if limits.concurrency_cap is not None and self.in_flight >= limits.concurrency_cap:
            return self._limit_response("CONCURRENCY_LIMIT_EXCEEDED", "concurrency limit exceeded"), "cap"
        if limits.rate_limit_requests is not None:
            now = time.monotonic()
            while self._window and now - self._window[0] >= limits.rate_limit_window_s:
                self._window.popleft()
            if len(self._window) >= limits.rate_limit_requests:
                wait = limits.rate_limit_window_s - (now - self._window[0])
                response = self.render_error(429, "RATE_LIMITED", "rate limit exceeded")
                response.headers["Retry-After"] = str(max(1, int(wait + 0.999)))
                return response, "rate"
            self._window.append(now)
        self._budget_used += 1
        over_budget = limits.request_budget is not None and self._budget_used > limits.request_budget
        if faults.budget_exhausted or over_budget:
            return self._limit_response("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."), "budget"
        return None

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        faults = self.faults
        if faults.latency_ms or faults.jitter_ms:
            delay = faults.latency_ms + faults.jitter_ms * self._rng.random()
            await asyncio.sleep(delay / 1000)
        if faults.timeout_rate and self._rng.random() < faults.timeout_rate:
            await asyncio.sleep(faults.timeout_s)
        for status, rate in faults.error_rates.items():
            if rate and self._rng.random() < rate:
                code = {"429": "RATE_LIMITED", "403": "REQUEST_LIMIT_EXCEEDED"}.get(status, "INJECTED_FAULT")
                await self._limit_response(code, f"injected {status}", int(status))(scope, receive, send)
                return
        if faults.fail_records:
            body = await _read_body(receive)
            # Separators keep a needle from matching across the joins; the query is decoded so
            # ``eid:X`` matches although it travels as ``eid%3AX``.
            query = unquote(scope.get("query_string", b"").decode())
            haystack = "\n".join((scope["path"], query, body.decode("utf-8", "replace")))
            for needle, fail_status in faults.fail_records.items():
                if needle in haystack:
                    await self.render_error(
                        fail_status, "INJECTED_RECORD_FAILURE", f"record {needle} always fails"
                    )(scope, receive, send)
                    return
            receive = _replay(body)
        await self.app(scope, receive, send)


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


class SandboxAdmin:
    """Drives a sandbox's admin API from tests and benchmarks::

    admin = SandboxAdmin(httpx.AsyncClient(base_url="http://127.0.0.1:9001"))
    await admin.set_faults(latency_ms=20, error_rates={"503": 0.2})
    assert (await admin.counters())["total"] < 10
    """

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def set_faults(self, **faults: Any) -> dict[str, Any]:
        response = await self.client.put(f"{ADMIN_PREFIX}/faults", json=faults)
        response.raise_for_status()
        return dict(response.json())

    async def clear_faults(self) -> None:
        (await self.client.delete(f"{ADMIN_PREFIX}/faults")).raise_for_status()

    async def counters(self) -> dict[str, Any]:
        response = await self.client.get(f"{ADMIN_PREFIX}/counters")
        response.raise_for_status()
        return dict(response.json())

    async def reset_counters(self) -> None:
        (await self.client.delete(f"{ADMIN_PREFIX}/counters")).raise_for_status()
