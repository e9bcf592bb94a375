"""Cross-cutting HTTP behaviour as httpx transports, so connectors don't each carry a copy.

``RetryTransport`` retries what is safe to retry (policy as data, like dlt's retry helper);
``ConcurrencyLimit`` caps in-flight requests per system (NetSuite shares one cap across all integrations
of an account); ``DeadlineTransport`` bounds one attempt in wall-clock time. Stack them over any
transport — a pooled ``httpx.AsyncHTTPTransport`` in production, an ``httpx.ASGITransport`` for an
in-process sandbox, a ``MockTransport`` in tests::

    transport = build_transport(RetryPolicy(), 8, timeout_s=15.0)  # retry → cap → deadline → pool
    client = httpx.AsyncClient(transport=transport, base_url="https://erp.example")

Transports never raise gateway errors: after the last attempt they hand back the last response (or re-raise
the last transport exception) and the connector's ``errors.py`` translates it, exactly once.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from subgraphs.common.config import RetryConfig

#: Request extension a connector sets on a POST that is safe to repeat (a query, a token request, a
#: create that carries an idempotency key). PUT/PATCH/DELETE/GET are idempotent by definition here:
#: our vendor writes through them are upserts by external id.
IDEMPOTENT = "p2c_idempotent"
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})

Sleep = Callable[[float], Awaitable[None]]
RetryHook = Callable[[httpx.Request, str, float], None]


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), None if absent/garbled."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class RetryPolicy:
    """Which failures are retried, how often and how long.

    ``is_limit`` lets a vendor flag responses that are rate limits although their status says otherwise
    (Salesforce answers an exhausted API budget with 403 REQUEST_LIMIT_EXCEEDED); the body has been read
    when it is called.
    """

    attempts: int = 5
    statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})
    exceptions: tuple[type[Exception], ...] = (httpx.TransportError,)
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 10.0
    max_retry_after_s: float = 60.0
    budget_s: float = 60.0
    is_limit: Callable[[httpx.Response], bool] | None = None
    jitter: float = 0.25

    @classmethod
    def from_config(
        cls, config: RetryConfig, *, is_limit: Callable[[httpx.Response], bool] | None = None
    ) -> RetryPolicy:
        return cls(
            attempts=config.attempts,
            backoff_initial_s=config.backoff_initial_s,
            backoff_max_s=config.backoff_max_s,
            max_retry_after_s=config.max_retry_after_s,
            budget_s=config.budget_s,
            is_limit=is_limit,
        )

    def backoff(self, attempt: int, rng: random.Random) -> float:
        base = min(self.backoff_max_s, self.backoff_initial_s * 2.0 ** (attempt - 1))
        return float(base * (1 + self.jitter * rng.random()))

    def retryable_request(self, request: httpx.Request) -> bool:
        return request.method in IDEMPOTENT_METHODS or bool(request.extensions.get(IDEMPOTENT))


@dataclass
class RetryStats:
    retries: int = 0
    limit_waits: int = 0
    waited_s: float = 0.0


class RetryTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        policy: RetryPolicy | None = None,
        *,
        sleep: Sleep = asyncio.sleep,
        on_retry: RetryHook | None = None,
        seed: int | None = None,
    ) -> None:
        self.inner = inner
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.on_retry = on_retry
        self.stats = RetryStats()
        self._rng = random.Random(seed)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        policy = self.policy
        deadline = time.monotonic() + policy.budget_s
        can_retry = policy.retryable_request(request)
        attempt = 0
        while True:
            attempt += 1
            last = attempt >= policy.attempts or not can_retry
            try:
                response = await self.inner.handle_async_request(request)
            except policy.exceptions as exc:
                wait = policy.backoff(attempt, self._rng)
                if last or time.monotonic() + wait > deadline:
                    raise
                await self._wait(request, type(exc).__name__, wait, limited=False)
                continue
            limited = response.status_code == 429
            if not limited and policy.is_limit is not None and response.status_code in (400, 403):
                await response.aread()
                limited = policy.is_limit(response)
            if not (limited or response.status_code in policy.statuses):
                response.extensions["p2c_attempts"] = attempt
                return response
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            wait = retry_after if retry_after is not None else policy.backoff(attempt, self._rng)
            if (
                last
                or (retry_after is not None and retry_after > policy.max_retry_after_s)
                or time.monotonic() + wait > deadline
            ):
                response.extensions["p2c_attempts"] = attempt
                return response
            await response.aclose()
            await self._wait(request, f"status {response.status_code}", wait, limited=limited)

    async def _wait(self, request: httpx.Request, reason: str, wait: float, *, limited: bool) -> None:
        self.stats.retries += 1
        self.stats.waited_s += wait
        if limited:
            self.stats.limit_waits += 1
        if self.on_retry is not None:
            self.on_retry(request, reason, wait)
        await self.sleep(wait)

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class ConcurrencyStats:
    in_flight: int = 0
    peak: int = 0
    requests: int = 0
    by_endpoint: dict[str, int] = field(default_factory=dict)


class ConcurrencyLimit(httpx.AsyncBaseTransport):
    """At most ``limit`` requests in flight through this transport; the rest wait their turn."""

    def __init__(self, inner: httpx.AsyncBaseTransport, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.inner = inner
        self.limit = limit
        self._semaphore = asyncio.Semaphore(limit)
        self.stats = ConcurrencyStats()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        async with self._semaphore:
            stats = self.stats
            stats.in_flight += 1
            stats.requests += 1
            stats.peak = max(stats.peak, stats.in_flight)
            try:
                response = await self.inner.handle_async_request(request)
                # Read inside the slot: a streamed body still occupies the vendor's connection.
                await response.aread()
                return response
            finally:
                stats.in_flight -= 1

    async def aclose(self) -> None:
        await self.inner.aclose()


class DeadlineTransport(httpx.AsyncBaseTransport):
    """At most ``timeout_s`` of wall-clock time per attempt, body included, else ``httpx.ReadTimeout``.

    ``httpx.ASGITransport`` runs the app inline and ignores httpx's timeouts, so without this a hanging
    in-process sandbox would hang the gateway. Over real HTTP it is the backstop for what httpx's
    per-operation timeouts let through (connect, write and every read each get the full timeout, so a
    trickling body never trips them). Below the concurrency cap, so waiting for a slot does not count.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, timeout_s: float) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.inner = inner
        self.timeout_s = timeout_s

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self.inner.handle_async_request(request)
                try:
                    await response.aread()
                except BaseException:
                    await response.aclose()
                    raise
                return response
        except TimeoutError as exc:
            raise httpx.ReadTimeout(f"no response within {self.timeout_s}s", request=request) from exc

    async def aclose(self) -> None:
        await self.inner.aclose()


