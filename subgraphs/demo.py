"""The deterministic demo firm: one professional-services firm as the three systems hold it.

``generate_firm(seed, accounts)`` returns plain records keyed by the ids each vendor would use; each
sandbox seeds its own store from the parts it owns (CRM: accounts, opportunities; PSA: clients, projects,
tasks, users, time, expenses; ERP: customers, jobs, tasks, employees, time bills, invoices, payments,
periods, rates). Same seed and size → the same firm, record for record, in all three systems.

The firm is a day-one firm: its records predate the gateway, so ERP customers carry no external id of
ours; the CRM account carries the ERP id in ``ERP_Customer_Id__c`` for most, a few are matchable only
by tax id, a few are missing from the ERP, and two ERP customers share one account number (ambiguous).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

AS_OF = date(2026, 11, 27)
LEGAL_ENTITIES = {
    "US01": {"name": "Northwind Consulting Inc.", "currency": "USD", "subsidiary": 1, "country": "US"},
    "EU01": {"name": "Northwind Consulting GmbH", "currency": "EUR", "subsidiary": 2, "country": "DE"},
}
BUSINESS_LINES = ("Consulting", "Implementation", "Managed Services")
BILLING_METHODS = ("FIXED_FEE", "TIME_AND_MATERIALS", "MILESTONE", "RETAINER", "SUBSCRIPTION")
STAGES = (
    "Prospecting",
    "Qualification",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
)
LABOUR = {  # labour category → (bill rate, cost rate) in the entity's currency
    "Senior Consultant": (Decimal("220"), Decimal("110")),
    "Consultant": (Decimal("160"), Decimal("80")),
    "Architect": (Decimal("250"), Decimal("130")),
    "Project Manager": (Decimal("180"), Decimal("95")),
    "Support Engineer": (Decimal("120"), Decimal("60")),
}
TASKS = {  # business line → PSA task names
    "Consulting": ("Discovery", "Design", "Project Management"),
    "Implementation": ("Design", "Build", "Test", "Deploy", "Project Management"),
    "Managed Services": ("Support", "Training"),
}
PRODUCTS = {  # product code → (description, unit price)
    "CONSULT-SR": ("Senior consulting day", Decimal("1760")),
    "CONSULT-JR": ("Consulting day", Decimal("1280")),
    "IMPL-FIXED": ("Implementation package", Decimal("48000")),
    "MS-RETAINER": ("Monthly retainer", Decimal("9500")),
    "MS-SUB": ("Managed services subscription (month)", Decimal("4200")),
    "TRAINING": ("Training day", Decimal("2400")),
    "PM": ("Project management day", Decimal("1440")),
}
COUNTRIES = {"US01": ("US",), "EU01": ("DE", "FR", "NL")}
CITIES = {
    "US": ("Boston", "Austin", "Chicago", "Denver"),
    "DE": ("Berlin", "Munich"),
    "FR": ("Paris", "Lyon"),
    "NL": ("Amsterdam", "Utrecht"),
}
WORDS = (
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Hooli",
    "Vandelay",
    "Soylent",
    "Tyrell",
    "Cyberdyne",
    "Wonka",
    "Gringotts",
    "Oscorp",
    "Nakatomi",
    "Massive",
    "Duff",
    "Pied",
    "Aperture",
    "Monarch",
)
SUFFIXES = ("Holdings", "Labs", "Industries", "Group", "Systems", "Partners", "Logistics", "Health")
INDUSTRIES = ("Technology", "Healthcare", "Manufacturing", "Finance", "Retail", "Energy")


def sf_id(prefix: str, n: int) -> str:
    """An 18-character Salesforce-shaped id, deterministic in ``n``."""
    return f"{prefix}{n:012d}AAA"


@dataclass
class Employee:
    index: int
    name: str
    email: str
    legal_entity: str
    labour_category: str
    cost_rate: Decimal
    bill_rate: Decimal
    psa_user_id: int
    erp_employee_id: int


@dataclass
class Line:
    crm_id: str
    product_code: str
    description: str
    quantity: Decimal
    unit_price: Decimal
    service_date: date

    @property
    def total(self) -> Decimal:
        return self.quantity * self.unit_price


@dataclass
class Opportunity:
    crm_id: str
    account_crm_id: str
    name: str
    stage: str
    amount: Decimal
    currency: str
    close_date: date
    billing_method: str
    business_line: str
    probability: int
    type: str
    lines: list[Line]
    modstamp: date

    @property
    def is_closed(self) -> bool:
        return self.stage in ("Closed Won", "Closed Lost")

    @property
    def is_won(self) -> bool:
        return self.stage == "Closed Won"


@dataclass
class Task:
    psa_task_id: int
    erp_task_id: int
    name: str
    is_open: bool = True


@dataclass
class Milestone:
    erp_id: int
    name: str
    amount: Decimal
    due_date: date
    completed: bool


@dataclass
class Project:
    code: str
    name: str
    account_index: int
    opportunity_crm_id: str
    billing_method: str
    business_line: str
    currency: str
    budget_hours: Decimal
    budget_amount: Decimal
    starts_on: date
    ends_on: date
    is_active: bool
    psa_project_id: int
    erp_job_id: int
    tasks: list[Task]
    milestones: list[Milestone]
    staff: list[int]  # employee indexes


@dataclass
class TimeEntry:
    psa_id: int
    project_code: str
    psa_task_id: int
    employee_index: int
    spent_date: date
    hours: Decimal
    billable: bool
    billable_rate: Decimal
    cost_rate: Decimal
    approval: str  # APPROVED | SUBMITTED | REJECTED
    erp_time_bill_id: int | None  # posted before the gateway existed
    is_billed: bool
    notes: str


@dataclass
class Expense:
    psa_id: int
    project_code: str
    employee_index: int
    spent_date: date
    category: str
    total_cost: Decimal
    billable: bool
    approval: str
    erp_expense_report_id: int | None


@dataclass
class Payment:
    erp_id: int
    tran_date: date
    amount: Decimal
    currency: str


@dataclass
class Invoice:
    erp_id: int
    number: str
    account_index: int
    project_code: str
    tran_date: date
    due_date: date
    currency: str
    total: Decimal
    payments: list[Payment]
    credit_memos: list[tuple[int, Decimal]]  # (erp id, amount)

    @property
    def amount_paid(self) -> Decimal:
        return sum((p.amount for p in self.payments), Decimal(0)) + sum(
            (c[1] for c in self.credit_memos), Decimal(0)
        )

    @property
    def amount_remaining(self) -> Decimal:
        return self.total - self.amount_paid

    @property
    def status(self) -> str:
        if self.amount_remaining <= 0:
            return "PAID"
        return "PARTIALLY_PAID" if self.amount_paid > 0 else "OPEN"


@dataclass
class Account:
    index: int
    crm_id: str
    name: str
    account_number: str
    industry: str
    legal_entity: str
    currency: str
    country: str
    street: str | None
    city: str
    postal_code: str
    tax_id: str | None
    business_line: str
    owner: str
    erp_customer_id: int | None  # None → not in the ERP yet
    crm_erp_id_field: int | None  # ERP_Customer_Id__c as the CRM holds it
    psa_client_id: int


@dataclass
class Period:
    erp_id: int
    name: str
    start: date
    end: date
    closed: bool


@dataclass
class Firm:
    seed: int
    as_of: date
    legal_entities: dict[str, dict[str, object]]
    employees: list[Employee]
    accounts: list[Account]
    opportunities: list[Opportunity]
    projects: list[Project]
    time_entries: list[TimeEntry]
    expenses: list[Expense]
    invoices: list[Invoice]
    periods: list[Period]
    rates: list[tuple[date, str, str, Decimal]]  # (effective date, from, to, rate)
    duplicate_erp_customers: list[tuple[int, int]] = field(default_factory=list)  # (erp id, account index)

    def account(self, index: int) -> Account:
        return self.accounts[index]

    def project(self, code: str) -> Project:
        return self._projects_by_code()[code]

    def _projects_by_code(self) -> dict[str, Project]:
        cached: dict[str, Project] | None = getattr(self, "_by_code", None)
        if cached is None:
            cached = {p.code: p for p in self.projects}
            object.__setattr__(self, "_by_code", cached)
        return cached


def _money(rng: random.Random, low: int, high: int, step: int = 500) -> Decimal:
    return Decimal(rng.randrange(low, high, step))


def generate_firm(seed: int = 7, accounts: int = 200, as_of: date = AS_OF) -> Firm:
    rng = random.Random(seed)
    n_emp = max(12, min(400, accounts // 4))
    employees = []
    for i in range(n_emp):
        entity = "US01" if i % 3 else "EU01"
        category = list(LABOUR)[i % len(LABOUR)]
        bill, cost = LABOUR[category]
        employees.append(
            Employee(
                i,
                f"Consultant {i:03d}",
                f"c{i:03d}@northwind.example",
                entity,
                category,
                cost,
                bill,
                5000 + i,
                3000 + i,
            )
        )
    by_entity = {e: [x.index for x in employees if x.legal_entity == e] for e in LEGAL_ENTITIES}

    firm_accounts: list[Account] = []
    for i in range(accounts):
        entity = "US01" if rng.random() < 0.7 else "EU01"
        country = rng.choice(COUNTRIES[entity])
        in_erp = rng.random() < 0.85
        erp_id = 1000 + i if in_erp else None
        # Most CRM accounts know their ERP id; some only match by tax id / account number.
        crm_field = erp_id if in_erp and rng.random() < 0.8 else None
        firm_accounts.append(
            Account(
                index=i,
                crm_id=sf_id("001", i + 1),
                name=f"{WORDS[i % len(WORDS)]} {SUFFIXES[(i // len(WORDS)) % len(SUFFIXES)]} {i:04d}",
                account_number=f"AC-{i + 1:05d}",
                industry=rng.choice(INDUSTRIES),
                legal_entity=entity,
                currency=str(LEGAL_ENTITIES[entity]["currency"]),
                country=country,
                street=None if i % 97 == 13 else f"{rng.randrange(1, 999)} Main Street",
                city=rng.choice(CITIES[country]),
                postal_code=f"{rng.randrange(10000, 99999)}",
                tax_id=None if i % 89 == 11 else f"{country}{rng.randrange(10**8, 10**9)}",
                business_line=rng.choice(BUSINESS_LINES),
                owner=f"005{(i % 7) + 1:012d}AAA",
                erp_customer_id=erp_id,
                crm_erp_id_field=crm_field,
                psa_client_id=7000 + i,
            )
        )
    duplicates = [(900000 + i, a.index) for i, a in enumerate(firm_accounts[5::150]) if a.erp_customer_id]
    # The CRM of a duplicated customer's account does not know its ERP id: the tax id / account number rule
    # decides and finds both copies — the demo firm's MATCH_AMBIGUOUS, with no edits needed.
    for _erp_id, index in duplicates:
        firm_accounts[index].crm_erp_id_field = None

    opportunities: list[Opportunity] = []
    projects: list[Project] = []
    line_no = 0
    for acc in firm_accounts:
        for k in range(3):
            stage = "Closed Won" if k == 0 and acc.erp_customer_id else STAGES[rng.randrange(len(STAGES))]
            method = BILLING_METHODS[(acc.index + k) % len(BILLING_METHODS)]
            codes = {
                "FIXED_FEE": ["IMPL-FIXED"],
                "TIME_AND_MATERIALS": ["CONSULT-SR", "CONSULT-JR", "PM"],
                "MILESTONE": ["IMPL-FIXED", "TRAINING"],
                "RETAINER": ["MS-RETAINER"],
                "SUBSCRIPTION": ["MS-SUB"],
            }[method]
            close = (
                as_of - timedelta(days=rng.randrange(20, 120))
                if stage.startswith("Closed")
                else as_of + timedelta(days=rng.randrange(5, 90))
            )
            lines = []
            for c in codes:
                line_no += 1
                desc, price = PRODUCTS[c]
                qty = (
                    Decimal(rng.randrange(1, 4))
                    if c in ("IMPL-FIXED", "TRAINING")
                    else Decimal(12)
                    if c in ("MS-RETAINER", "MS-SUB")
                    else Decimal(rng.randrange(10, 60))
                )
                lines.append(Line(sf_id("00k", line_no), c, desc, qty, price, close + timedelta(days=14)))
            amount = sum((ln.total for ln in lines), Decimal(0))
            opp = Opportunity(
                sf_id("006", acc.index * 3 + k + 1),
                acc.crm_id,
                f"{acc.name.split()[0]} {acc.business_line} {method.replace('_', ' ').title()}",
                stage,
                amount,
                acc.currency,
                close,
                method,
                acc.business_line,
                {"Closed Won": 100, "Closed Lost": 0}.get(stage, 10 + 20 * STAGES.index(stage)),
                "New Business",
                lines,
                close,
            )
            opportunities.append(opp)
            # A won deal of a customer missing from the ERP has no job yet: the gateway provisions both.
            if k == 0 and stage == "Closed Won" and acc.erp_customer_id:
                projects.append(_project(rng, acc, opp, len(projects), by_entity[acc.legal_entity], as_of))

    time_entries, expenses, invoices = _activity(rng, firm_accounts, projects, employees, as_of)
    periods = []
    for m in range(1, 13):
        start = date(as_of.year, m, 1)
        end = (date(as_of.year + (m == 12), m % 12 + 1, 1)) - timedelta(days=1)
        closed = (as_of.month - m) == 2  # one closed period: the month before last
        periods.append(Period(400 + m, start.strftime("%b %Y"), start, end, closed))
    rates = [
        (date(as_of.year, m, 1), "EUR", "USD", Decimal("1.0800") + Decimal(m) / 400) for m in range(1, 13)
    ]
    return Firm(
        seed,
        as_of,
        LEGAL_ENTITIES,
        employees,
        firm_accounts,
        opportunities,
        projects,
        time_entries,
        expenses,
        invoices,
        periods,
        rates,
        duplicates,
    )


def _project(
    rng: random.Random, acc: Account, opp: Opportunity, n: int, staff_pool: list[int], as_of: date
) -> Project:
    code = f"PRJ-{n + 1:05d}"
    start = opp.close_date + timedelta(days=7)
    tasks = [
        Task(60000 + n * 10 + j, 80000 + n * 10 + j, name) for j, name in enumerate(TASKS[acc.business_line])
    ]
    milestones = []
    if opp.billing_method in ("FIXED_FEE", "MILESTONE"):
        parts = 3
        for j in range(parts):
            due = start + timedelta(days=30 * (j + 1))
            milestones.append(
                Milestone(
                    90000 + n * 10 + j,
                    f"Milestone {j + 1}",
                    (opp.amount / parts).quantize(Decimal("0.01")),
                    due,
                    due < as_of,
                )
            )
    staff = rng.sample(staff_pool, k=min(3, len(staff_pool)))
    hours = Decimal(rng.randrange(200, 900, 20))
    return Project(
        code,
        f"{opp.name} ({code})",
        acc.index,
        opp.crm_id,
        opp.billing_method,
        acc.business_line,
        acc.currency,
        hours,
        opp.amount,
        start,
        start + timedelta(days=180),
        True,
        20000 + n,
        50000 + n,
        tasks,
        milestones,
        staff,
    )


def _activity(
    rng: random.Random,
    accounts: list[Account],
    projects: list[Project],
    employees: list[Employee],
    as_of: date,
) -> tuple[list[TimeEntry], list[Expense], list[Invoice]]:
    entries: list[TimeEntry] = []
    expenses: list[Expense] = []
    invoices: list[Invoice] = []
    month_start = as_of.replace(day=1)
    inv_no = 0
    for p in projects:
        acc = accounts[p.account_index]
        billed_by_month: dict[date, Decimal] = {}
        day = max(p.starts_on, as_of - timedelta(days=84))
        while day <= as_of:
            if day.weekday() < 5 and rng.random() < 0.35:
                emp = employees[rng.choice(p.staff)]
                task = rng.choice(p.tasks)
                hours = Decimal(rng.randrange(2, 17)) / 2
                current = day >= month_start
                approval = (
                    ("APPROVED" if rng.random() < 0.6 else rng.choice(("SUBMITTED", "SUBMITTED", "REJECTED")))
                    if current
                    else "APPROVED"
                )
                billable = (
                    task.name not in ("Project Management",) or p.billing_method == "TIME_AND_MATERIALS"
                )
                posted = not current
                billed = posted and billable and p.billing_method == "TIME_AND_MATERIALS"
                entry = TimeEntry(
                    len(entries) + 100000,
                    p.code,
                    task.psa_task_id,
                    emp.index,
                    day,
                    hours,
                    billable,
                    emp.bill_rate,
                    emp.cost_rate,
                    approval,
                    len(entries) + 700000 if posted else None,
                    billed,
                    f"{task.name} work",
                )
                entries.append(entry)
                if billed:
                    key = day.replace(day=1)
                    billed_by_month[key] = billed_by_month.get(key, Decimal(0)) + hours * emp.bill_rate
                if rng.random() < 0.05:
                    expenses.append(
                        Expense(
                            len(expenses) + 300000,
                            p.code,
                            emp.index,
                            day,
                            rng.choice(("Travel", "Lodging", "Meals")),
                            Decimal(rng.randrange(20, 900)),
                            True,
                            "APPROVED" if not current else "SUBMITTED",
                            len(expenses) + 800000 if not current else None,
                        )
                    )
            day += timedelta(days=1)
        amounts = sorted(billed_by_month.items())
        amounts += [(m.due_date, m.amount) for m in p.milestones if m.completed]
        for tran, total in amounts:
            inv_no += 1
            inv_date = _month_end(tran) if p.billing_method == "TIME_AND_MATERIALS" else tran
            if inv_date > as_of:
                continue
            inv = Invoice(
                600000 + inv_no,
                f"INV-{inv_no:06d}",
                acc.index,
                p.code,
                inv_date,
                inv_date + timedelta(days=30),
                p.currency,
                total.quantize(Decimal("0.01")),
                [],
                [],
            )
            roll = rng.random()
            if roll < 0.45:
                inv.payments.append(
                    Payment(
                        650000 + inv_no,
                        inv.due_date - timedelta(days=rng.randrange(0, 20)),
                        inv.total,
                        p.currency,
                    )
                )
            elif roll < 0.6:
                inv.payments.append(
                    Payment(
                        650000 + inv_no,
                        inv_date + timedelta(days=rng.randrange(5, 25)),
                        (inv.total / 2).quantize(Decimal("0.01")),
                        p.currency,
                    )
                )
            inv.payments = [pay for pay in inv.payments if pay.tran_date <= as_of]
            invoices.append(inv)
    # One credit memo, against the first open invoice, for 10 %.
    for inv in invoices:
        if inv.status == "OPEN":
            inv.credit_memos.append((690001, (inv.total / 10).quantize(Decimal("0.01"))))
            break
    return entries, expenses, invoices


def _month_end(day: date) -> date:
    nxt = date(day.year + (day.month == 12), day.month % 12 + 1, 1)
    return nxt - timedelta(days=1)
