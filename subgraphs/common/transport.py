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

``ObservedTransport`` names the system and is what the gateway hands a connector as its base transport: it
times every attempt, names its endpoint by template (``GET /v2/projects/{id}`` — never a raw URL, whose ids
and query string may carry secrets) and reports it to the process's ``UpstreamObserver``s (the gateway's
Prometheus instruments) and, when tracing is on, as an OpenTelemetry client span. With no observer and no
tracer it costs one check per request::

    add_observer(metrics)                       # the gateway's lifespan, or `p2c worker --metrics-port`
    set_tracer(provider.get_tracer("p2c.upstream"))
    client = ErpClient.from_config(config, transport=ObservedTransport(pooled_transport(8), "erp"))
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

import httpx
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from subgraphs.common.config import RetryConfig

#: Request extension a connector sets on a POST that is safe to repeat (a query, a token request, a
#: create that carries an idempotency key). PUT/PATCH/DELETE/GET are idempotent by definition here:
#: our vendor writes through them are upserts by external id.
IDEMPOTENT = "p2c_idempotent"
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})

#: Request extensions the layers of the stack leave for each other: the attempt number (set by
#: ``RetryTransport`` before each try), the attempt's deadline on the loop clock (``DeadlineTransport``) and
#: the system and endpoint an ``ObservedTransport`` saw (read back when the retry layer waits).
ATTEMPT: Final = "p2c_attempt"
_DEADLINE_AT: Final = "p2c_deadline_at"
_OBSERVED: Final = "p2c_observed"

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
            request.extensions[ATTEMPT] = attempt
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
        observed = request.extensions.get(_OBSERVED)
        if observed is not None:
            cause = "rate_limited" if limited else ("status" if reason.startswith("status") else "error")
            for observer in _observers:
                observer.upstream_retry(observed[0], observed[1], cause, wait)
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
    """At most ``limit`` requests in flight through this transport; the rest wait their turn. ``resize``
    moves the limit at run time (a worker's share of an account-wide cap, as workers come and go)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.inner = inner
        self.limit = limit
        self._semaphore = asyncio.Semaphore(limit)
        self._withheld = 0  # slots a smaller limit still has to take back from the semaphore
        self.stats = ConcurrencyStats()

    def resize(self, limit: int) -> None:
        """Requests in flight finish; a smaller limit takes their slots back as the next requests start."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        change, self.limit = limit - self.limit, limit
        if change < 0:
            self._withheld -= change
            return
        paid = min(change, self._withheld)  # a grow first cancels what a shrink has not taken back yet
        self._withheld -= paid
        for _ in range(change - paid):
            self._semaphore.release()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self._semaphore.acquire()
        while self._withheld:  # the limit shrank: this slot is one it takes back
            self._withheld -= 1
            await self._semaphore.acquire()
        try:
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
        finally:
            self._semaphore.release()

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
        # For an ObservedTransport below: a cancellation at this instant is our timeout, not the caller's.
        request.extensions[_DEADLINE_AT] = asyncio.get_running_loop().time() + self.timeout_s
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


# --- observation: metrics hooks and tracing ----------------------------------------------------------------


class UpstreamObserver(Protocol):
    """What a process wants to know of its upstream traffic (the gateway's ``Metrics`` implements it).

    ``status`` is the HTTP status as text, or ``timeout`` / ``transport_error`` / ``cancelled``; ``cause`` of
    a retry is ``rate_limited`` (429 or a vendor's limit signal), ``status`` (a retryable 5xx) or ``error``
    (a transport error). Called on the event loop, once per attempt: keep it to microseconds.
    """

    def upstream_request(
        self, system: str, endpoint: str, status: str, attempt: int, duration_s: float
    ) -> None: ...

    def upstream_retry(self, system: str, endpoint: str, cause: str, wait_s: float) -> None: ...


_observers: tuple[UpstreamObserver, ...] = ()
_tracer: Tracer | None = None


def add_observer(observer: UpstreamObserver) -> None:
    """Report this process's upstream attempts to ``observer`` too (process-wide, like a log handler)."""
    global _observers
    _observers = (*_observers, observer)


def remove_observer(observer: UpstreamObserver) -> None:
    global _observers
    _observers = tuple(o for o in _observers if o is not observer)


