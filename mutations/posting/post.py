"""Posting a batch of entry versions to the ERP: the one function the worker, a replay and a test call.

    report = await post_items(deps, items, caches=caches, complete=scope.complete)
    report.outcomes[item]   # Outcome(status="POSTED" | "CORRECTED" | "REVERSED" | ..., exception_id, error)

Shape of a batch (the store is touched twice, the vendors a handful of times plus one upsert per write):

1. one transaction: a run for the batch; the entries' heads claimed (``PostingRepo.claim_heads``);
2. the snapshot (``Snapshot.load``) and, for corrections, the live time bills (one SuiteQL) — no
   transaction open while the network is used;
3. enrich → validate → plan, per entry, in memory;
4. the ERP writes, concurrently (``asyncio.gather`` under a semaphore of the ERP's ``max_concurrency``;
   the connector caps in-flight requests too); an entry's own writes run in order (reversal first);
5. one transaction: every step (SUCCEEDED or FAILED), the heads released with what is live now, an
   exception per failure (reason code, the entry, the fix), the subjects' older exceptions resolved, and
   the work items completed (``complete``) — results and queue move together.

Exactly once: the step keys (a write that SUCCEEDED is never planned again: the head says it is live)
and the ERP external ids (``psa:<entry id>:v<version>``: a repeated upsert replaces, never duplicates).
A transient upstream failure (429, 5xx, timeout) leaves the head as it was and hands the error back to
the worker, which retries the item; on its last attempt it becomes an exception like any other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from opentelemetry import trace
from sqlalchemy.ext.asyncio import AsyncSession

from canonical.errors import Conflict, UpstreamRateLimited, UpstreamUnavailable
from mutations.deps import FlowDeps
from mutations.governance import CORRELATION_ID, describe_error, jsonable, reason_code
from mutations.posting.enrich import Enriched, enrich
from mutations.posting.model import MAX_ATTEMPTS, POST_TIME, Failure, Plan, PostItem, Write
from mutations.posting.plan import live, plan_approved, plan_unapproved, stale
from mutations.posting.snapshot import PostingCaches, Snapshot
from mutations.posting.validate import validate
from store.repositories import ExceptionRepo, RunRepo
from store.repositories.postings import PostingRepo, StepRow
from subgraphs.erp.errors import ErpRejected
from subgraphs.erp.wire import Record

BATCH_FLOW = "post_time_batch"
# A batch is a span ``flow post_time_batch``; each ERP write in it a child ``step <name>`` carrying the
# entry's correlation id, over the upstream call's own span (as FlowRunner's runs and steps are).
_tracer = trace.get_tracer("p2c.flows")
Completer = Callable[[AsyncSession, Sequence[int]], Awaitable[set[int]]]


@dataclass
class Outcome:
    status: str  # POSTED CORRECTED REVERSED UNCHANGED SUPERSEDED SKIPPED | FAILED | RETRY | BUSY
    exception_id: str | None = None
    failure: Failure | None = None
    error: BaseException | None = None  # RETRY / BUSY: what to hand back to the worker
    completed: bool = False  # the work item was completed in the results transaction


@dataclass
class BatchReport:
    run_id: str
    outcomes: dict[PostItem, Outcome] = field(default_factory=dict)
    # Known once an item is enriched; an exception carries it so entity-scoped staff see and replay it.
    legal_entities: dict[PostItem, str] = field(default_factory=dict)


def upstream_fix(exc: BaseException) -> str:
    if isinstance(exc, ErpRejected):
        return f"the ERP refused the record ({exc.reason}): correct it in the ERP or the PSA, then replay"
    return "the ERP could not be reached within the retry budget: replay once it answers"


async def post_items(
    deps: FlowDeps,
    items: Sequence[PostItem],
    *,
    caches: PostingCaches,
    complete: Completer | None = None,
    stale_after: timedelta | None = None,
) -> BatchReport:
    if deps.tryton is not None:  # entries of projects booked in Tryton take that adapter (issue 9)
        from mutations.tryton_posting import post_to_tryton, tryton_projects

        routed = await tryton_projects(deps, items)
        if routed:
            report = await post_to_tryton(deps, routed, complete=complete, stale_after=stale_after)
            rest = [i for i in items if i not in routed]
            if rest:
                others = await post_items(
                    deps, rest, caches=caches, complete=complete, stale_after=stale_after
                )
                report.outcomes.update(others.outcomes)
                report.legal_entities.update(others.legal_entities)
            return report
    newest: dict[tuple[str, int], PostItem] = {}
    for item in items:
        key = (item.spec.kind, item.entry_id)
        if key not in newest or newest[key].version < item.version:
            newest[key] = item
    work = list(newest.values())
    async with deps.sessionmaker.begin() as session:
        run = await RunRepo(session, clock=deps.clock).start(
            BATCH_FLOW, subject=f"{len(items)} items", input={"items": len(items)}
        )
        # A head claim older than ``stale_after`` belongs to a dead worker (its batch was killed): the
        # worker passes a few of its leases, so a taken-over item does not wait out the 60 s default.
        heads = await PostingRepo(session, clock=deps.clock).claim_heads(
            run.id,
            sorted({i.spec.head(i.entry_id) for i in work}),
            **({"stale_after": stale_after} if stale_after is not None else {}),
        )
    report = BatchReport(run.id)
    for item in items:
        if newest[(item.spec.kind, item.entry_id)] is not item:
            report.outcomes[item] = Outcome("SUPERSEDED")
    busy = [i for i in work if i.spec.head(i.entry_id) not in heads]
    for item in busy:
        error = Conflict(f"entry {item.entry_id} is being posted by another worker", subject=item.key)
        report.outcomes[item] = Outcome("BUSY", error=error)
    mine = [i for i in work if i.spec.head(i.entry_id) in heads]
    plans: dict[PostItem, Plan] = {}
    attributes: dict[str, str | int] = {"p2c.run_id": run.id, "p2c.items": len(items)}
    with _tracer.start_as_current_span(f"flow {BATCH_FLOW}", attributes=attributes) as span:
        try:
            plans = await _plan(deps, mine, heads, caches, report)
            await _execute(deps, plans, report)
        finally:
            await _record(deps, report, plans, heads, mine, complete)
        failed = sum(1 for o in report.outcomes.values() if o.status == "FAILED")
        span.set_attribute("p2c.outcome", "FAILED" if failed else "SUCCEEDED")
        span.set_attribute("p2c.failed", failed)
    return report


async def _plan(
    deps: FlowDeps,
    items: list[PostItem],
    heads: dict[str, Any],
    caches: PostingCaches,
    report: BatchReport,
) -> dict[PostItem, Plan]:
    todo = [i for i in items if not stale(i, heads.get(i.spec.head(i.entry_id)))]
    for item in items:
        if item not in todo:
            report.outcomes[item] = Outcome("SUPERSEDED")
    if not todo:
        return {}
    snap = await Snapshot.load(deps, todo, caches)
    live_ids = [
        e for i in todo if i.spec.kind == POST_TIME and (e := live(heads.get(i.spec.head(i.entry_id))))
    ]
    erp_rows: dict[str, Record] = await deps.erp.time_bills_by_external_ids(live_ids) if live_ids else {}
    plans: dict[PostItem, Plan] = {}
    for item in todo:
        head = heads.get(item.spec.head(item.entry_id))
        row = erp_rows.get(str(live(head))) if live(head) else None
        decided: Plan | Failure
        if not item.approved:
            decided = plan_unapproved(item, head, row)
        else:
            ready = enrich(item, snap, deps.mapping)
            if isinstance(ready, Enriched):
                report.legal_entities[item] = ready.legal_entity
            checked = validate(ready, snap, deps.mapping) if isinstance(ready, Enriched) else ready
            if isinstance(checked, Failure):
                decided = checked
            elif isinstance(ready, Enriched):
                decided = plan_approved(ready, checked, head, row)
        if isinstance(decided, Failure):
            report.outcomes[item] = Outcome("FAILED", failure=decided)
        else:
            plans[item] = decided
    return plans


async def _execute(deps: FlowDeps, plans: dict[PostItem, Plan], report: BatchReport) -> None:
    limit = asyncio.Semaphore(max(1, deps.erp.config.max_concurrency))

    async def write(w: Write, correlation_id: str | None) -> str:
        async with limit:
            attributes = {"p2c.step_key": w.step}
            if correlation_id:
                attributes[CORRELATION_ID] = correlation_id
            with _tracer.start_as_current_span(f"step {w.name}", attributes=attributes):
                return await deps.erp.upsert(w.record, w.external_id, dict(w.body))

    async def one(plan: Plan) -> None:
        for w in plan.writes:
            try:
                plan.done[w.step] = await write(w, plan.item.correlation_id)
            except Exception as exc:
                _failed_write(deps, plan, w, exc, report)
                return
        report.outcomes[plan.item] = Outcome(plan.outcome)

    await asyncio.gather(*(one(p) for p in plans.values()))


def _failed_write(deps: FlowDeps, plan: Plan, w: Write, exc: Exception, report: BatchReport) -> None:
    item = plan.item
    if isinstance(exc, ErpRejected) and exc.reason == "PERIOD_CLOSED":
        deps.erp.invalidate()  # our cached periods were stale: the next batch reads them again
    transient = isinstance(exc, UpstreamUnavailable | UpstreamRateLimited)
    if transient and item.job_id is not None and item.attempts < MAX_ATTEMPTS:
        report.outcomes[item] = Outcome("RETRY", error=exc)
        return
    failure = Failure(reason_code(exc), str(exc), upstream_fix(exc), {"step": w.step, **describe_error(exc)})
    report.outcomes[item] = Outcome("FAILED", failure=failure)


async def _record(
    deps: FlowDeps,
    report: BatchReport,
    plans: dict[PostItem, Plan],
    heads: dict[str, Any],
    mine: list[PostItem],
    complete: Completer | None,
) -> None:
    steps: list[StepRow] = []
    released: dict[str, Any] = {}
    for item in mine:
        key = item.spec.head(item.entry_id)
        released[key] = heads.get(key)
        plan = plans.get(item)
        if plan is None:
            continue
        for w in plan.writes:
            if w.step in plan.done:
                result = {"erp_id": plan.done[w.step], "externalId": w.external_id}
                steps.append(StepRow(w.step, w.name, "SUCCEEDED", result))
        outcome = report.outcomes.get(item)
        if outcome is not None and outcome.status not in ("FAILED", "RETRY"):
            released[key] = jsonable(plan.head)
        elif plan.done:  # the reversal went through, the post did not: nothing is live now
            released[key] = {**(heads.get(key) or {}), "live": None}
    failures = {i: o.failure for i, o in report.outcomes.items() if o.status == "FAILED" and o.failure}
    for item, failure in failures.items():
        steps.append(StepRow(item.key, "post", "FAILED", error=failure.as_error()))
    await record_batch(deps, report, released, steps, failures, report.legal_entities.get, complete)


async def record_batch(
    deps: FlowDeps,
    report: BatchReport,
    released: dict[str, Any],
    steps: list[StepRow],
    failures: dict[PostItem, Failure],
    entity_of: Callable[[PostItem], str | None],
    complete: Completer | None,
) -> None:
    """A batch's outcome in one unit of work, whichever ERP it went to: its steps and released heads,
    an exception per failure, the exceptions its posts resolve, the run's end, the work items done."""
    async with deps.sessionmaker.begin() as session:
        ledger = PostingRepo(session, clock=deps.clock)
        await ledger.record_steps(report.run_id, _unique(steps))
        await ledger.release_heads(released)
        exceptions = ExceptionRepo(session, clock=deps.clock)
        for item, failure in failures.items():
            opened = await exceptions.open(
                flow=item.spec.kind,
                reason_code=failure.reason,
                payload={**item.payload(), "fix": failure.fix, "message": failure.message},
                upstream_error=jsonable(failure.as_error()),
                step=item.key,
                run_id=report.run_id,
                subject=item.spec.subject(item.entry_id),
                correlation_id=item.correlation_id,
                legal_entity=entity_of(item),
            )
            report.outcomes[item].exception_id = opened.id
        ok = [i for i, o in report.outcomes.items() if o.status not in ("FAILED", "RETRY", "BUSY")]
        for spec_kind in {i.spec.kind for i in ok}:
            subjects = [i.spec.subject(i.entry_id) for i in ok if i.spec.kind == spec_kind]
            active = await ledger.active_exceptions(spec_kind, subjects)
            for ids in active.values():
                for exception_id in ids:
                    await exceptions.mark_resolved(exception_id, f"posted by run {report.run_id}")
        await RunRepo(session, clock=deps.clock).finish(report.run_id, "FAILED" if failures else "SUCCEEDED")
        finished = [
            i.job_id for i, o in report.outcomes.items() if o.status not in ("RETRY", "BUSY", "FAILED")
        ]
        if complete is not None:
            kept = await complete(session, [j for j in finished if j is not None])
            for item, outcome in report.outcomes.items():
                outcome.completed = item.job_id in kept


def _unique(steps: Iterable[StepRow]) -> list[StepRow]:
    return list({s.key: s for s in steps}.values())
