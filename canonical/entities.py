"""The canonical engagement graph as frozen dataclasses.

Entities hold facts, not behaviour: mapping code in ``subgraphs`` builds them from vendor payloads, so
constructors take plain values and optional fields default to ``None`` or an empty tuple. The only checks
made on construction are ones no caller could want to skip (one currency per document, a period that
ends before it starts). Collections are tuples so an entity stays hashable and immutable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from canonical.enums import (
    ApprovalStatus,
    BillingMethod,
    InvoiceStatus,
    MilestoneStatus,
    OpportunityStage,
    PaymentStatus,
    PeriodPolicy,
    PostingStatus,
    ProjectStatus,
    TaskStatus,
)
from canonical.errors import ValidationFailed
from canonical.money import CurrencyMismatch, Money


def _same_currency(currency: str, *amounts: Money | None) -> None:
    for amount in amounts:
        if amount is not None and amount.currency != currency:
            raise CurrencyMismatch(currency, amount.currency)


class PeriodClosed(ValidationFailed):
    """A transaction date falls in a closed period and the legal entity's policy forbids moving it."""

    code = "PERIOD_CLOSED"

    def __init__(self, on: date, period: str | None) -> None:
        where = f"period {period} is closed" if period else "no open accounting period"
        super().__init__(f"{where} for {on.isoformat()}", subject="accounting period")
        self.extensions.update(date=on.isoformat(), period=period)


# --- master data -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LegalEntity:
    """A legal entity of the firm (an ERP subsidiary) that contracts and invoices."""

    code: str  # "US01"
    name: str
    country: str  # ISO 3166-1 alpha-2
    currency: str  # functional currency
    subsidiary: str  # ERP subsidiary internal id
    requires_tax_id: bool = False
    tax_id_label: str = "Tax ID"  # what the tax id is called there: "EIN", "VAT ID"


@dataclass(frozen=True, slots=True)
class Address:
    street: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None  # ISO 3166-1 alpha-2

    @property
    def is_complete(self) -> bool:
        """Enough to put on an invoice; state is optional because most countries have none."""
        return bool(self.street and self.city and self.postal_code and self.country)


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    name: str
    legal_entity: str  # LegalEntity.code
    currency: str
    account_number: str | None = None
    industry: str | None = None
    billing_address: Address | None = None
    tax_id: str | None = None
    business_line: str | None = None
    owner: str | None = None
    parent_id: str | None = None
    crm_id: str | None = None
    erp_id: str | None = None
    psa_id: str | None = None


# --- pipeline (CRM) ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpportunityLine:
    product_code: str
    quantity: Decimal
    unit_price: Money
    total: Money
    description: str = ""
    service_date: date | None = None
    id: str | None = None
    crm_id: str | None = None

    def __post_init__(self) -> None:
        _same_currency(self.unit_price.currency, self.total)


@dataclass(frozen=True, slots=True)
class Opportunity:
    id: str
    account_id: str
    name: str
    stage: OpportunityStage
    amount: Money
    close_date: date
    billing_method: BillingMethod | None = None
    type: str | None = None
    probability: Decimal | None = None  # percent, 0–100, as the CRM reports it
    lines: tuple[OpportunityLine, ...] = ()
    is_closed: bool = False
    is_won: bool = False
    business_line: str | None = None
    legal_entity: str | None = None
    owner: str | None = None
    crm_id: str | None = None

    def __post_init__(self) -> None:
        _same_currency(self.amount.currency, *(line.total for line in self.lines))

    @property
    def currency(self) -> str:
        return self.amount.currency

    @property
    def lines_total(self) -> Money:
        return Money.sum((line.total for line in self.lines), self.currency)


# --- contract and billing (ERP) ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RateCardLine:
    labour_category: str
    rate: Money  # per hour
    product_code: str | None = None


@dataclass(frozen=True, slots=True)
class BillingEvent:
    name: str
    date: date
    amount: Money
    milestone_id: str | None = None
    id: str | None = None
    erp_id: str | None = None


