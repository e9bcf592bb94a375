"""The root ``Mutation``: governed writes, each one a flow of ``mutations`` run under an idempotency key.

    mutation {
      provisionEngagement(opportunityId: "006…", input: {template: "implementation"}, idempotencyKey: "k-1") {
        status erpCustomerId erpJobId psaProjectId exceptionId
      }
    }

Idempotency key: the ``idempotencyKey`` argument, else the request's ``Idempotency-Key`` header (the
argument wins). The argument is nullable only so the header can supply the key; with neither, the answer
is ``IDEMPOTENCY_KEY_REQUIRED``. The same key and input replay the first result and write nothing; the
same key with another input is ``IDEMPOTENCY_KEY_REUSED``; while the first is running, ``CONFLICT``.
Keys are scoped to the caller and the operation.

Permissions are checked before the key, so a caller who may not act gets ``FORBIDDEN`` whatever the
key. Every call is audited — refusals too. Replay and dismissal act only on exceptions of legal entities
the caller may see; any other is ``NOT_FOUND``, as if it did not exist.

Wiring (``resolvers/schema.py``)::

    query=strawberry.tools.merge_types("Query", (Query, OperationsQuery)), mutation=Mutation
"""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.tools import merge_types

from canonical.errors import NotFound
from canonical.principal import Permission
from mutations.exception_edit import edit_payload
from mutations.governance import jsonable, run_idempotent
from mutations.provision import ProvisionResult, provision_engagement
from mutations.replay import ExceptionSummary, ReplayResult, dismiss_exception, replay_exception
from resolvers.context import Info
from resolvers.flow_health import FlowHealthQuery
from resolvers.mapping_view import MappingQuery
from resolvers.operations import (
    IDEMPOTENCY_KEY_HEADER,
    KeyArgument,
    OperationsQuery,
    flow_deps,
    load_exception,
    permit,
    resolve_idempotency_key,
)
from resolvers.query import Query
from resolvers.reconciliation import ReconciliationQuery
from resolvers.subscription import Subscription
from resolvers.sync import SyncMutation, SyncQuery
from resolvers.types.operations import (
    EngagementInput,
    IntegrationException,
    ProvisionResultType,
    ReplayOutcome,
    flow_input,
)

PROVISION = "provisionEngagement"
REPLAY = "replayException"
DISMISS = "dismissException"


async def _visible(info: Info, exception_id: str) -> None:
    if await load_exception(info, exception_id) is None:
        raise NotFound("integration exception", exception_id)


async def _current(info: Info, exception_id: str) -> IntegrationException:
    exception = await load_exception(info, exception_id)
    if exception is None:  # only when the store lost it since: the caller could see it a moment ago
        raise NotFound("integration exception", exception_id)
    return exception


def _load_replay(data: Any) -> ReplayResult:
    return ReplayResult(ExceptionSummary(**data["exception"]), data.get("result"))


def _load_summary(data: Any) -> ExceptionSummary:
    return ExceptionSummary(**data)


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Closed-won deal → ERP customer, contract, billing schedule, project")
    async def provision_engagement(
        self,
        info: Info,
        opportunity_id: strawberry.ID,
        input: EngagementInput | None = None,
        idempotency_key: KeyArgument = None,
    ) -> ProvisionResultType:
        ctx, deps = info.context, flow_deps(info)
        engagement = flow_input(input)
        request = {"opportunityId": str(opportunity_id), "input": engagement}
        await permit(deps, info, Permission.PROVISION, PROVISION, request)

        async def provision() -> ProvisionResult:
            return await provision_engagement(
                deps,
                str(opportunity_id),
                engagement,
                principal=ctx.principal,
                correlation_id=ctx.correlation_id,
            )

        result = await run_idempotent(
            deps,
            ctx.principal,
            PROVISION,
            resolve_idempotency_key(info, idempotency_key),
            request,
            provision,
            load=ProvisionResult.from_json,
            dump=ProvisionResult.to_json,
            correlation_id=ctx.correlation_id,
        )
        return ProvisionResultType.of(result)

    @strawberry.mutation(
        description="Run a failed flow again from its first unfinished step; with `payload`, first "
        "replace the exception's payload (same fields, edited values: edit and replay)"
    )
    async def replay_exception(
        self,
        info: Info,
        id: strawberry.ID,
        idempotency_key: KeyArgument = None,
        payload: JSON | None = None,
    ) -> ReplayOutcome:
        ctx, deps = info.context, flow_deps(info)
        request: dict[str, Any] = {"exceptionId": str(id)}
        if payload is not None:
            request["payload"] = payload
        await permit(deps, info, Permission.REPLAY_EXCEPTION, REPLAY, request)

        async def replay() -> ReplayResult:
            await _visible(info, str(id))
            if payload is not None:
                await edit_payload(deps, str(id), payload)
            return await replay_exception(
                deps, str(id), principal=ctx.principal, correlation_id=ctx.correlation_id
            )

        outcome = await run_idempotent(
            deps,
            ctx.principal,
            REPLAY,
            resolve_idempotency_key(info, idempotency_key),
            request,
            replay,
            load=_load_replay,
            correlation_id=ctx.correlation_id,
        )
        return ReplayOutcome(
            exception=await _current(info, outcome.exception.id), result=jsonable(outcome.result)
        )

    @strawberry.mutation(description="Close an exception without replaying it; the reason is kept")
    async def dismiss_exception(
        self,
        info: Info,
        id: strawberry.ID,
        reason: str,
        idempotency_key: KeyArgument = None,
    ) -> IntegrationException:
        ctx, deps = info.context, flow_deps(info)
        request = {"exceptionId": str(id), "reason": reason}
        await permit(deps, info, Permission.DISMISS_EXCEPTION, DISMISS, request)

        async def dismiss() -> ExceptionSummary:
            await _visible(info, str(id))
            return await dismiss_exception(
                deps, str(id), reason, principal=ctx.principal, correlation_id=ctx.correlation_id
            )

        dismissed = await run_idempotent(
            deps,
            ctx.principal,
            DISMISS,
            resolve_idempotency_key(info, idempotency_key),
            request,
            dismiss,
            load=_load_summary,
            correlation_id=ctx.correlation_id,
        )
        return await _current(info, dismissed.id)


def extend_schema_kwargs() -> dict[str, Any]:
    """``query`` and ``mutation`` for ``strawberry.federation.Schema``: the read graph's ``Query`` with the
    operations' fields merged in, and this ``Mutation``."""
    return {
        "query": merge_types(
            "Query", (Query, OperationsQuery, SyncQuery, ReconciliationQuery, FlowHealthQuery, MappingQuery)
        ),
        "mutation": merge_types("Mutation", (Mutation, SyncMutation)),
        "subscription": Subscription,
    }


__all__ = ["IDEMPOTENCY_KEY_HEADER", "Mutation", "extend_schema_kwargs", "resolve_idempotency_key"]
