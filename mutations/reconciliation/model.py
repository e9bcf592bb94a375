"""What a reconciliation reports: mismatches by record, totals on both sides, what is not yet synced.

Categories (``Mismatch.category``), grouped by the check (``Mismatch.check``) that raises them:

    engagements  WON_NOT_PROVISIONED   a CRM closed-won deal of the period with no ERP job
                 PROVISIONED_NOT_WON   an ERP job tied to a deal of the period that is not (or no longer) won
    hours        NOT_POSTED            approved PSA time with no live ERP time bill
                 POSTED_NOT_APPROVED   a live ERP time bill whose PSA entry is not approved (or is gone)
                 HOURS_DIFFER          both sides hold it, the hours differ
    invoices     MISSING_IN_CRM        an ERP invoice the gateway has seen but the CRM's Invoice__c lacks
                 MISSING_IN_ERP        a CRM Invoice__c whose ERP invoice does not exist
                 AMOUNT_DIFFERS        Invoice__c.Amount__c ≠ the ERP total, or Account.Billed_To_Date__c ≠
                                       the ERP's billed to date (only when no invoice of that customer
                                       already explains it)
    receivables  RECEIVABLES_DIFFER    Account.Open_Receivables__c ≠ the ERP's amount remaining

``NOT_YET_SYNCED`` is not a mismatch: a count per check of records the gateway has not been asked to carry
yet (an ERP invoice its billing poller has never seen; CRM billing fields never written back). Likewise
``untracked``: won deals that closed before the gateway went live and never got an ERP job — the firm's
history, not a gateway failure. Both are reported beside the mismatches, never hidden. A record that
another ERP issued before the entity moved to this one (a CRM ``Invoice__c`` or a won deal whose ERP id
names the other ERP) is ``untracked`` too.

The records the checks read (``read.Snapshot``) — the contract an ERP reader meets. Whatever the ERP, its
side comes in NetSuite's SuiteQL column names, every id a string that no other ERP's id can equal (NetSuite's
internal ids as they are; Tryton's prefixed ``tryton:``, ``reconciliation.tryton``):

    jobs         id, externalid (our project canonical id, or None for one we did not make), entityid (the
                 project code), companyname, parent (the customer id), subsidiary
    time_bills   id, externalid (``psa:<entry>:v<version>`` for a gateway posting, else None), employee,
                 customer (the job id), trandate (ISO date), hours, approvalstatus ("approved" = live),
                 memo
    erp_invoices id, externalid (the canonical id, which the CRM's ``P2C_Id__c`` copies), tranid, entity
                 (the customer id), trandate, currency, foreigntotal, amountremaining, subsidiary (+ what
                 the ERP's own fingerprint reads: NetSuite's ``invoice_from_record``, Tryton's
                 ``fingerprint`` value precomputed)
    totals       entity (customer id), currency, type ("CustInvc" adds to billed and remaining,
                 "CustCred" subtracts from billed), total, remaining — as of ``as_of``
    reference    ``subgraphs.erp.refdata.Reference``: subsidiary → legal entity, currency id → ISO code,
                 employees by id with their e-mail (how PSA users are matched)
    store        cross-references in the ERP's system ("erp", "tryton") under the same ids as above
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

ENGAGEMENTS, HOURS, INVOICES, RECEIVABLES = "engagements", "hours", "invoices", "receivables"
CHECKS = (ENGAGEMENTS, HOURS, INVOICES, RECEIVABLES)

WON_NOT_PROVISIONED = "WON_NOT_PROVISIONED"
PROVISIONED_NOT_WON = "PROVISIONED_NOT_WON"
NOT_POSTED = "NOT_POSTED"
POSTED_NOT_APPROVED = "POSTED_NOT_APPROVED"
HOURS_DIFFER = "HOURS_DIFFER"
MISSING_IN_CRM = "MISSING_IN_CRM"
MISSING_IN_ERP = "MISSING_IN_ERP"
AMOUNT_DIFFERS = "AMOUNT_DIFFERS"
RECEIVABLES_DIFFER = "RECEIVABLES_DIFFER"
CATEGORIES: dict[str, str] = {
    WON_NOT_PROVISIONED: ENGAGEMENTS,
    PROVISIONED_NOT_WON: ENGAGEMENTS,
    NOT_POSTED: HOURS,
    POSTED_NOT_APPROVED: HOURS,
    HOURS_DIFFER: HOURS,
    MISSING_IN_CRM: INVOICES,
    MISSING_IN_ERP: INVOICES,
    AMOUNT_DIFFERS: INVOICES,
    RECEIVABLES_DIFFER: RECEIVABLES,
}
#: Reason when the ERP changed after the billing poller last saw it: the next round writes it back.
PENDING_SYNC = "PENDING_SYNC"

Value = Decimal | str | int | None


@dataclass
class Mismatch:
    """One disagreement, named by record in every system that holds it."""

    category: str
    canonical_id: str | None
    legal_entity: str | None
    crm_id: str | None = None
    erp_id: str | None = None
    psa_id: str | None = None
    expected: Value = None  # what the owner says (ERP for money, PSA for hours, CRM for deals)
    actual: Value = None  # what the other system holds
    currency: str | None = None
    reason: str | None = None  # a reason code when known (an open exception's, PENDING_SYNC, ...)
    detail: str = ""

    @property
    def check(self) -> str:
        return CATEGORIES[self.category]

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["check"] = self.check
        for key in ("expected", "actual"):
            if isinstance(out[key], Decimal):
                out[key] = str(out[key])
        return out


@dataclass
class CheckSummary:
    """One check's figures: records and totals on each side, mismatches, what is not yet synced."""

    check: str
    source: str  # the owner's side, e.g. "crm" for engagements, "psa" for hours
    target: str
    source_records: int = 0
    target_records: int = 0
    source_total: Decimal = Decimal(0)
    target_total: Decimal = Decimal(0)
    unit: str = ""  # "deals", "hours", or a currency code ("USD"; "mixed" across currencies)
    mismatches: int = 0
    not_yet_synced: int = 0
    untracked: int = 0

    def add_total(self, side: str, amount: Decimal, unit: str) -> None:
        if self.unit and self.unit != unit:
            self.unit = "mixed"
        elif not self.unit:
            self.unit = unit
        if side == "source":
            self.source_total += amount
        else:
            self.target_total += amount

    def absorb(self, other: CheckSummary) -> None:
        """Add another part's figures (another ERP's, another entity's) into this one."""
        self.source_records += other.source_records
        self.target_records += other.target_records
        if other.unit:
            self.add_total("source", other.source_total, other.unit)
            self.add_total("target", other.target_total, other.unit)
        self.mismatches += other.mismatches
        self.not_yet_synced += other.not_yet_synced
        self.untracked += other.untracked

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["source_total"] = str(self.source_total)
        out["target_total"] = str(self.target_total)
        return out


