"""What observing an upstream attempt costs: CPU µs per attempt through ``ObservedTransport``.

    python bench/observability.py [--attempts 50000]

Four variants of the same attempt, measured in one run against the bare transport (baseline):
``fast path`` (no observer, no tracer — the gateway with P2C_TRACING_EXPORTER=none and no app metrics),
``metrics`` (the gateway's default: Prometheus instruments), ``metrics + spans`` (tracing on, the SDK
with a processor that drops spans, so the figure is the span's cost, not an exporter's). Process CPU
time, not wall clock: the figure holds on a busy machine. A GraphQL operation's extension is measured the
same way (one query through ``schema.execute`` with and without it).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from functools import partial

import httpx
import strawberry
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from gateway.instrumentation import instrument_schema
from gateway.metrics import Metrics
from gateway.tracing import CorrelationIdProcessor
from resolvers.schema import ParserCache, ValidationCache
from subgraphs.common import transport
from subgraphs.common.transport import ObservedTransport, RetryPolicy, build_transport

RESPONSE = httpx.Response(200)


class Bare(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return RESPONSE


class Drop(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def per_attempt_us(layer: httpx.AsyncBaseTransport, attempts: int) -> float:
    requests = [
        httpx.Request("PUT", f"https://erp.example/services/rest/record/v1/customer/eid:{n % 500}")
        for n in range(attempts)
    ]
    for request in requests[:1000]:  # warm the template cache and the label children
        await layer.handle_async_request(request)
    started = time.process_time()
    for request in requests:
        await layer.handle_async_request(request)
    return (time.process_time() - started) / attempts * 1e6


@strawberry.type
class Query:
    @strawberry.field
    def hello(self) -> str:
        return "world"


async def per_operation_us(schema: strawberry.Schema, operations: int) -> float:
    for _ in range(200):
        await schema.execute("query Hello { hello }")
    started = time.process_time()
    for _ in range(operations):
        await schema.execute("query Hello { hello }")
    return (time.process_time() - started) / operations * 1e6


async def client_get_us(stack: httpx.AsyncBaseTransport, requests: int) -> float:
    """A whole connector-style request (httpx client, retry, cap, deadline) over ``stack``."""
    async with httpx.AsyncClient(transport=stack, base_url="https://erp.example") as http:
        for n in range(200):
            await http.put(f"/services/rest/record/v1/customer/eid:{n}")
        started = time.process_time()
        for n in range(requests):
            await http.put(f"/services/rest/record/v1/customer/eid:{n % 500}")
        return (time.process_time() - started) / requests * 1e6


def best(rounds: list[dict[str, float]]) -> dict[str, float]:
    """The fastest of the rounds per variant: the least disturbed by other work on the machine."""
    return {name: min(r[name] for r in rounds) for name in rounds[0]}


async def main(attempts: int, rounds: int) -> None:
    bare = Bare()
    observed = ObservedTransport(bare, "erp")
    metrics = Metrics()
    provider = TracerProvider()
    provider.add_span_processor(CorrelationIdProcessor())
    provider.add_span_processor(SimpleSpanProcessor(Drop()))
    tracer = provider.get_tracer("bench")

    async def variant(name: str) -> float:
        observers, spans = {"bare": ((), None), "fast path (nothing on)": ((), None)}.get(
            name, ((metrics,), tracer if name == "metrics + spans" else None)
        )
        transport._observers, transport._tracer = observers, spans
        return await per_attempt_us(bare if name == "bare" else observed, attempts)

    names = ["bare", "fast path (nothing on)", "metrics", "metrics + spans"]
    attempt = best([{name: await variant(name) for name in names} for _ in range(rounds)])
    transport._observers, transport._tracer = (), None
    stack = build_transport(RetryPolicy(), 8, observed, timeout_s=10)
    whole = best([{"request": await client_get_us(stack, attempts // 5)} for _ in range(rounds)])["request"]

    baseline = attempt["bare"]
    print(f"upstream attempt: CPU µs per attempt, best of {rounds} rounds of {attempts:,}")
    print(f"  bare transport (baseline)      {baseline:7.2f}")
    for name in names[1:]:
        value = attempt[name]
        print(f"  {name:<30} {value:7.2f}   +{value - baseline:6.2f} µs   ratio {value / baseline:6.2f}")
    print(f"  for scale: one request through httpx and the connector stack, nothing on: {whole:.1f} µs")
    print(
        f"  metrics add {100 * (attempt['metrics'] - attempt['fast path (nothing on)']) / whole:.1f}% "
        f"to such a request; metrics + spans {100 * (attempt['metrics + spans'] - baseline) / whole:.1f}%"
    )

    operations = max(1000, attempts // 20)
    caches = [partial(ParserCache, maxsize=256), partial(ValidationCache, maxsize=256)]
    plain = strawberry.Schema(query=Query, extensions=caches)
    instrumented = strawberry.Schema(query=Query, extensions=caches)
    instrument_schema(instrumented, Metrics())
    ops = best(
        [
            {
                "plain": await per_operation_us(plain, operations),
                "ours": await per_operation_us(instrumented, operations),
            }
            for _ in range(rounds)
        ]
    )
    print(f"GraphQL operation (a one-field query, parser and validation caches): CPU µs, best of {rounds}")
    print(f"  without the extension          {ops['plain']:7.2f}")
    print(
        f"  with OperationInstrumentation  {ops['ours']:7.2f}   +{ops['ours'] - ops['plain']:6.2f} µs"
        f"   ratio {ops['ours'] / ops['plain']:6.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.attempts, args.rounds))
