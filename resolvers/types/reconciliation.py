"""GraphQL types of a reconciliation report (``mutations.reconciliation``): the filter, per-check
summaries, and every mismatch by record in each system."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import strawberry

from mutations.reconciliation.model import CheckSummary, Mismatch, ReconciliationReport


@strawberry.input(description="A legal entity (default: every one the caller may see) and a period.")
class ReconciliationFilter:
    period_from: date = strawberry.field(name="from", description="first day of the period")
    period_to: date = strawberry.field(name="to", description="last day of the period, inclusive")
    legal_entity: str | None = None
    categories: list[str] | None = strawberry.field(
        default=None, description="only these mismatch categories (e.g. NOT_POSTED, AMOUNT_DIFFERS)"
    )
    as_of: date | None = strawberry.field(
        default=None, description="date of the point-in-time account figures (default: the request's)"
    )


@strawberry.type(name="ReconciliationCheck")
class CheckSummaryType:
    check: str
    source: str = strawberry.field(description="the owner's side: crm (deals), psa (hours), erp (money)")
    target: str
    source_records: int
    target_records: int
    source_total: Decimal
    target_total: Decimal
    unit: str = strawberry.field(description="deals, hours, a currency code, or mixed")
    mismatches: int
    not_yet_synced: int = strawberry.field(description="records the gateway has not been handed yet")
    untracked: int = strawberry.field(description="won before go-live, never provisioned: history")

    @classmethod
    def of(cls, s: CheckSummary) -> CheckSummaryType:
        return cls(
            check=s.check,
            source=s.source,
            target=s.target,
            source_records=s.source_records,
            target_records=s.target_records,
            source_total=s.source_total,
            target_total=s.target_total,
            unit=s.unit,
            mismatches=s.mismatches,
            not_yet_synced=s.not_yet_synced,
            untracked=s.untracked,
        )


@strawberry.type(name="ReconciliationMismatch")
class MismatchType:
    category: str
    check: str
    canonical_id: str | None
    legal_entity: str | None
    crm_id: str | None
    erp_id: str | None
    psa_id: str | None
    expected: str | None
    actual: str | None
    currency: str | None
    reason: str | None
    detail: str

    @classmethod
    def of(cls, m: Mismatch) -> MismatchType:
        return cls(
            category=m.category,
            check=m.check,
            canonical_id=m.canonical_id,
            legal_entity=m.legal_entity,
            crm_id=m.crm_id,
            erp_id=m.erp_id,
            psa_id=m.psa_id,
            expected=None if m.expected is None else str(m.expected),
            actual=None if m.actual is None else str(m.actual),
            currency=m.currency,
            reason=m.reason,
            detail=m.detail,
        )


@strawberry.type(name="ReconciliationCount")
class CategoryCount:
    category: str
    count: int


@strawberry.type(name="ReconciliationReport")
class ReconciliationReportType:
    legal_entities: list[str] = strawberry.field(description="the entities reconciled; empty: all")
    period_from: date = strawberry.field(name="from")
    period_to: date = strawberry.field(name="to")
    as_of: date
    clean: bool
    counts: list[CategoryCount]
    checks: list[CheckSummaryType]
    mismatches: list[MismatchType]

    @classmethod
    def of(cls, report: ReconciliationReport, entities: list[str]) -> ReconciliationReportType:
        return cls(
            legal_entities=entities,
            period_from=report.period_start,
            period_to=report.period_end,
            as_of=report.as_of,
            clean=report.clean,
            counts=[CategoryCount(category=c, count=n) for c, n in report.counts().items()],
            checks=[CheckSummaryType.of(s) for s in report.summaries.values()],
            mismatches=[MismatchType.of(m) for m in report.mismatches],
        )