@dataclass
class ReconciliationReport:
    legal_entity: str | None
    period_start: date
    period_end: date
    as_of: date
    summaries: dict[str, CheckSummary] = field(default_factory=dict)
    mismatches: list[Mismatch] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)  # upstream reads by system, for the record

    @property
    def clean(self) -> bool:
        return not self.mismatches

    def counts(self) -> dict[str, int]:
        found = dict.fromkeys(CATEGORIES, 0)
        for m in self.mismatches:
            found[m.category] += 1
        return found

    def only(self, categories: set[str]) -> ReconciliationReport:
        """The report restricted to some categories (the summaries of their checks kept)."""
        checks = {CATEGORIES[c] for c in categories}
        return ReconciliationReport(
            self.legal_entity,
            self.period_start,
            self.period_end,
            self.as_of,
            {k: v for k, v in self.summaries.items() if k in checks},
            [m for m in self.mismatches if m.category in categories],
            dict(self.requests),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "legal_entity": self.legal_entity,
            "period": {"from": self.period_start.isoformat(), "to": self.period_end.isoformat()},
            "as_of": self.as_of.isoformat(),
            "clean": self.clean,
            "counts": self.counts(),
            "summaries": {k: v.as_dict() for k, v in self.summaries.items()},
            "mismatches": [m.as_dict() for m in self.mismatches],
        }


__all__ = [
    "AMOUNT_DIFFERS",
    "CATEGORIES",
    "CHECKS",
    "HOURS_DIFFER",
    "MISSING_IN_CRM",
    "MISSING_IN_ERP",
    "NOT_POSTED",
    "PENDING_SYNC",
    "POSTED_NOT_APPROVED",
    "PROVISIONED_NOT_WON",
    "RECEIVABLES_DIFFER",
    "WON_NOT_PROVISIONED",
    "CheckSummary",
    "Mismatch",
    "ReconciliationReport",
]
