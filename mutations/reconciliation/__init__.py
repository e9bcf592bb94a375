"""Reconciliation: for a legal entity and a period, what the CRM, the PSA and the ERP say, side by side.

    report = await reconcile(crm=crm, psa=psa, erp=erp, sessionmaker=sessionmaker, legal_entity="US01",
                             period_start=date(2026, 10, 1), period_end=date(2026, 10, 31))
    report.clean            # no mismatch
    report.mismatches       # every disagreement, by record in each system, with the reason when known
    report.summaries        # per check: records and totals on both sides, not-yet-synced, untracked

Four checks (``model`` lists the categories; ``work`` and ``money`` how records are tied):

1. engagements — CRM deals closed won in the period ↔ ERP jobs;
2. hours — PSA approved time spent in the period ↔ live ERP time bills;
3. invoices — ERP invoices dated in the period ↔ CRM ``Invoice__c``; ERP billed to date ↔
   ``Account.Billed_To_Date__c``;
4. receivables — ERP amount remaining ↔ ``Account.Open_Receivables__c``.

Either ERP: a legal entity booked in Tryton is read from Tryton (``tryton``) in the same record shapes
(``model``), each ERP checked against its own records only; with no entity, both ERPs and both halves.

Reads only, in bulk (``read``): a handful of paged requests per system whatever the firm's size, never one
per record; nothing is written anywhere. What "clean" means: every record the gateway is answerable for
agrees. Records it has not been handed yet (an ERP change its poller has not seen, CRM billing fields never
written back, deals won before go-live that never got a job) are counted beside the mismatches as
``not_yet_synced`` / ``untracked``, so a clean report on a firm that was never synced says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical.errors import Problem, ValidationFailed
from mutations.reconciliation.model import (
    CATEGORIES,
    CHECKS,
    CheckSummary,
    Mismatch,
    ReconciliationReport,
)
from mutations.reconciliation.money import check_invoices, check_receivables
from mutations.reconciliation.read import read_snapshot
from mutations.reconciliation.work import Scope, check_engagements, check_hours
from subgraphs.crm.client import CrmClient
from subgraphs.erp.client import ErpClient
from subgraphs.erp_tryton.client import TrytonClient
from subgraphs.psa.client import PsaClient

MAX_PERIOD_DAYS = 366


def validate_period(period_start: date, period_end: date) -> None:
    if period_end < period_start:
        raise ValidationFailed([Problem(field="to", message="the period ends before it starts")])
    if (period_end - period_start).days >= MAX_PERIOD_DAYS:
        raise ValidationFailed(
            [Problem(field="to", message=f"the period is longer than {MAX_PERIOD_DAYS} days")]
        )


async def reconcile(
    *,
    crm: CrmClient,
    psa: PsaClient,
    erp: ErpClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    legal_entity: str | None,
    period_start: date,
    period_end: date,
    as_of: date | None = None,
    tryton: TrytonClient | None = None,
    erp_by_entity: Mapping[str, str] | None = None,
) -> ReconciliationReport:
    """Compare the three systems for ``legal_entity`` (None: every entity) over the period, both ends
    inclusive. ``as_of`` (default today) is the date the point-in-time account figures are computed at.
    ``erp_by_entity`` (``FlowDeps.erp_by_entity``) names the entities booked in Tryton, read through
    ``tryton``; every other entity is NetSuite's.

    Raises ``ValidationFailed`` for a bad period, ``ConfigurationError`` for a Tryton entity without a
    Tryton connector, the connector's ``UpstreamError`` when a system cannot be read."""
    validate_period(period_start, period_end)
    as_of = as_of or date.today()
    snapshots = await read_snapshot(
        crm=crm,
        psa=psa,
        erp=erp,
        sessionmaker=sessionmaker,
        legal_entity=legal_entity,
        period_start=period_start,
        period_end=period_end,
        as_of=as_of,
        tryton=tryton,
        erp_by_entity=erp_by_entity,
    )
    report = ReconciliationReport(legal_entity, period_start, period_end, as_of)
    found: dict[str, list[Mismatch]] = {check: [] for check in CHECKS}
    for snap in snapshots:  # one per ERP; each answers for its own entities only
        scope = Scope(snap, legal_entity)
        engagements, found_e = check_engagements(scope)
        hours, found_h = check_hours(scope)
        invoices, found_i, pending = check_invoices(scope)
        receivables, found_r = check_receivables(scope, pending)
        for summary, mismatches in (
            (engagements, found_e),
            (hours, found_h),
            (invoices, found_i),
            (receivables, found_r),
        ):
            if summary.check in report.summaries:
                report.summaries[summary.check].absorb(summary)
            else:
                report.summaries[summary.check] = summary
            found[summary.check].extend(mismatches)
    report.mismatches = [m for check in CHECKS for m in found[check]]
    return report


__all__ = [
    "CATEGORIES",
    "CHECKS",
    "CheckSummary",
    "Mismatch",
    "ReconciliationReport",
    "reconcile",
    "validate_period",
]
