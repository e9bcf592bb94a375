"""The exception queue's actions: replay a failed flow from its first unfinished step, or dismiss it with a
reason. Both need their permission and are audited (``replayException``, ``dismissException``) — refusals
too: a missing permission, an exception the caller may not see, one already resolved.

    result = await replay_exception(deps, exception_id, principal=p, correlation_id=cid)
    result.exception.status   # RESOLVED, or OPEN again (with one more occurrence) when it still fails

Each flow registers how it is replayed (``register_replay``); ``provision_engagement`` re-reads the
opportunity and runs again with the input stored on the exception. ``HANDLER_MODULES`` names the module
that registers each flow's handler, so a process that never imported the flow (the CLI, a gateway that
has not posted time yet) still replays it.

Who the replayed flow runs as (a decision): replaying is its own permission
(``Permission.REPLAY_EXCEPTION``: finance and integration admins), separate from the flow's own
(``PROVISION``, ``POST_TIME``). Finance must be able to replay a provisioning exception without being
allowed to provision deals at will, so the replay does not re-run the flow *as the caller* (finance
would be refused ``PROVISION``). Instead:

1. the caller is checked for ``REPLAY_EXCEPTION`` and must see the exception's legal entity (an exception
   with none only with every entity, like every read; an unseen one is ``NOT_FOUND``, so replay reveals
   nothing about another entity);
2. the flow runs as ``Principal.system("replay")`` (integration admin) scoped to the exception's legal
   entity only — the work is exactly what the failed run was already authorised to do, and it cannot
   reach into another entity (a deal moved to another entity since is refused, and the exception
   re-opens ``FORBIDDEN``); an exception with no legal entity scopes the flow to the caller's grant;
3. the ``replayException`` audit entry records the real caller (``result.actedAs`` names the system
   principal); the flow's own audit entries carry ``system:replay`` and the same correlation id (one is
   generated when the caller gave none), so the two are joined.
"""

from __future__ import annotations

import dataclasses
import importlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from canonical.errors import Conflict, GatewayError, NotFound, Problem, ValidationFailed
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
HANDLER_MODULES = {
    "provision_engagement": "mutations.provision",
    "post_time": "mutations.time_posting",
    "post_expense": "mutations.time_posting",
    "release_milestone": "mutations.time_posting",
}
#: the principal a replayed flow runs as (scoped to the exception's legal entity; see the module docstring)
REPLAY_PRINCIPAL = "replay"


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


def _require_visible(principal: Principal, exception: IntegrationException) -> None:
    """``NOT_FOUND`` for an exception in a legal entity the caller may not see (one with no legal entity
    only with every entity): the same answer as for an id that does not exist."""
    if not principal.visible([exception.legal_entity], lambda code: code):
        raise NotFound("integration exception", exception.id)


def acting_principal(caller: Principal, legal_entity: str | None) -> Principal:
    """Who a replayed flow runs as: ``system:replay`` (integration admin) in ``legal_entity`` alone, or,
    for an exception with no legal entity, within the caller's own grant."""
    system = Principal.system(REPLAY_PRINCIPAL)
    if legal_entity is not None:
        return dataclasses.replace(system, all_entities=False, legal_entities=frozenset({legal_entity}))
    return dataclasses.replace(system, all_entities=caller.all_entities, legal_entities=caller.legal_entities)


async def replay_exception(
    deps: FlowDeps, exception_id: str, *, principal: Principal, correlation_id: str | None = None
) -> ReplayResult:
    """Run the failed flow again from its first unfinished step; RESOLVED on success, OPEN again if not.
    ``principal`` is the caller (needs ``REPLAY_EXCEPTION``); the flow runs as ``acting_principal``."""
    action = "replayException"
    correlation_id = correlation_id or f"replay-{uuid.uuid4().hex[:12]}"
    audited = {"exceptionId": exception_id}
    try:
        principal.require(Permission.REPLAY_EXCEPTION, action=action)
        async with unit_of_work(deps) as session:
            repo = ExceptionRepo(session, clock=deps.clock)
            row = await repo.get(exception_id)
            _require_visible(principal, row)
            handler = _handler(row.flow)  # before REPLAYING: an unreplayable flow is left as it was
            exception = ExceptionSummary.of(await repo.mark_replaying(exception_id))
            legal_entity = row.legal_entity
    except GatewayError as exc:
        await audit(
            deps,
            principal,
            action,
            exc.code,
            input=audited,
            result=exc.as_extensions(),
            correlation_id=correlation_id,
        )
        raise
    actor = acting_principal(principal, legal_entity)
    try:
        result, failed = await handler(deps, exception, actor, correlation_id)
    except BaseException as exc:
        await _settle(deps, exception, None, failure=exc)
        after = await _summary(deps, exception_id)
        await audit(
            deps,
            principal,
            action,
            after.status,
            input=audited,
            result={
                "actedAs": actor.subject,
                "error": describe_error(exc) if isinstance(exc, Exception) else None,
            },
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
        input=audited,
        result={"exception": after, "result": result, "failedExceptionId": failed, "actedAs": actor.subject},
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
            repo = ExceptionRepo(session, clock=deps.clock)
            _require_visible(principal, await repo.get(exception_id))
            dismissed = ExceptionSummary.of(
                await repo.dismiss(exception_id, by=principal.subject, note=reason.strip())
            )
    except GatewayError as exc:
        await audit(
            deps,
            principal,
            action,
            exc.code,
            input={"exceptionId": exception_id, "reason": reason},
            result=exc.as_extensions(),
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
    "HANDLER_MODULES",
    "REPLAY_PRINCIPAL",
    "ExceptionSummary",
    "ReplayHandler",
    "ReplayResult",
    "acting_principal",
    "dismiss_exception",
    "register_replay",
    "replay_exception",
]
