"""The vocabulary of time and expense posting: work item kinds, keys, reason codes and the values that pass
between intake, enrichment, validation and posting.

Keys (deterministic, see STYLE.md):

    work item dedupe    post_time:<entry id>:v<version>          post_expense:<expense id>:v<version>
    ERP external id     psa:<entry id>:v<version>                (timeBill / expenseReport)
    step                erp:timebill:<entry id>:v<version>       erp:expensereport:<expense id>:v<version>
    reversal step       erp:timebill:<entry id>:v<version>:reversal
    head (ledger)       psa:time:<entry id>:head                 psa:expense:<expense id>:head
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from canonical.errors import GatewayError

POST_TIME = "post_time"
POST_EXPENSE = "post_expense"
RELEASE_MILESTONE = "release_milestone"
KINDS = (POST_TIME, POST_EXPENSE)
MAX_ATTEMPTS = 5  # of a work item; after the last transient failure an exception is opened

# Reason codes (besides governance's PERIOD_CLOSED, PROJECT_CLOSED, MAPPING_MISSING, UPSTREAM_*).
UNKNOWN_PROJECT = "UNKNOWN_PROJECT"
TASK_CLOSED = "TASK_CLOSED"
ALREADY_BILLED = "ALREADY_BILLED"
PERIOD_CLOSED = "PERIOD_CLOSED"
PROJECT_CLOSED = "PROJECT_CLOSED"
MAPPING_MISSING = "MAPPING_MISSING"


@dataclass(frozen=True)
class Spec:
    """What differs between time entries and expenses."""

    kind: str  # work item kind, and the exception's flow
    noun: str  # "time" | "expense" — subject and head keys
    record: str  # ERP record type
    step: str  # step key prefix

    def subject(self, entry_id: int) -> str:
        return f"psa:{self.noun}:{entry_id}"

    def head(self, entry_id: int) -> str:
        return f"psa:{self.noun}:{entry_id}:head"

    def step_key(self, entry_id: int, version: int) -> str:
        return f"erp:{self.step}:{entry_id}:v{version}"

    def reversal_key(self, entry_id: int, version: int) -> str:
        return f"{self.step_key(entry_id, version)}:reversal"

    def dedupe_key(self, entry_id: int, version: int) -> str:
        return f"{self.kind}:{entry_id}:v{version}"


TIME = Spec(POST_TIME, "time", "timeBill", "timebill")
EXPENSE = Spec(POST_EXPENSE, "expense", "expenseReport", "expensereport")
SPECS = {s.kind: s for s in (TIME, EXPENSE)}


def external_id(entry_id: int, version: int) -> str:
    return f"psa:{entry_id}:v{version}"


@dataclass(frozen=True, eq=False)  # identity: two work items for one version are two items
class PostItem:
    """One entry version to act on: a queued work item's payload, or an exception's on replay."""

    spec: Spec
    entry: Mapping[str, Any]  # the PSA record (WireTimeEntry / WireExpense) as intake saw it
    version: int
    job_id: int | None = None  # the work item, if any
    correlation_id: str | None = None
    attempts: int = 1

    @property
    def entry_id(self) -> int:
        return int(self.entry["id"])

    @property
    def approved(self) -> bool:
        return bool(self.entry.get("is_closed"))

    @property
    def key(self) -> str:
        return self.spec.step_key(self.entry_id, self.version)

    def payload(self) -> dict[str, Any]:
        return {"kind": self.spec.kind, "entry": dict(self.entry), "version": self.version}

    @classmethod
    def of(
        cls,
        payload: Mapping[str, Any],
        *,
        job_id: int | None = None,
        correlation_id: str | None = None,
        attempts: int = 1,
    ) -> PostItem:
        spec = SPECS[str(payload.get("kind") or POST_TIME)]
        return cls(spec, payload["entry"], int(payload["version"]), job_id, correlation_id, attempts)


@dataclass(frozen=True)
class Failure:
    """Why an entry cannot be posted, and what a person has to do about it."""

    reason: str
    message: str
    fix: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_error(self) -> dict[str, Any]:
        return {
            "type": "PostingRefused",
            "code": self.reason,
            "message": self.message,
            "fix": self.fix,
            **({"details": dict(self.details)} if self.details else {}),
        }


class PostingFailed(GatewayError):
    """An entry went to the exception queue; ``code`` is its reason code (not retried by the worker)."""

    http_status = 422

    def __init__(self, failure: Failure, exception_id: str | None) -> None:
        self.code = failure.reason
        self.failure = failure
        self.exception_id = exception_id
        super().__init__(f"{failure.message} — {failure.fix}", exceptionId=exception_id)


@dataclass(frozen=True)
class Write:
    """One ERP upsert by external id, with the step key that records it."""

    step: str
    name: str  # "post" | "reverse"
    record: str
    external_id: str
    body: Mapping[str, Any]


@dataclass
class Plan:
    """What to do for one item: writes in order, and the head to leave behind once they succeed."""

    item: PostItem
    writes: list[Write] = field(default_factory=list)
    head: Mapping[str, Any] | None = None
    outcome: str = "POSTED"  # POSTED | CORRECTED | REVERSED | UNCHANGED | SUPERSEDED | SKIPPED
    done: dict[str, str] = field(default_factory=dict)  # step key → ERP internal id, as writes succeed
