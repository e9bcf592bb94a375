"""The exception queue's actions: replay a failed flow from its first unfinished step, or dismiss it with a
reason. Both need their permission and are audited (``replayException``, ``dismissException``).

    result = await replay_exception(deps, exception_id, principal=p, correlation_id=cid)
    result.exception.status   # RESOLVED, or OPEN again (with one more occurrence) when it still fails

Each flow registers how it is replayed (``register_replay``); ``provision_engagement`` re-reads the
opportunity and runs again with the input stored on the exception.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Awaitable, Callable
from typing import Any

from canonical.errors import Conflict, GatewayError, Problem, ValidationFailed
from canonical.principal import Permission, Principal
from mutations.deps import FlowDeps
from mutations.governance import audit, describe_error, reason_code, unit_of_work
from store.models import IntegrationException
from store.repositories import ExceptionRepo


@dataclasses.dataclass(frozen=True)
class ExceptionSummary:
    id: str
    flow: str
    reason_code: str
    status: str
    step: str | None
    subject: str | None
    correlation_id: str | None
    resolution_note: str | None

    @classmethod
    def of(cls, e: IntegrationException) -> ExceptionSummary:
        return cls(
            e.id, e.flow, e.reason_code, e.status, e.step, e.subject, e.correlation_id, e.resolution_note
        )


@dataclasses.dataclass(frozen=True)
class ReplayResult:
    exception: ExceptionSummary  # after the replay: RESOLVED, or OPEN again
    result: Any  # what the flow returned (e.g. a ``ProvisionResult``)


#: flow → ``handler(deps, exception, principal, correlation_id) -> (result, failed exception id | None)``
ReplayHandler = Callable[
    [FlowDeps, ExceptionSummary, Principal, str | None], Awaitable[tuple[Any, str | None]]
]
REPLAY_HANDLERS: dict[str, ReplayHandler] = {}
#: where a flow's handler registers itself on import (so replay works before anything imported the flow)
HANDLER_MODULES = {"provision_engagement": "mutations.provision"}


def register_replay(flow: str, handler: ReplayHandler) -> None:
    REPLAY_HANDLERS[flow] = handler


def _handler(flow: str) -> ReplayHandler:
    if flow not in REPLAY_HANDLERS and flow in HANDLER_MODULES:
        importlib.import_module(HANDLER_MODULES[flow])
    if flow not in REPLAY_HANDLERS:
        raise Conflict(f"exceptions of flow {flow} cannot be replayed", flow=flow)
    return REPLAY_HANDLERS[flow]


async def _summary(deps: FlowDeps, exception_id: str) -> ExceptionSummary:
    async with deps.sessionmaker() as session:
        return ExceptionSummary.of(await ExceptionRepo(session).get(exception_id))


async def replay_exception(
    deps: FlowDeps, exception_id: str, *, principal: Principal, correlation_id: str | None = None
) -> ReplayResult:
    """Run the failed flow again from its first unfinished step; RESOLVED on success, OPEN again if not."""
    action = "replayException"
    principal.require(Permission.REPLAY_EXCEPTION, action=action)
    try:
        async with unit_of_work(deps) as session:
            exception = ExceptionSummary.of(
                await ExceptionRepo(session, clock=deps.clock).mark_replaying(exception_id)
            )
        handler = _handler(exception.flow)
    except GatewayError as exc:
        await audit(
            deps,
            principal,
            action,
            exc.code,
            input={"exceptionId": exception_id},
            correlation_id=correlation_id,
        )
        raise
    try:
        result, failed = await handler(deps, exception, principal, correlation_id)
    except BaseException as exc:
        await _settle(deps, exception, None, failure=exc)
        after = await _summary(deps, exception_id)
        await audit(
            deps,
            principal,
            action,
            after.status,
            input={"exceptionId": exception_id},
            result=describe_error(exc) if isinstance(exc, Exception) else None,
            correlation_id=correlation_id,
        )
        raise
    await _settle(deps, exception, failed)
    after = await _summary(deps, exception_id)
    await audit(
        deps,
        principal,
        action,
        after.status,
        input={"exceptionId": exception_id},
        result={"exception": after, "result": result, "failedExceptionId": failed},
        correlation_id=correlation_id,
    )
    return ReplayResult(after, result)


async def _settle(
    deps: FlowDeps, exception: ExceptionSummary, failed: str | None, failure: BaseException | None = None
) -> None:
    """After a replay: the flow resolves or re-opens its own exceptions; whatever is still REPLAYING is
    settled here — RESOLVED when its step got through (even if a later one failed), else OPEN again."""
    async with unit_of_work(deps) as session:
        repo = ExceptionRepo(session, clock=deps.clock)
        current = await repo.get(exception.id)
        if current.status != "REPLAYING":
            return
        if failure is None and failed != exception.id:
            note = "replayed" if failed is None else f"replayed; a later step failed (exception {failed})"
            await repo.mark_resolved(exception.id, note)
            return
        await repo.open(
            flow=exception.flow,
            reason_code=reason_code(failure) if failure is not None else exception.reason_code,
            upstream_error=describe_error(failure) if isinstance(failure, Exception) else None,
            step=exception.step,
            subject=exception.subject,
        )


async def dismiss_exception(
    deps: FlowDeps, exception_id: str, reason: str, *, principal: Principal, correlation_id: str | None = None
) -> ExceptionSummary:
    """Close an exception without replaying it; the reason is kept and audited."""
    action = "dismissException"
    try:
        principal.require(Permission.DISMISS_EXCEPTION, action=action)
        if not reason.strip():
            raise ValidationFailed([Problem("reason", "say why the exception is dismissed", "MISSING")])
        async with unit_of_work(deps) as session:
            dismissed = ExceptionSummary.of(
                await ExceptionRepo(session, clock=deps.clock).dismiss(
                    exception_id, by=principal.subject, note=reason.strip()
                )
            )
    except GatewayError as exc:
        await audit(
            deps,
            principal,
            action,
            exc.code,
            input={"exceptionId": exception_id, "reason": reason},
            correlation_id=correlation_id,
        )
        raise
    await audit(
        deps,
        principal,
        action,
        "DISMISSED",
        input={"exceptionId": exception_id, "reason": reason},
        result=dismissed,
        correlation_id=correlation_id,
    )
    return dismissed


__all__ = [
    "ExceptionSummary",
    "ReplayHandler",
    "ReplayResult",
    "dismiss_exception",
    "register_replay",
    "replay_exception",
]
