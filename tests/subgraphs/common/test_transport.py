"""RetryTransport, ConcurrencyLimit, DeadlineTransport and build_transport over ``httpx.MockTransport``
handlers, and the deadline as each connector stacks it.

No test sleeps for real in the retry path: ``RetryTransport`` takes a fake ``sleep`` that records waits.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from canonical.errors import UpstreamTimeout
from subgraphs.common.config import RetryConfig
from subgraphs.common.transport import (
    IDEMPOTENT,
    ConcurrencyLimit,
    DeadlineTransport,
    RetryPolicy,
    RetryTransport,
    build_transport,
    parse_retry_after,
)
from subgraphs.crm.client import CrmClient
from subgraphs.crm.config import CrmConfig
from subgraphs.erp.client import ErpClient
from subgraphs.erp.config import ErpConfig
from subgraphs.psa.client import PsaClient
from subgraphs.psa.config import PsaConfig

URL = "https://vendor.example/v2/things"


class FakeSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class Script:
    """A MockTransport handler answering from a list, one item per call; an exception item is raised."""

    def __init__(self, items: Iterable[httpx.Response | Exception | int]) -> None:
        self.items = list(items)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        item = self.items.pop(0) if len(self.items) > 1 else self.items[0]
        if isinstance(item, Exception):
            raise item
        if isinstance(item, int):
            return httpx.Response(item, json={"status": item})
        return item

    @property
    def calls(self) -> int:
        return len(self.requests)


def make_client(
    script: Callable[[httpx.Request], httpx.Response],
    policy: RetryPolicy | None = None,
    **kwargs: object,
) -> tuple[httpx.AsyncClient, RetryTransport]:
    transport = RetryTransport(httpx.MockTransport(script), policy or RetryPolicy(jitter=0), **kwargs)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport), transport


def limited(retry_after: str) -> httpx.Response:
    return httpx.Response(429, headers={"Retry-After": retry_after}, json={"message": "slow down"})


SF_LIMIT = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED", "fields": []}]


def salesforce_is_limit(response: httpx.Response) -> bool:
    body = response.json()
    return isinstance(body, list) and any(e.get("errorCode") == "REQUEST_LIMIT_EXCEEDED" for e in body)


# -- parse_retry_after ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("soon", None),
        ("Mon, 99 Foo 2026", None),
        ("0", 0.0),
        ("7", 7.0),
        (" 12 ", 12.0),
        ("1.5", 1.5),
        ("-5", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ],  # the last: a date in the past
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_future_http_date() -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    parsed = parse_retry_after(email.utils.format_datetime(when, usegmt=True))
    assert parsed is not None
    assert 28 <= parsed <= 31


# -- policy --------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"])
def test_idempotent_methods_are_retryable(method: str) -> None:
    assert RetryPolicy().retryable_request(httpx.Request(method, URL))


def test_post_is_retryable_only_when_marked() -> None:
    policy = RetryPolicy()
    assert not policy.retryable_request(httpx.Request("POST", URL))
    assert not policy.retryable_request(httpx.Request("POST", URL, extensions={IDEMPOTENT: False}))
    assert policy.retryable_request(httpx.Request("POST", URL, extensions={IDEMPOTENT: True}))


def test_policy_from_config_copies_every_field() -> None:
    config = RetryConfig(attempts=3, backoff_initial_s=0.5, backoff_max_s=4, max_retry_after_s=9, budget_s=20)
    policy = RetryPolicy.from_config(config, is_limit=salesforce_is_limit)
    assert (policy.attempts, policy.backoff_initial_s, policy.backoff_max_s) == (3, 0.5, 4)
    assert (policy.max_retry_after_s, policy.budget_s) == (9, 20)
    assert policy.is_limit is salesforce_is_limit


async def test_backoff_is_exponential_and_capped_without_retry_after() -> None:
    sleep = FakeSleep()
    policy = RetryPolicy(attempts=6, backoff_initial_s=0.2, backoff_max_s=1.0, jitter=0)
    client, _ = make_client(Script([503]), policy, sleep=sleep)
    async with client:
        response = await client.get(URL)
    assert response.status_code == 503
    assert sleep.waits == pytest.approx([0.2, 0.4, 0.8, 1.0, 1.0])


async def test_jitter_stays_within_bounds_and_is_seeded() -> None:
    policy = RetryPolicy(attempts=5, backoff_initial_s=1.0, backoff_max_s=100, jitter=0.25)
    runs = []
    for _ in range(2):
        sleep = FakeSleep()
        client, _ = make_client(Script([503]), policy, sleep=sleep, seed=42)
        async with client:
            await client.get(URL)
        runs.append(sleep.waits)
    assert runs[0] == runs[1]
    for n, wait in enumerate(runs[0]):
        assert 2**n <= wait <= 2**n * 1.25


# -- retrying statuses ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
async def test_get_retries_transient_status_then_succeeds(status: int) -> None:
    sleep = FakeSleep()
    script = Script([status, status, 200])
    client, transport = make_client(script, sleep=sleep)
    async with client:
        response = await client.get(URL)
    assert response.status_code == 200
    assert response.json() == {"status": 200}
    assert script.calls == 3
    assert response.extensions["p2c_attempts"] == 3
    assert transport.stats.retries == 2
    assert len(sleep.waits) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 501])
async def test_non_retryable_status_is_returned_at_once(status: int) -> None:
    sleep = FakeSleep()
    script = Script([status, 200])
    client, _ = make_client(script, sleep=sleep)
    async with client:
        response = await client.get(URL)
    assert response.status_code == status
    assert script.calls == 1
    assert sleep.waits == []
    assert response.extensions["p2c_attempts"] == 1


async def test_first_try_success_reports_one_attempt() -> None:
    client, transport = make_client(Script([200]), sleep=FakeSleep())
    async with client:
        response = await client.get(URL)
    assert response.extensions["p2c_attempts"] == 1
    assert transport.stats.retries == 0


async def test_retry_after_seconds_are_honoured_exactly() -> None:
    sleep = FakeSleep()
    client, transport = make_client(Script([limited("3"), limited("0"), limited("7"), 200]), sleep=sleep)
    async with client:
        response = await client.get(URL)
    assert response.status_code == 200
    assert sleep.waits == [3.0, 0.0, 7.0]
    assert transport.stats.limit_waits == 3
    assert transport.stats.waited_s == pytest.approx(10.0)


async def test_retry_after_http_date_is_honoured() -> None:
    sleep = FakeSleep()
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    client, _ = make_client(Script([limited(when), 200]), sleep=sleep)
    async with client:
        response = await client.get(URL)
    assert response.status_code == 200
    assert len(sleep.waits) == 1
    assert 18 <= sleep.waits[0] <= 21


async def test_retry_after_on_a_5xx_is_honoured_too() -> None:
    sleep = FakeSleep()
    script = Script([httpx.Response(503, headers={"Retry-After": "4"}), 200])
    client, transport = make_client(script, sleep=sleep)
    async with client:
        assert (await client.get(URL)).status_code == 200
    assert sleep.waits == [4.0]
    assert transport.stats.limit_waits == 0  # a 503 is not a rate limit


async def test_retry_after_beyond_the_maximum_returns_the_429_without_waiting() -> None:
    sleep = FakeSleep()
    script = Script([limited("120"), 200])
    policy = RetryPolicy(max_retry_after_s=60, budget_s=3600, jitter=0)  # the budget alone would allow it
    client, transport = make_client(script, policy, sleep=sleep)
    async with client:
        response = await client.get(URL)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "120"
    assert script.calls == 1
    assert sleep.waits == []
    assert transport.stats.retries == 0
    assert response.extensions["p2c_attempts"] == 1


async def test_attempts_exhausted_returns_the_last_response() -> None:
    sleep = FakeSleep()
    responses = [httpx.Response(503, json={"n": n}) for n in range(1, 4)]
    script = Script(responses)
    client, transport = make_client(script, RetryPolicy(attempts=3, jitter=0), sleep=sleep)
    async with client:
        response = await client.get(URL)
    assert response.status_code == 503
    assert response.json() == {"n": 3}
    assert response.extensions["p2c_attempts"] == 3
    assert script.calls == 3
    assert len(sleep.waits) == transport.stats.retries == 2


async def test_single_attempt_policy_never_retries() -> None:
    sleep = FakeSleep()
    script = Script([503, 200])
    client, _ = make_client(script, RetryPolicy(attempts=1), sleep=sleep)
    async with client:
        assert (await client.get(URL)).status_code == 503
    assert script.calls == 1
    assert sleep.waits == []


async def test_budget_stops_before_a_wait_that_would_overrun_it() -> None:
    sleep = FakeSleep()
    script = Script([limited("5"), 200])
    client, _ = make_client(script, RetryPolicy(budget_s=2.0, max_retry_after_s=60), sleep=sleep)
    async with client:
        response = await client.get(URL)
    assert response.status_code == 429
    assert script.calls == 1
    assert sleep.waits == []


async def test_budget_counts_time_spent_in_the_inner_transport() -> None:
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.03)
        return httpx.Response(503, headers={"Retry-After": "0"})

    transport = RetryTransport(
        httpx.MockTransport(handler), RetryPolicy(attempts=100, budget_s=0.1), sleep=FakeSleep()
    )
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get(URL)
    assert response.status_code == 503
    assert 2 <= calls <= 5
    assert response.extensions["p2c_attempts"] == calls


# -- which requests ------------------------------------------------------------------------------


async def test_post_is_not_retried_by_default() -> None:
    sleep = FakeSleep()
    script = Script([503, 200])
    client, _ = make_client(script, sleep=sleep)
    async with client:
        response = await client.post(URL, json={"name": "Acme"})
    assert response.status_code == 503
    assert script.calls == 1
    assert sleep.waits == []


async def test_post_marked_idempotent_is_retried_with_the_same_body() -> None:
    script = Script([503, 200])
    client, _ = make_client(script, sleep=FakeSleep())
    async with client:
        response = await client.post(URL, json={"q": "SELECT 1"}, extensions={IDEMPOTENT: True})
    assert response.status_code == 200
    assert script.calls == 2
    assert [json.loads(r.content) for r in script.requests] == [{"q": "SELECT 1"}] * 2


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
async def test_upsert_methods_are_retried(method: str) -> None:
    script = Script([502, 200])
    client, _ = make_client(script, sleep=FakeSleep())
    async with client:
        body = None if method == "DELETE" else {"externalId": "eid:1"}
        response = await client.request(method, URL, json=body)
    assert response.status_code == 200
    assert script.calls == 2


# -- transport exceptions ------------------------------------------------------------------------


@pytest.mark.parametrize("exc_type", [httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError])
async def test_transport_errors_are_retried_for_get(exc_type: type[httpx.TransportError]) -> None:
    sleep = FakeSleep()
    script = Script([exc_type("boom"), exc_type("boom"), 200])
    reasons: list[str] = []
    client, transport = make_client(script, sleep=sleep, on_retry=lambda r, reason, w: reasons.append(reason))
    async with client:
        response = await client.get(URL)
    assert response.status_code == 200
    assert script.calls == 3
    assert reasons == [exc_type.__name__] * 2
    assert transport.stats.retries == 2
    assert transport.stats.limit_waits == 0


async def test_transport_error_is_reraised_after_the_last_attempt() -> None:
    sleep = FakeSleep()
    script = Script([httpx.ConnectError("refused")])
    client, _ = make_client(script, RetryPolicy(attempts=4, jitter=0), sleep=sleep)
    async with client:
        with pytest.raises(httpx.ConnectError, match="refused"):
            await client.get(URL)
    assert script.calls == 4
    assert len(sleep.waits) == 3


async def test_transport_error_on_post_is_raised_at_once() -> None:
    sleep = FakeSleep()
    script = Script([httpx.ReadTimeout("slow"), 200])
    client, _ = make_client(script, sleep=sleep)
    async with client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(URL, json={})
    assert script.calls == 1
    assert sleep.waits == []


async def test_transport_error_beyond_budget_is_raised_at_once() -> None:
    sleep = FakeSleep()
    script = Script([httpx.ConnectError("refused"), 200])
    client, _ = make_client(script, RetryPolicy(backoff_initial_s=5, budget_s=1, jitter=0), sleep=sleep)
    async with client:
        with pytest.raises(httpx.ConnectError):
            await client.get(URL)
    assert script.calls == 1


async def test_exceptions_outside_the_policy_are_not_retried() -> None:
    script = Script([RuntimeError("bug"), 200])
    client, _ = make_client(script, sleep=FakeSleep())
    async with client:
        with pytest.raises(RuntimeError):
            await client.get(URL)
    assert script.calls == 1


# -- vendor limit hook ---------------------------------------------------------------------------


async def test_is_limit_makes_a_salesforce_403_retryable() -> None:
    sleep = FakeSleep()
    script = Script([httpx.Response(403, json=SF_LIMIT), httpx.Response(403, json=SF_LIMIT), 200])
    policy = RetryPolicy(is_limit=salesforce_is_limit, jitter=0)
    client, transport = make_client(script, policy, sleep=sleep)
    async with client:
        response = await client.get(URL)
    assert response.status_code == 200
    assert script.calls == 3
    assert transport.stats.limit_waits == 2
    assert sleep.waits == pytest.approx([0.2, 0.4])


async def test_is_limit_leaves_a_plain_403_alone() -> None:
    sleep = FakeSleep()
    denied = [{"message": "no access", "errorCode": "INSUFFICIENT_ACCESS", "fields": []}]
    script = Script([httpx.Response(403, json=denied), 200])
    client, transport = make_client(script, RetryPolicy(is_limit=salesforce_is_limit), sleep=sleep)
    async with client:
        response = await client.get(URL)
    assert response.status_code == 403
    assert response.json() == denied  # the body read for the hook is still there for the caller
    assert script.calls == 1
    assert transport.stats.retries == 0


async def test_without_hook_a_limit_403_is_final() -> None:
    script = Script([httpx.Response(403, json=SF_LIMIT), 200])
    client, _ = make_client(script, sleep=FakeSleep())
    async with client:
        assert (await client.get(URL)).status_code == 403
    assert script.calls == 1


async def test_limit_403_honours_retry_after_and_the_attempt_limit() -> None:
    sleep = FakeSleep()
    script = Script([httpx.Response(403, json=SF_LIMIT, headers={"Retry-After": "2"})])
    policy = RetryPolicy(attempts=3, is_limit=salesforce_is_limit)
    client, _ = make_client(script, policy, sleep=sleep)
    async with client:
        response = await client.get(URL)
    assert response.status_code == 403
    assert response.extensions["p2c_attempts"] == 3
    assert sleep.waits == [2.0, 2.0]


# -- hooks, stats, cleanup -----------------------------------------------------------------------


async def test_on_retry_hook_and_stats() -> None:
    seen: list[tuple[str, str, float]] = []
    sleep = FakeSleep()
    script = Script(
        [limited("1"), httpx.Response(503, headers={"Retry-After": "2"}), httpx.ConnectError("x"), 200]
    )
    client, transport = make_client(
        script,
        RetryPolicy(backoff_initial_s=0.5, jitter=0),
        sleep=sleep,
        on_retry=lambda request, reason, wait: seen.append((request.url.path, reason, wait)),
    )
    async with client:
        assert (await client.get(URL)).status_code == 200
    assert seen == [
        ("/v2/things", "status 429", 1.0),
        ("/v2/things", "status 503", 2.0),
        ("/v2/things", "ConnectError", 2.0),
    ]
    assert sleep.waits == [1.0, 2.0, 2.0]
    assert transport.stats.retries == 3
    assert transport.stats.limit_waits == 1
    assert transport.stats.waited_s == pytest.approx(5.0)


class TrackedStream(httpx.AsyncByteStream):
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data

    async def aclose(self) -> None:
        self.closed = True


async def test_discarded_responses_are_closed() -> None:
    streams = [TrackedStream(b"busy"), TrackedStream(b"busy"), TrackedStream(b"ok")]
    responses = [
        httpx.Response(503, headers={"Retry-After": "0"}, stream=streams[0]),
        httpx.Response(429, headers={"Retry-After": "0"}, stream=streams[1]),
        httpx.Response(200, stream=streams[2]),
    ]
    transport = RetryTransport(httpx.MockTransport(Script(responses)), RetryPolicy(), sleep=FakeSleep())
    response = await transport.handle_async_request(httpx.Request("GET", URL))
    assert streams[0].closed
    assert streams[1].closed
    assert not streams[2].closed  # the caller owns the one handed back
    assert response.status_code == 200
    await response.aclose()


class ClosableTransport(httpx.AsyncBaseTransport):
    closed = False

    async def aclose(self) -> None:
        self.closed = True


async def test_aclose_reaches_the_inner_transport() -> None:
    inner = ClosableTransport()
    await RetryTransport(ConcurrencyLimit(inner, 2)).aclose()
    assert inner.closed


# -- concurrency limit ---------------------------------------------------------------------------


async def test_concurrency_limit_caps_in_flight_requests_exactly() -> None:
    active = 0
    observed_peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal active, observed_peak
        active += 1
        observed_peak = max(observed_peak, active)
        await asyncio.sleep(0.01)
        active -= 1
        return httpx.Response(200, json={"i": request.url.params["i"]})

    limit = ConcurrencyLimit(httpx.MockTransport(handler), limit=5)
    async with httpx.AsyncClient(transport=limit, base_url="https://erp.example") as client:
        responses = await asyncio.gather(*(client.get("/x", params={"i": i}) for i in range(50)))
    assert [r.json()["i"] for r in responses] == [str(i) for i in range(50)]
    assert limit.stats.peak == 5
    assert observed_peak == 5
    assert limit.stats.requests == 50
    assert limit.stats.in_flight == 0


async def test_concurrency_limit_releases_the_slot_on_error() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("down")

    limit = ConcurrencyLimit(httpx.MockTransport(handler), limit=1)
    for _ in range(3):
        with pytest.raises(httpx.ConnectError):
            await limit.handle_async_request(httpx.Request("GET", URL))
    assert limit.stats.in_flight == 0
    assert limit.stats.requests == 3


async def test_concurrency_limit_reads_the_body_inside_the_slot() -> None:
    stream = TrackedStream(b"payload")
    limit = ConcurrencyLimit(httpx.MockTransport(lambda r: httpx.Response(200, stream=stream)), limit=1)
    response = await limit.handle_async_request(httpx.Request("GET", URL))
    assert response.content == b"payload"


@pytest.mark.parametrize("bad", [0, -1])
def test_concurrency_limit_below_one_is_refused(bad: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ConcurrencyLimit(httpx.MockTransport(lambda r: httpx.Response(200)), limit=bad)


# -- the standard stack --------------------------------------------------------------------------


async def test_build_transport_puts_retry_outside_the_concurrency_cap() -> None:
    script = Script([503, 200])
    transport = build_transport(RetryPolicy(jitter=0), 3, httpx.MockTransport(script), sleep=FakeSleep())
    assert isinstance(transport, RetryTransport)
    assert isinstance(transport.inner, ConcurrencyLimit)
    assert transport.inner.limit == 3
    async with httpx.AsyncClient(transport=transport) as client:
        assert (await client.get(URL)).status_code == 200
    assert transport.inner.stats.requests == 2  # the retry went through the cap again


async def test_build_transport_frees_the_slot_while_a_retry_waits() -> None:
    order: list[str] = []
    first_a = True

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal first_a
        name = request.url.params["who"]
        order.append(name)
        if name == "a" and first_a:
            first_a = False
            return httpx.Response(503, headers={"Retry-After": "0"})
        return httpx.Response(200)

    waits: list[float] = []

    async def slow_sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0.05)  # long enough for "b" to pass through the single slot

    hooks: list[str] = []
    transport = build_transport(
        RetryPolicy(),
        1,
        httpx.MockTransport(handler),
        sleep=slow_sleep,
        on_retry=lambda request, reason, wait: hooks.append(reason),
    )
    async with httpx.AsyncClient(transport=transport) as client:

        async def b_later() -> httpx.Response:
            await asyncio.sleep(0.01)
            return await client.get(URL, params={"who": "b"})

        a, b = await asyncio.gather(client.get(URL, params={"who": "a"}), b_later())
    assert (a.status_code, b.status_code) == (200, 200)
    assert order == ["a", "b", "a"]
    assert waits == [0.0]
    assert hooks == ["status 503"]
    assert transport.inner.stats.peak == 1  # type: ignore[attr-defined]


async def test_build_transport_defaults_to_a_pooled_http_transport() -> None:
    transport = build_transport(RetryPolicy(), 4)
    try:
        assert isinstance(transport.inner, ConcurrencyLimit)
        assert isinstance(transport.inner.inner, httpx.AsyncHTTPTransport)
    finally:
        await transport.aclose()


# -- per-attempt deadline ------------------------------------------------------------------------


def sleeping(seconds: float) -> Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]:
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(seconds)
        return httpx.Response(200, json={"slept": seconds})

    return handler


async def test_deadline_turns_a_hang_into_a_read_timeout() -> None:
    deadline = DeadlineTransport(httpx.MockTransport(sleeping(5)), 0.05)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout, match=r"no response within 0.05s") as caught:
        await deadline.handle_async_request(httpx.Request("GET", URL))
    assert time.monotonic() - started < 1
    assert caught.value.request.url == URL


async def test_deadline_lets_a_fast_answer_through() -> None:
    async with httpx.AsyncClient(transport=DeadlineTransport(httpx.MockTransport(sleeping(0)), 1)) as client:
        assert (await client.get(URL)).json() == {"slept": 0}


async def test_deadline_covers_a_trickling_body_and_closes_it() -> None:
    class Trickle(TrackedStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b"a"
            await asyncio.sleep(5)
            yield b"b"

    stream = Trickle(b"")
    deadline = DeadlineTransport(httpx.MockTransport(lambda r: httpx.Response(200, stream=stream)), 0.05)
    with pytest.raises(httpx.ReadTimeout):
        await deadline.handle_async_request(httpx.Request("GET", URL))
    assert stream.closed


@pytest.mark.parametrize("bad", [0, -1.0])
def test_deadline_must_be_positive(bad: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        DeadlineTransport(httpx.MockTransport(sleeping(0)), bad)


async def test_build_transport_puts_the_deadline_under_the_cap_per_attempt() -> None:
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        await asyncio.sleep(5 if calls == 1 else 0.03)  # the first attempt hangs, later ones are quick
        return httpx.Response(200)

    transport = build_transport(
        RetryPolicy(jitter=0), 1, httpx.MockTransport(handler), timeout_s=0.1, sleep=FakeSleep()
    )
    assert isinstance(transport.inner, ConcurrencyLimit)
    assert isinstance(transport.inner.inner, DeadlineTransport)
    async with httpx.AsyncClient(transport=transport) as client:
        # Four requests through one slot: each attempt is quick, the last waits ~0.1 s for the slot.
        responses = await asyncio.gather(*(client.get(URL) for _ in range(4)))
    assert [r.status_code for r in responses] == [200] * 4
    assert transport.stats.retries == 1  # only the hung first attempt


def connector(kind: str, timeout_s: float, transport: httpx.AsyncBaseTransport, **extra: Any) -> Any:
    retry = RetryConfig(attempts=1)
    if kind == "crm":
        return CrmClient.from_config(CrmConfig(timeout_s=timeout_s, retry=retry, **extra), transport)
    if kind == "erp":
        return ErpClient.from_config(ErpConfig(timeout_s=timeout_s, retry=retry, **extra), transport)
    return PsaClient.from_config(PsaConfig(timeout_s=timeout_s, retry=retry, **extra), transport)


@pytest.mark.parametrize("kind", ["crm", "erp", "psa"])
async def test_every_connector_times_out_a_hanging_injected_transport(kind: str) -> None:
    client = connector(kind, 0.05, httpx.MockTransport(sleeping(5)))
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        await client.ping()
    assert time.monotonic() - started < 1
    await client.aclose()


async def test_psa_rate_budget_waits_do_not_count_against_the_deadline() -> None:
    transport = httpx.MockTransport(sleeping(0))
    async with connector("psa", 0.1, transport, rate_limit_requests=1, rate_limit_window_s=0.2) as psa:
        for _ in range(2):  # the second call waits ~0.2 s for the budget, longer than the deadline
            assert await psa.ping()
    assert psa.budget.stats.waits == 1
