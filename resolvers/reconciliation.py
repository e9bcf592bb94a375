"""``reconciliation(filter)``: CRM vs ERP vs PSA for a legal entity and a period (see
``mutations.reconciliation``).

Finance, integration admins and auditors only (``FORBIDDEN`` for anyone else, as ``auditTrail``). The
caller's legal entities apply: asking for one it may not see is ``FORBIDDEN``; asking for none reconciles
every entity for a caller with ``*``, else each of its own entities separately — summed and listed
together — so no figure or row of another entity ever reaches it.

Wiring (``resolvers/mutation.py``, ``extend_schema_kwargs``)::

    query=merge_types("Query", (Query, OperationsQuery, ReconciliationQuery))
"""

from __future__ import annotations

import strawberry

from canonical.errors import Problem, ValidationFailed
from canonical.principal import Permission
from mutations.reconciliation import CATEGORIES, ReconciliationReport, reconcile, validate_period
from mutations.reconciliation.model import CheckSummary
from resolvers.context import Info
from resolvers.types.reconciliation import ReconciliationFilter, ReconciliationReportType

ACTION = "reconciliation"


def merge(reports: list[ReconciliationReport]) -> ReconciliationReport:
    """Several entities' reports as one: summaries added up, mismatches listed in order."""
    first = reports[0]
    merged = ReconciliationReport(None, first.period_start, first.period_end, first.as_of)
    for report in reports:
        merged.mismatches.extend(report.mismatches)
        for key, s in report.summaries.items():
            merged.summaries.setdefault(key, CheckSummary(s.check, s.source, s.target)).absorb(s)
    return merged


@strawberry.type
class ReconciliationQuery:
    @strawberry.field(
        description="CRM vs ERP vs PSA for a legal entity and period: deals won vs provisioned, approved vs "
        "posted hours, invoiced vs CRM billed, receivables vs CRM open receivables — every mismatch by "
        "record, with its reason when known. Finance, integration admins and auditors only."
    )
    async def reconciliation(self, info: Info, filter: ReconciliationFilter) -> ReconciliationReportType:
        ctx = info.context
        principal = ctx.principal
        principal.require(Permission.READ_AUDIT, action=ACTION)
        wanted = {c.strip().upper() for c in filter.categories or []}
        unknown = sorted(wanted - set(CATEGORIES))
        if unknown:
            raise ValidationFailed([Problem(field="categories", message=f"unknown {', '.join(unknown)}")])
        validate_period(filter.period_from, filter.period_to)
        if filter.legal_entity is not None:
            principal.require_entity(filter.legal_entity, action=ACTION)
            entities: list[str | None] = [filter.legal_entity]
        elif principal.all_entities:
            entities = [None]
        else:
            entities = [*sorted(principal.legal_entities)]
        reports = [
            await reconcile(
                crm=ctx.crm,
                psa=ctx.psa,
                erp=ctx.erp,
                sessionmaker=ctx.sessionmaker,
                legal_entity=entity,
                period_start=filter.period_from,
                period_end=filter.period_to,
                as_of=filter.as_of or ctx.as_of,
                tryton=ctx.tryton,  # an entity booked in Tryton is read there (issue 9)
                erp_by_entity=ctx.erp_by_entity,
            )
            for entity in entities
        ]
        if not reports:  # a principal with no entity at all sees nothing
            empty = ReconciliationReport(
                None, filter.period_from, filter.period_to, filter.as_of or ctx.as_of
            )
            return ReconciliationReportType.of(empty, [])
        report = reports[0] if len(reports) == 1 else merge(reports)
        if wanted:
            report = report.only(wanted)
        named = [e for e in entities if e is not None]
        return ReconciliationReportType.of(report, named)