@dataclass(frozen=True, slots=True)
class Recurrence:
    """A fixed fee billed every ``every_months`` months from ``start`` (retainers, subscriptions)."""

    amount: Money
    start: date
    end: date | None = None  # None: until cancelled
    every_months: int = 1

    def __post_init__(self) -> None:
        if self.every_months < 1:
            raise ValidationFailed("must be at least 1", subject="recurrence.every_months")
        if self.end is not None and self.end < self.start:
            raise ValidationFailed("ends before it starts", subject="recurrence")

    def dates(self, until: date | None = None) -> list[date]:
        """Billing dates (period starts) from ``start`` up to ``end`` or ``until``, whichever is first.

        Day-of-month is clamped (31 Jan → 28/29 Feb → 31 Mar), so a month-end fee stays month-end.
        """
        stop = min((d for d in (self.end, until) if d is not None), default=None)
        if stop is None:
            raise ValidationFailed("an open-ended recurrence needs an 'until' date", subject="recurrence")
        result: list[date] = []
        n = 0
        while (current := _add_months(self.start, n * self.every_months)) <= stop:
            result.append(current)
            n += 1
        return result


def _add_months(start: date, months: int) -> date:
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    first_of_next = date(year + month // 12, month % 12 + 1, 1)
    last_day = (first_of_next - timedelta(days=1)).day
    return date(year, month, min(start.day, last_day))


@dataclass(frozen=True, slots=True)
class BillingSchedule:
    method: BillingMethod
    events: tuple[BillingEvent, ...] = ()
    recurrence: Recurrence | None = None
    in_arrears: bool = False  # bill a period after it is served (retainers) rather than before
    erp_billing_type: str | None = None  # NetSuite jobBillingType, from the mapping
    erp_id: str | None = None

    def events_total(self, currency: str) -> Money:
        return Money.sum((event.amount for event in self.events), currency)


@dataclass(frozen=True, slots=True)
class ContractAmendment:
    number: int
    effective_date: date
    value_change: Money  # signed: a scope cut is negative
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Contract:
    id: str
    account_id: str
    opportunity_id: str
    legal_entity: str
    billing_method: BillingMethod
    value: Money  # as signed; amendments adjust it, see ``current_value``
    schedule: BillingSchedule | None = None
    rate_card: tuple[RateCardLine, ...] = ()
    amendments: tuple[ContractAmendment, ...] = ()
    start_date: date | None = None
    end_date: date | None = None
    payment_terms: str | None = None
    erp_id: str | None = None

    def __post_init__(self) -> None:
        _same_currency(self.value.currency, *(a.value_change for a in self.amendments))

    @property
    def currency(self) -> str:
        return self.value.currency

    @property
    def current_value(self) -> Money:
        return self.value + Money.sum((a.value_change for a in self.amendments), self.currency)

    def rate_for(self, labour_category: str) -> Money | None:
        return next((line.rate for line in self.rate_card if line.labour_category == labour_category), None)


# --- delivery (PSA) ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    name: str
    account_id: str
    contract_id: str | None = None
    code: str | None = None
    business_line: str | None = None
    legal_entity: str | None = None
    billing_method: BillingMethod | None = None
    status: ProjectStatus = ProjectStatus.ACTIVE
    start_date: date | None = None
    end_date: date | None = None
    budget: Money | None = None
    manager: str | None = None
    psa_id: str | None = None
    erp_id: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status in (ProjectStatus.PLANNED, ProjectStatus.ACTIVE)


@dataclass(frozen=True, slots=True)
class Task:
    id: str
    project_id: str
    name: str
    status: TaskStatus = TaskStatus.OPEN
    billable: bool = True
    labour_category: str | None = None
    psa_id: str | None = None
    erp_id: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status is TaskStatus.OPEN


@dataclass(frozen=True, slots=True)
class Milestone:
    id: str
    project_id: str
    name: str
    due_date: date | None = None
    amount: Money | None = None
    status: MilestoneStatus = MilestoneStatus.PLANNED
    completed_on: date | None = None
    task_id: str | None = None
    billing_event_id: str | None = None
    psa_id: str | None = None
    erp_id: str | None = None


@dataclass(frozen=True, slots=True)
class TimeEntry:
    id: str
    project_id: str
    task_id: str
    user: str
    spent_date: date
    hours: Decimal
    billable: bool = True
    bill_rate: Money | None = None
    cost_rate: Money | None = None
    approval_status: ApprovalStatus = ApprovalStatus.SUBMITTED
    posting_status: PostingStatus = PostingStatus.NOT_READY
    version: int = 1  # bumped on every PSA edit; part of the ERP write key
    is_billed: bool = False
    notes: str = ""
    labour_category: str | None = None
    psa_id: str | None = None
    erp_id: str | None = None

    @property
    def billable_amount(self) -> Money | None:
        """Hours × bill rate for billable work; zero in the rate's currency for non-billable work."""
        if self.bill_rate is None:
            return None
        return self.bill_rate * self.hours if self.billable else Money.zero(self.bill_rate.currency)

    @property
    def cost_amount(self) -> Money | None:
        return None if self.cost_rate is None else self.cost_rate * self.hours


@dataclass(frozen=True, slots=True)
class Expense:
    id: str
    project_id: str
    user: str
    spent_date: date
    amount: Money
    category: str
    billable: bool = True
    approval_status: ApprovalStatus = ApprovalStatus.SUBMITTED
    posting_status: PostingStatus = PostingStatus.NOT_READY
    version: int = 1
    is_billed: bool = False
    notes: str = ""
    has_receipt: bool = False
    psa_id: str | None = None
    erp_id: str | None = None


# --- receivables (ERP) -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Invoice:
    id: str
    number: str
    account_id: str
    tran_date: date
    due_date: date
    total: Money
    amount_paid: Money
    amount_remaining: Money
    status: InvoiceStatus = InvoiceStatus.OPEN
    project_id: str | None = None
    contract_id: str | None = None
    legal_entity: str | None = None
    erp_id: str | None = None

    def __post_init__(self) -> None:
        _same_currency(self.total.currency, self.amount_paid, self.amount_remaining)

    @property
    def currency(self) -> str:
        return self.total.currency

    @property
    def counts(self) -> bool:
        """Whether the invoice exists for receivables: drafts are not issued, voids never were."""
        return self.status not in (InvoiceStatus.DRAFT, InvoiceStatus.VOIDED)

    def days_past_due(self, as_of: date) -> int:
        """Days since the due date; zero or negative while not yet due."""
        return (as_of - self.due_date).days


@dataclass(frozen=True, slots=True)
class PaymentApplication:
    invoice_id: str
    amount: Money  # in the invoice's currency


@dataclass(frozen=True, slots=True)
class Payment:
    id: str
    account_id: str
    date: date
    amount: Money  # in the currency received, which may differ from the invoices'
    status: PaymentStatus = PaymentStatus.RECEIVED
    applications: tuple[PaymentApplication, ...] = ()
    reference: str | None = None
    erp_id: str | None = None


@dataclass(frozen=True, slots=True)
class CreditMemo:
    id: str
    number: str
    account_id: str
    date: date
    amount: Money  # positive: the amount credited
    invoice_id: str | None = None
    reason: str = ""
    erp_id: str | None = None


# --- books (ERP) -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccountingPeriod:
    name: str
    start: date
    end: date
    closed: bool = False
    legal_entity: str | None = None
    erp_id: str | None = None

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValidationFailed(f"{self.name} ends before it starts", subject="accounting period")

    def contains(self, on: date) -> bool:
        return self.start <= on <= self.end


def posting_period(periods: Iterable[AccountingPeriod], on: date, policy: PeriodPolicy) -> AccountingPeriod:
    """The period a transaction dated ``on`` posts to, under the legal entity's ``policy``.

    Open period containing ``on`` → that period. Closed → ``NEXT_OPEN`` moves it to the earliest open
    period starting after it; ``EXCEPTION`` (or no later open period) raises ``PeriodClosed``. A date no
    period covers raises too: guessing a period would misstate the books.
    """
    ordered = sorted(periods, key=lambda p: p.start)
    home = next((p for p in ordered if p.contains(on)), None)
    if home is None:
        raise PeriodClosed(on, None)
    if not home.closed:
        return home
    if policy is PeriodPolicy.NEXT_OPEN:
        later = next((p for p in ordered if p.start > home.end and not p.closed), None)
        if later is not None:
            return later
    raise PeriodClosed(on, home.name)


@dataclass(frozen=True, slots=True)
class CurrencyRate:
    """``rate`` units of ``quote`` per one unit of ``base``, effective from ``effective_date``."""

    base: str
    quote: str
    rate: Decimal
    effective_date: date

    def convert(self, money: Money) -> Money:
        if money.currency != self.base:
            raise CurrencyMismatch(self.base, money.currency)
        return money.convert(self.quote, self.rate)
