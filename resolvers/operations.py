"""Query fields of the ops console and the project-setup form: ``provisioningOptions``,
``validateEngagement``, ``auditTrail``, ``integrationExceptions``, ``integrationRun``, ``integrationRuns``
(by correlation id, flow, subject or status) and ``viewer`` (who the token says the caller is).

Flows need more than a read does — the mapping in force and, for mutations, the request's
``Idempotency-Key`` header — so the gateway wraps its read context::

    context = with_operations(build_context(...), mapping=runtime.mapping,
                              idempotency_key=request.headers.get("idempotency-key"))

Visibility: exceptions and runs of a legal entity the caller may not see are invisible (left out of
lists, null by id, never an error that reveals them); the audit trail is for finance, integration admins
and auditors only (``FORBIDDEN`` for anyone else).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import strawberry

from canonical.errors import ConfigurationError, NotFound, PermissionDenied
from canonical.mapping import MappingSet
from canonical.principal import ALL_ENTITIES, Permission, Principal
from mutations.deps import Clock, FlowDeps
from mutations.governance import audit, jsonable
from mutations.provision import provisioning_options, validate_engagement
from resolvers.context import Context, Info
from resolvers.pagination import (
    DEFAULT_PAGE_SIZE,
    Connection,
    Edge,
    check_page_size,
    decode_cursor,
    paginate,
)
from resolvers.types.operations import (
    AuditEntry,
    AuditFilter,
    EngagementInput,
    EngagementValidation,
    IntegrationException,
    IntegrationExceptionFilter,
    IntegrationRun,
    IntegrationRunFilter,
    Problem,
    ProvisioningOptionsType,
    Viewer,
    flow_input,
)
from store.models import IntegrationException as ExceptionRow
from store.models import IntegrationRun as RunRow
from store.models import utcnow
from store.repositories import AuditRepo, ExceptionRepo, RunRepo
from store.repositories.run_stats import RunStatsRepo

#: The request header a mutation's idempotency key may come in (when the argument is omitted).
IDEMPOTENCY_KEY_HEADER = "idempotency-key"
#: How many exceptions one list reads from the store per legal entity before filtering and paging.
EXCEPTION_SCAN_LIMIT = 1000
#: How many runs ``integrationRuns`` reads from the store per legal entity before paging.
RUN_SCAN_LIMIT = 1000


@dataclasses.dataclass
class OperationsContext(Context):
    """The read ``Context`` plus what flows need: the mapping, a clock, the ``Idempotency-Key`` header."""

    mapping: MappingSet | None = None
    idempotency_key: str | None = None
    clock: Clock = utcnow


KeyArgument = Annotated[
    str | None,
    strawberry.argument(description="When omitted, the Idempotency-Key header. One of them is required."),
]


def resolve_idempotency_key(info: Info, argument: str | None) -> str | None:
    """The argument when given (even empty: that is a missing key), else the request's header."""
    if argument is not None:
        return argument
    ctx = info.context
    return ctx.idempotency_key if isinstance(ctx, OperationsContext) else None


async def permit(deps: FlowDeps, info: Info, permission: Permission, action: str, input: Any) -> None:
    """``FORBIDDEN`` before anything else, audited like every other outcome of a mutation."""
    ctx = info.context
    try:
        ctx.principal.require(permission, action=action)
    except PermissionDenied as exc:
        await audit(
            deps,
            ctx.principal,
            action,
            exc.code,
            input=jsonable(input),
            result=exc.as_extensions(),
            correlation_id=ctx.correlation_id,
        )
        raise


def with_operations(
    context: Context,
    *,
    mapping: MappingSet | None,
    idempotency_key: str | None = None,
    clock: Clock = utcnow,
) -> OperationsContext:
    fields = {f.name: getattr(context, f.name) for f in dataclasses.fields(Context)}
    return OperationsContext(**fields, mapping=mapping, idempotency_key=idempotency_key or None, clock=clock)


