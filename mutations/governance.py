"""Governed writes: idempotency keys, integration runs with deterministic step keys, the exception queue's
replay and dismissal, and the audit trail. Every flow (provisioning, time posting, billing feedback) uses it.

    result = await run_idempotent(deps, principal, "provisionEngagement", key, input,
                                  lambda: provision_engagement(deps, opp, input, principal=principal),
                                  load=ProvisionResult.from_json, correlation_id=cid)

    runner = FlowRunner(deps, flow="provision_engagement", subject=opp, correlation_id=cid)
    await runner.attach(input={...})
    customer = await runner.step("upsert_customer", "erp:customer:<id>", upsert_customer)
    await runner.finish()

Idempotency (IETF draft, Stripe): a key is scoped to principal + operation and stored with a fingerprint
of the input for ``deps.idempotency_ttl`` (24 h by default). Same key, same input → the stored result, no
new work; different input → ``IdempotencyKeyReused``; the first still running → ``Conflict``; no key →
``IdempotencyKeyRequired``. When the work raises (validation, permission, anything) nothing is stored and
the client may retry with the same key. The claim is committed before the work, so a concurrent request
with the key sees it in progress.

Runs: a step whose key already SUCCEEDED (in this run or any other) is never executed again; its stored
result is returned. A step is executed only under a claim (``RunRepo.claim_step``): a second attempt at a
step another attempt is running — two deliveries of one deal at once, without an idempotency key — waits
for it and takes its result (or, if it failed, runs it). A claim older than ``claim_timeout`` (60 s) is
presumed dead — its process was killed mid-step — and is taken over; so a gateway killed in the middle of
a step resumes that step on restart once the claim has gone stale, and every other step at once.
A failing step records the error on the step, marks the run FAILED, opens (or re-opens) an exception
with the step key, reason code, upstream error and correlation id, and raises ``StepFailed``. Reason
codes come from ``reason_code``.

Tracing: a run is an OpenTelemetry span ``flow <flow>`` (from ``attach``/``start`` to ``finish``/``fail``)
and each step a child span ``step <name>``, current while the step's action runs, so the upstream calls it
makes hang under it; both carry ``p2c.correlation_id``. They go to the API's global provider, which the
gateway installs when tracing is on (a no-op otherwise).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode
from sqlalchemy.ext.asyncio import AsyncSession

from canonical.errors import (
    Conflict,
    GatewayError,
    IdempotencyKeyRequired,
    NotFound,
    Problem,
    UpstreamError,
    ValidationFailed,
)
from canonical.principal import Principal
from mutations.deps import FlowDeps
from store.repositories import AuditRepo, ExceptionRepo, IdempotencyRepo, RunRepo, fingerprint
from store.repositories.runs import CLAIM_TIMEOUT
from subgraphs.erp.errors import ErpRejected

T = TypeVar("T")

_tracer = trace.get_tracer("p2c.flows")
CORRELATION_ID = "p2c.correlation_id"  # the span attribute gateway.tracing stamps on every span

MAX_KEY_LENGTH = 255

# Reason codes an exception can carry (besides any ``GatewayError.code``).
UPSTREAM_RATE_LIMITED = "UPSTREAM_RATE_LIMITED"
UPSTREAM_UNAVAILABLE = "UPSTREAM_UNAVAILABLE"
UPSTREAM_REJECTED = "UPSTREAM_REJECTED"
PERIOD_CLOSED = "PERIOD_CLOSED"
PROJECT_CLOSED = "PROJECT_CLOSED"
VALIDATION_FAILED = "VALIDATION_FAILED"
MAPPING_MISSING = "MAPPING_MISSING"
AMENDMENT_REQUIRED = "AMENDMENT_REQUIRED"
XREF_CONFLICT = "XREF_CONFLICT"
INTERNAL = "INTERNAL"
#: ``ErpRejected.reason`` values kept as reason codes; any other refusal is ``UPSTREAM_REJECTED``.
ERP_REASONS = frozenset({PERIOD_CLOSED, PROJECT_CLOSED, "INVALID_REFERENCE", "IDEMPOTENCY_ERROR", "DUP_RCRD"})


def reason_code(exc: BaseException) -> str:
    """The exception queue's reason code for an error a step raised."""
    if isinstance(exc, ErpRejected):
        return exc.reason if exc.reason in ERP_REASONS else UPSTREAM_REJECTED
    if isinstance(exc, Conflict):
        return XREF_CONFLICT
    if isinstance(exc, GatewayError):
        # UpstreamTimeout is an UpstreamUnavailable for the queue: the fix (wait, replay) is the same.
        return UPSTREAM_UNAVAILABLE if exc.code == "UPSTREAM_TIMEOUT" else exc.code
    return INTERNAL


