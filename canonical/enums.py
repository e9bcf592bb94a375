"""Enumerations of the canonical model. Values are stable strings: they are stored and exposed."""

from __future__ import annotations

from enum import StrEnum


class BillingMethod(StrEnum):
    FIXED_FEE = "FIXED_FEE"
    TIME_AND_MATERIALS = "TIME_AND_MATERIALS"
    MILESTONE = "MILESTONE"
    RETAINER = "RETAINER"
    SUBSCRIPTION = "SUBSCRIPTION"


class OpportunityStage(StrEnum):
    PROSPECTING = "Prospecting"
    QUALIFICATION = "Qualification"
    PROPOSAL = "Proposal/Price Quote"
    NEGOTIATION = "Negotiation/Review"
    CLOSED_WON = "Closed Won"
    CLOSED_LOST = "Closed Lost"


class ProjectStatus(StrEnum):
    PLANNED = "PLANNED"
    ACTIVE = "ACTIVE"
    ON_HOLD = "ON_HOLD"
    CLOSED = "CLOSED"


class TaskStatus(StrEnum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"


class MilestoneStatus(StrEnum):
    PLANNED = "PLANNED"
    COMPLETED = "COMPLETED"
    BILLED = "BILLED"


class ApprovalStatus(StrEnum):
    """Where a time entry or expense stands in the PSA."""

    SUBMITTED = "SUBMITTED"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


class PostingStatus(StrEnum):
    """Where a time entry or expense stands on its way to the ERP."""

    NOT_READY = "NOT_READY"  # not approved yet
    QUEUED = "QUEUED"
    POSTED = "POSTED"
    REVERSED = "REVERSED"
    EXCEPTION = "EXCEPTION"
    BILLED = "BILLED"


class InvoiceStatus(StrEnum):
    DRAFT = "DRAFT"
    OPEN = "OPEN"
    PARTIALLY_PAID = "PARTIALLY_PAID"
    PAID = "PAID"
    VOIDED = "VOIDED"


class PaymentStatus(StrEnum):
    RECEIVED = "RECEIVED"
    APPLIED = "APPLIED"
    REVERSED = "REVERSED"


class PeriodPolicy(StrEnum):
    """What to do with a transaction dated in a closed accounting period."""

    NEXT_OPEN = "NEXT_OPEN"  # post to the first open period after it
    EXCEPTION = "EXCEPTION"  # refuse; a person decides


class HealthStatus(StrEnum):
    GREEN = "GREEN"
    AMBER = "AMBER"
    RED = "RED"


class RunStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class ExceptionStatus(StrEnum):
    OPEN = "OPEN"
    REPLAYING = "REPLAYING"
    RESOLVED = "RESOLVED"
    DISMISSED = "DISMISSED"