def flow_deps(info: Info) -> FlowDeps:
    """``FlowDeps`` over the request's connectors and store."""
    ctx = info.context
    if not isinstance(ctx, OperationsContext) or ctx.mapping is None:
        raise ConfigurationError("flows need the mapping: build the context with with_operations()")
    return FlowDeps(
        crm=ctx.crm,
        psa=ctx.psa,
        erp=ctx.erp,
        sessionmaker=ctx.sessionmaker,
        mapping=ctx.mapping,
        clock=ctx.clock,
        tryton=ctx.tryton,
        erp_by_entity=ctx.erp_by_entity,
    )


def now_of(info: Info) -> datetime:
    ctx = info.context
    return ctx.clock() if isinstance(ctx, OperationsContext) else utcnow()


def _utc(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def _sees(principal: Principal, legal_entity: str | None) -> bool:
    return bool(principal.visible([legal_entity], lambda code: code))


async def load_exception(info: Info, exception_id: str) -> IntegrationException | None:
    """One exception by id; None when unknown or in a legal entity the caller may not see."""
    row = await visible_exception_row(info.context, exception_id)
    return None if row is None else IntegrationException.of(row, now_of(info))


async def visible_exception_row(ctx: Context, exception_id: str) -> ExceptionRow | None:
    async with ctx.sessionmaker() as session:
        try:
            row = await ExceptionRepo(session).get(exception_id)
        except NotFound:
            return None
    return row if _sees(ctx.principal, row.legal_entity) else None


async def _exception_rows(ctx: Context, f: IntegrationExceptionFilter, now: datetime) -> list[ExceptionRow]:
    principal = ctx.principal
    if f.legal_entity is not None:
        entities: Sequence[str | None] = [f.legal_entity] if principal.can_see_entity(f.legal_entity) else []
    elif principal.all_entities:
        entities = [None]  # one query over every entity (and rows with none)
    else:
        entities = sorted(principal.legal_entities)
    statuses = [s.value for s in f.status] if f.status else None
    older_than = timedelta(seconds=f.older_than) if f.older_than is not None else None
    rows: dict[str, ExceptionRow] = {}
    async with ctx.sessionmaker() as session:
        repo = ExceptionRepo(session, clock=lambda: now)
        for entity in entities:
            found = await repo.list(
                status=statuses,
                flow=f.flow,
                reason_code=f.reason_code,
                legal_entity=entity,
                subject=f.subject,
                older_than=older_than,
                limit=EXCEPTION_SCAN_LIMIT,
            )
            rows.update((row.id, row) for row in found)
    visible = principal.visible(rows.values(), lambda row: row.legal_entity)
    if f.correlation_id is not None:
        visible = [row for row in visible if row.correlation_id == f.correlation_id]
    return sorted(visible, key=lambda row: (row.created_at, row.id))


def _entities(principal: Principal, legal_entity: str | None) -> Sequence[str | None]:
    """The legal entities one store query per entity should cover (None: one query over all of them)."""
    if legal_entity is not None:
        return [legal_entity] if principal.can_see_entity(legal_entity) else []
    return [None] if principal.all_entities else sorted(principal.legal_entities)


def viewer_of(principal: Principal) -> Viewer:
    return Viewer(
        subject=principal.subject,
        roles=sorted(str(r) for r in principal.roles),
        legal_entities=[ALL_ENTITIES] if principal.all_entities else sorted(principal.legal_entities),
        permissions=sorted(str(p) for p in Permission if principal.may(p)),
    )


@strawberry.type
class OperationsQuery:
    @strawberry.field(description="What the project-setup form offers for a deal")
    async def provisioning_options(
        self, info: Info, opportunity_id: strawberry.ID
    ) -> ProvisioningOptionsType:
        options = await provisioning_options(flow_deps(info), str(opportunity_id))
        return ProvisioningOptionsType.of(options)

    @strawberry.field(
        description="Dry run of provisionEngagement: every problem, field by field; writes nothing"
    )
    async def validate_engagement(
        self, info: Info, opportunity_id: strawberry.ID, input: EngagementInput | None = None
    ) -> EngagementValidation:
        problems = await validate_engagement(flow_deps(info), str(opportunity_id), flow_input(input))
        return EngagementValidation(valid=not problems, problems=[Problem.of(p) for p in problems])

    @strawberry.field(
        description="Who did what, when; newest first. Finance, integration admins and auditors only. "
        "The trail is unbounded: totalCount counts through this page, plus one when there is a next"
    )
    async def audit_trail(
        self,
        info: Info,
        filter: AuditFilter | None = None,
        first: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
    ) -> Connection[AuditEntry]:
        ctx = info.context
        ctx.principal.require(Permission.READ_AUDIT, action="auditTrail")
        check_page_size(first)
        f = filter or AuditFilter()
        start = decode_cursor(after) + 1 if after else 0
        async with ctx.sessionmaker() as session:
            # One row past the page tells whether there is a next one; positions stay the cursors.
            rows = await AuditRepo(session).query(
                operation=f.operation,
                principal=f.principal,
                correlation_id=f.correlation_id,
                since=_utc(f.since),
                until=_utc(f.until),
                limit=start + first + 1,
            )
        return paginate([AuditEntry.of(row) for row in rows], first, after)

    @strawberry.field(description="The exception queue, oldest first; only your legal entities' rows")
    async def integration_exceptions(
        self,
        info: Info,
        filter: IntegrationExceptionFilter | None = None,
        first: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
    ) -> Connection[IntegrationException]:
        check_page_size(first)
        now = now_of(info)
        rows = await _exception_rows(info.context, filter or IntegrationExceptionFilter(), now)
        return paginate([IntegrationException.of(row, now) for row in rows], first, after)

    @strawberry.field(description="One exception; null when unknown or not visible to you")
    async def integration_exception(self, info: Info, id: strawberry.ID) -> IntegrationException | None:
        return await load_exception(info, str(id))

    @strawberry.field(
        description="A run with its steps, attempts and errors; null when unknown or not visible"
    )
    async def integration_run(self, info: Info, id: strawberry.ID) -> IntegrationRun | None:
        ctx = info.context
        async with ctx.sessionmaker() as session:
            runs = RunRepo(session)
            try:
                run = await runs.get(str(id))
            except NotFound:
                return None
            if not _sees(ctx.principal, run.legal_entity):
                return None
            return IntegrationRun.of(run, list(await runs.steps(run.id)))

    @strawberry.field(
        description="Runs with their steps, newest first; only your legal entities' rows. Give a "
        "correlationId to find everything one request or event did"
    )
    async def integration_runs(
        self,
        info: Info,
        filter: IntegrationRunFilter | None = None,
        first: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
    ) -> Connection[IntegrationRun]:
        check_page_size(first)
        ctx, f = info.context, filter or IntegrationRunFilter()
        async with ctx.sessionmaker() as session:
            stats = RunStatsRepo(session)
            found: dict[str, RunRow] = {}
            for entity in _entities(ctx.principal, f.legal_entity):
                for run in await stats.runs(
                    correlation_id=f.correlation_id,
                    flow=f.flow,
                    subject=f.subject,
                    status=f.status,
                    legal_entity=entity,
                    limit=RUN_SCAN_LIMIT,
                ):
                    found[run.id] = run
            rows = sorted(
                ctx.principal.visible(found.values(), lambda r: r.legal_entity),
                key=lambda r: (r.started_at, r.id),
                reverse=True,
            )
            page = paginate(rows, first, after)
            steps = await stats.steps_of(edge.node.id for edge in page.edges)
        edges = [Edge(cursor=e.cursor, node=IntegrationRun.of(e.node, steps[e.node.id])) for e in page.edges]
        return Connection(edges=edges, page_info=page.page_info, count=page.count)

    @strawberry.field(description="Who the token says you are: roles, legal entities, permissions")
    def viewer(self, info: Info) -> Viewer:
        return viewer_of(info.context.principal)


__all__ = [
    "EXCEPTION_SCAN_LIMIT",
    "IDEMPOTENCY_KEY_HEADER",
    "RUN_SCAN_LIMIT",
    "OperationsContext",
    "OperationsQuery",
    "flow_deps",
    "load_exception",
    "viewer_of",
    "visible_exception_row",
    "with_operations",
]