def pooled_transport(max_concurrency: int) -> httpx.AsyncHTTPTransport:
    """Real HTTP with as many pooled connections as the concurrency cap lets through."""
    return httpx.AsyncHTTPTransport(
        limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency)
    )


def build_transport(
    policy: RetryPolicy,
    max_concurrency: int,
    transport: httpx.AsyncBaseTransport | None = None,
    *,
    timeout_s: float | None = None,
    on_retry: RetryHook | None = None,
    sleep: Sleep = asyncio.sleep,
) -> RetryTransport:
    """The standard stack: retries outside, the concurrency cap inside (a retry waits for a slot), and
    with ``timeout_s`` a per-attempt deadline around ``transport`` (default: a pooled HTTP transport).

    Connectors pass their ``timeout_s`` whatever the transport, so a sandbox runs the same stack as
    production; the deadline equal to the httpx timeout is harmless, both end as an
    ``httpx.TimeoutException``. A vendor layer that waits on its own (a rate budget) belongs between the
    cap and the deadline; such a connector wraps ``DeadlineTransport`` itself and passes ``timeout_s=None``.
    """
    base = transport or pooled_transport(max_concurrency)
    if timeout_s is not None:
        base = DeadlineTransport(base, timeout_s)
    return RetryTransport(ConcurrencyLimit(base, max_concurrency), policy, on_retry=on_retry, sleep=sleep)