def describe_error(exc: BaseException) -> dict[str, Any]:
    """The upstream error as stored on a step and an exception: JSON, no stack trace."""
    body: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, GatewayError):
        body.update(jsonable(exc.as_extensions()))
    if isinstance(exc, UpstreamError) and exc.details is not None:
        body["details"] = jsonable(exc.details)
    return body


def jsonable(value: Any) -> Any:
    """Dataclasses, enums, dates and decimals as JSON values (for fingerprints, audit and stored results)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


@asynccontextmanager
async def unit_of_work(deps: FlowDeps) -> AsyncIterator[AsyncSession]:
    """``deps.sessionmaker.begin()``, kept for callers that use it. On SQLite it holds the write lock from
    its first statement (``BEGIN IMMEDIATE``, see ``store.db``), so a unit of work that reads and then
    writes waits its turn instead of failing with "database is locked"."""
    async with deps.sessionmaker.begin() as session:
        yield session


# --- audit ---------------------------------------------------------------------------------------------


async def audit(
    deps: FlowDeps,
    principal: Principal,
    operation: str,
    status: str,
    *,
    input: Any = None,
    result: Any = None,
    correlation_id: str | None = None,
) -> None:
    """Append one audit entry in its own unit of work."""
    async with deps.sessionmaker.begin() as session:
        await AuditRepo(session, clock=deps.clock).append(
            principal=principal.subject,
            roles=sorted(str(r) for r in principal.roles),
            operation=operation,
            status=status,
            input=jsonable(input),
            result=jsonable(result),
            correlation_id=correlation_id,
        )


# --- idempotency keys ------------------------------------------------------------------------------------


async def run_idempotent(
    deps: FlowDeps,
    principal: Principal,
    operation: str,
    key: str | None,
    input: Any,
    fn: Callable[[], Awaitable[T]],
    *,
    load: Callable[[Any], T],
    dump: Callable[[T], Any] = jsonable,
    correlation_id: str | None = None,
) -> T:
    """Run ``fn`` at most once per (principal, operation, key); see the module docstring.

    ``dump`` turns the result into JSON for storage, ``load`` turns stored JSON back into a result.
    """
    audited_input = {"idempotencyKey": key, "input": jsonable(input)}
    try:
        if not key:
            raise IdempotencyKeyRequired(operation)
        if len(key) > MAX_KEY_LENGTH:
            raise ValidationFailed(
                [Problem("idempotencyKey", f"at most {MAX_KEY_LENGTH} characters", "TOO_LONG")]
            )
        digest = fingerprint(jsonable(input))
        async with deps.sessionmaker.begin() as session:
            outcome = await IdempotencyRepo(session, clock=deps.clock).begin(
                key, principal.subject, operation, digest, ttl=deps.idempotency_ttl
            )
    except GatewayError as exc:
        await audit(deps, principal, operation, exc.code, input=audited_input, correlation_id=correlation_id)
        raise
    if outcome.replay:
        await audit(
            deps,
            principal,
            operation,
            "REPLAYED",
            input=audited_input,
            result=outcome.response,
            correlation_id=correlation_id,
        )
        return load(outcome.response)
    try:
        result = await fn()
    except BaseException as exc:
        # Stripe: a failed request (validation, permission, crash) stores nothing; a retry may reuse the key.
        async with deps.sessionmaker.begin() as session:
            await IdempotencyRepo(session, clock=deps.clock).release(key, principal.subject, operation)
        status = exc.code if isinstance(exc, GatewayError) else INTERNAL
        await audit(
            deps,
            principal,
            operation,
            status,
            input=audited_input,
            result=describe_error(exc) if isinstance(exc, Exception) else None,
            correlation_id=correlation_id,
        )
        raise
    stored = dump(result)
    async with deps.sessionmaker.begin() as session:
        await IdempotencyRepo(session, clock=deps.clock).complete(key, principal.subject, operation, stored)
        await AuditRepo(session, clock=deps.clock).append(
            principal=principal.subject,
            roles=sorted(str(r) for r in principal.roles),
            operation=operation,
            status="COMPLETED",
            input=audited_input,
            result=stored,
            correlation_id=correlation_id,
        )
    return result


# --- integration runs ----------------------------------------------------------------------------------


class StepFailed(GatewayError):
    """A step of a run failed and an exception was opened for it; ``code`` is the reason code."""

    http_status = 502

    def __init__(self, step: str, reason: str, exception_id: str, cause: BaseException) -> None:
        self.code = reason
        self.step = step
        self.exception_id = exception_id
        super().__init__(f"step {step} failed ({reason}): {cause}", step=step, exceptionId=exception_id)


Action = Callable[[], Awaitable[Mapping[str, Any]]]


class FlowRunner:
    """One integration run of ``flow`` for ``subject``; see the module docstring."""

    def __init__(
        self,
        deps: FlowDeps,
        *,
        flow: str,
        subject: str,
        correlation_id: str | None = None,
        legal_entity: str | None = None,
    ) -> None:
        self.deps = deps
        self.flow = flow
        self.subject = subject
        self.correlation_id = correlation_id
        self.legal_entity = legal_entity
        self.run_id: str | None = None
        self.claim_timeout: timedelta = CLAIM_TIMEOUT  # see RunRepo.claim_step
        self.claim_poll_s = 0.2  # how often a waiting attempt looks at a step another attempt claimed
        self.payload: Any = None  # stored on exceptions: what a person needs to fix and replay
        self._span: Span | None = None

    def _run_span(self) -> Span:
        """The run's span, started on first use."""
        if self._span is None:
            attributes: dict[str, str] = {"p2c.flow": self.flow, "p2c.subject": self.subject}
            if self.correlation_id is not None:
                attributes[CORRELATION_ID] = self.correlation_id
            self._span = _tracer.start_span(f"flow {self.flow}", attributes=attributes)
        if self.run_id is not None:
            self._span.set_attribute("p2c.run_id", self.run_id)
        return self._span

    def _end_span(self, outcome: str, reason: str | None = None) -> None:
        span = self._run_span()
        span.set_attribute("p2c.outcome", outcome)
        if reason is not None:
            span.set_attribute("p2c.reason", reason)
            span.set_status(Status(StatusCode.ERROR, reason))
        span.end()
        self._span = None

    async def latest(self) -> tuple[str, str, Any] | None:
        """``(run id, status, input)`` of the newest run for the subject, if any."""
        async with self.deps.sessionmaker() as session:
            run = await RunRepo(session).latest(self.flow, self.subject)
            return None if run is None else (run.id, run.status, run.input)

    async def attach(self, input: Any) -> str:
        """Resume the newest unfinished or failed run for the subject, or start a new one."""
        latest = await self.latest()
        async with self.deps.sessionmaker.begin() as session:
            runs = RunRepo(session, clock=self.deps.clock)
            if latest is not None and latest[1] != "SUCCEEDED":
                run = await runs.resume(latest[0], correlation_id=self.correlation_id)
                run.input = jsonable(input)
            else:
                run = await runs.start(
                    self.flow,
                    subject=self.subject,
                    input=jsonable(input),
                    legal_entity=self.legal_entity,
                    correlation_id=self.correlation_id,
                )
            self.run_id = run.id
        self._run_span()
        return self.run_id

    async def start(self, input: Any) -> str:
        """Always a new run (e.g. a change order against an engagement already provisioned)."""
        async with self.deps.sessionmaker.begin() as session:
            run = await RunRepo(session, clock=self.deps.clock).start(
                self.flow,
                subject=self.subject,
                input=jsonable(input),
                legal_entity=self.legal_entity,
                correlation_id=self.correlation_id,
            )
            self.run_id = run.id
        self._run_span()
        return self.run_id

    def _run(self) -> str:
        if self.run_id is None:
            raise RuntimeError("FlowRunner.attach() or start() first")
        return self.run_id

    async def done(self, key: str) -> Mapping[str, Any] | None:
        """The stored result of step ``key`` if it SUCCEEDED (in any run), else None."""
        async with self.deps.sessionmaker() as session:
            try:
                step = await RunRepo(session).get_step(key)
            except NotFound:
                return None
            return dict(step.result or {}) if step.status == "SUCCEEDED" else None

    async def _claim(self, name: str, key: str) -> dict[str, Any] | None:
        """Claim step ``key`` → None (ours to run), or the stored result once it SUCCEEDED; waits while
        another attempt holds a live claim."""
        run_id = self._run()
        deadline = time.monotonic() + 2 * self.claim_timeout.total_seconds() + 5
        while True:
            async with self.deps.sessionmaker.begin() as session:
                runs = RunRepo(session, clock=self.deps.clock)
                claimed = await runs.claim_step(
                    key, run_id, name, stale_after=self.claim_timeout, correlation_id=self.correlation_id
                )
                step = await runs.get_step(key)
                if step.status == "SUCCEEDED":
                    return dict(step.result or {})
            if claimed:
                return None
            if time.monotonic() > deadline:
                raise Conflict(f"step {key} is still being run by another attempt", step=key)
            await asyncio.sleep(self.claim_poll_s)

    async def step(self, name: str, key: str, action: Action) -> dict[str, Any]:
        attributes = {"p2c.flow": self.flow, "p2c.step": name, "p2c.step_key": key}
        if self.correlation_id is not None:
            attributes[CORRELATION_ID] = self.correlation_id
        span = _tracer.start_span(
            f"step {name}", context=trace.set_span_in_context(self._run_span()), attributes=attributes
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            return await self._step(name, key, action, span)
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            otel_context.detach(token)
            span.end()

    async def _step(self, name: str, key: str, action: Action, span: Span) -> dict[str, Any]:
        done = await self._claim(name, key)
        if done is not None:
            span.set_attribute("p2c.outcome", "done_before")  # stored result, nothing executed
            return done
        try:
            result = dict(await action())
        except asyncio.CancelledError:
            await asyncio.shield(self._release(key))  # give the claim up so a retry need not wait it out
            raise
        except Exception as exc:
            error = describe_error(exc)
            span.set_attribute("p2c.outcome", "failed")
            span.set_attribute("p2c.reason", reason_code(exc))
            async with self.deps.sessionmaker.begin() as session:
                await RunRepo(session, clock=self.deps.clock).step_failed(key, error)
            exception_id = await self.fail(key, reason_code(exc), error)
            raise StepFailed(key, reason_code(exc), exception_id, exc) from exc
        async with self.deps.sessionmaker.begin() as session:
            await RunRepo(session, clock=self.deps.clock).step_succeeded(key, jsonable(result))
        span.set_attribute("p2c.outcome", "succeeded")
        return result

    async def _release(self, key: str) -> None:
        async with self.deps.sessionmaker.begin() as session:
            await RunRepo(session, clock=self.deps.clock).release_step(key)

    async def fail(self, step: str, reason: str, error: Any = None) -> str:
        """Open (or re-open) the exception for ``step`` and mark the run FAILED → the exception id."""
        async with self.deps.sessionmaker.begin() as session:
            if self.run_id is not None:
                await RunRepo(session, clock=self.deps.clock).finish(self.run_id, "FAILED")
            exception = await ExceptionRepo(session, clock=self.deps.clock).open(
                flow=self.flow,
                reason_code=reason,
                payload=jsonable(self.payload),
                upstream_error=error,
                step=step,
                run_id=self.run_id,
                subject=self.subject,
                correlation_id=self.correlation_id,
                legal_entity=self.legal_entity,
            )
        self._end_span("failed", reason)
        return exception.id

    async def finish(self) -> list[str]:
        """Mark the run SUCCEEDED and resolve the subject's active exceptions → their ids."""
        async with self.deps.sessionmaker.begin() as session:
            await RunRepo(session, clock=self.deps.clock).finish(self._run(), "SUCCEEDED")
            exceptions = ExceptionRepo(session, clock=self.deps.clock)
            active = await exceptions.list(status=("OPEN", "REPLAYING"), flow=self.flow, subject=self.subject)
            for exception in active:
                await exceptions.mark_resolved(exception.id, f"completed by run {self.run_id}")
        self._end_span("succeeded")
        return [e.id for e in active]


__all__ = [
    "AMENDMENT_REQUIRED",
    "INTERNAL",
    "MAPPING_MISSING",
    "PERIOD_CLOSED",
    "UPSTREAM_RATE_LIMITED",
    "UPSTREAM_UNAVAILABLE",
    "VALIDATION_FAILED",
    "XREF_CONFLICT",
    "FlowRunner",
    "StepFailed",
    "audit",
    "describe_error",
    "jsonable",
    "reason_code",
    "run_idempotent",
]