def set_tracer(tracer: Tracer | None) -> None:
    """Trace each upstream attempt with ``tracer``; None (the default) turns upstream spans off."""
    global _tracer
    _tracer = tracer


# A path segment kept verbatim in an endpoint template: a word, maybe with one digit (``time_entries``,
# ``Invoice__c``, ``!transform``, ``oauth2``), an API version (``v2``, ``v62.0``) or a Salesforce custom
# name (``P2C_Id__c``). Anything else — numbers, UUIDs, Salesforce ids, query locators — becomes ``{id}``;
# ``eid:<x>`` keeps its prefix.
_LITERAL: Final = re.compile(
    r"!?[A-Za-z_]{1,64}\d?|v\d{1,3}(?:\.\d{1,3})?|[A-Za-z][A-Za-z0-9_]{0,60}__[a-z]{1,3}"
)
_TEMPLATES: dict[tuple[str, str], str] = {}
_TEMPLATES_MAX: Final = 4096
OTHER_ENDPOINT: Final = "other"


def endpoint_template(method: str, path: str) -> str:
    """``("PUT", "/services/rest/record/v1/customer/eid:6f1c…")`` → ``"PUT /services/rest/record/v1/customer/
    eid:{id}"``. The query string is dropped (a SOQL query, a token may ride in it)."""
    key = (method, path)
    template = _TEMPLATES.get(key)
    if template is not None:
        return template
    parts: list[str] = []
    for segment in path.split("/"):
        if not segment or _LITERAL.fullmatch(segment):
            parts.append(segment)
        elif segment.startswith("eid:"):
            parts.append("eid:{id}")
        else:
            parts.append("{id}")
    template = f"{method} {'/'.join(parts) or '/'}"
    if len(_TEMPLATES) >= _TEMPLATES_MAX:  # raw paths carry ids: keep the cache bounded
        _TEMPLATES.clear()
    _TEMPLATES[key] = template
    return template


class ObservedTransport(httpx.AsyncBaseTransport):
    """The base of a connector's stack, named after its system: every attempt through it is timed and
    reported (see the module docstring). Below the retry layer and the concurrency cap, so it sees each
    attempt separately and its latency excludes the wait for a slot."""

    def __init__(self, inner: httpx.AsyncBaseTransport, system: str) -> None:
        self.inner = inner
        self.system = system

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        observers, tracer = _observers, _tracer
        if not observers and tracer is None:
            return await self.inner.handle_async_request(request)
        endpoint = endpoint_template(request.method, request.url.path)
        attempt: int = request.extensions.get(ATTEMPT, 1)
        request.extensions[_OBSERVED] = (self.system, endpoint)
        span = None
        if tracer is not None:
            span = tracer.start_span(
                f"{self.system} {endpoint}",
                kind=SpanKind.CLIENT,
                attributes={
                    "p2c.system": self.system,
                    "p2c.endpoint": endpoint,
                    "p2c.attempt": attempt,
                    "http.request.method": request.method,
                    "url.template": endpoint.partition(" ")[2],
                    "server.address": request.url.host,
                },
            )
            if attempt > 1:
                span.set_attribute("http.request.resend_count", attempt - 1)
        status = "transport_error"
        started = time.perf_counter()
        try:
            response = await self.inner.handle_async_request(request)
        except httpx.TimeoutException:
            status = "timeout"
            raise
        except asyncio.CancelledError:
            deadline_at = request.extensions.get(_DEADLINE_AT)
            timed_out = deadline_at is not None and asyncio.get_running_loop().time() >= deadline_at - 0.001
            status = "timeout" if timed_out else "cancelled"
            raise
        else:
            status = str(response.status_code)
            return response
        finally:
            duration_s = time.perf_counter() - started
            for observer in observers:
                observer.upstream_request(self.system, endpoint, status, attempt, duration_s)
            if span is not None:
                if status.isdigit():
                    span.set_attribute("http.response.status_code", int(status))
                    if int(status) >= 400:  # semantic conventions: any 4xx/5xx fails a client span
                        span.set_status(Status(StatusCode.ERROR))
                else:
                    span.set_attribute("error.type", status)
                    span.set_status(Status(StatusCode.ERROR))
                span.end()

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
