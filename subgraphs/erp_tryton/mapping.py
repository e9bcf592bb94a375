"""Tryton records ⇄ canonical entities.

    party.party            ⇄ Account (the customer)       code = the canonical account id
    project.work (project) ⇄ Project                      comment = "p2c:<project id>"
    project.work (task)    ⇄ Task                         comment = "p2c:<task id>"
    timesheet.line         ⇐ an approved PSA time entry   description starts "psa:<entry>:v<version>"
    account.invoice        ⇒ Invoice                      state + amount_to_pay → status, paid, remaining;
                                                          its project from what invoicing left on it
                                                          (``invoice_project``)

In the graph a Tryton record is named ``tryton:<id>`` wherever a NetSuite internal id would stand
(``graph_id``), so the two ERPs' ids never meet.

The billing method decides how Tryton invoices the project (``project_invoice_method``): time and materials
invoices timesheets; a fixed fee invoices the estimated effort; milestones invoice progress, task by task.
Raw RPC runs no on-change logic, so every price is set here explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from canonical.entities import (
    Account,
    Address,
    Invoice,
    Milestone,
    Payment,
    PaymentApplication,
    Project,
    Task,
)
from canonical.enums import BillingMethod, InvoiceStatus, MilestoneStatus, ProjectStatus, TaskStatus
from canonical.money import Money
from subgraphs.erp_tryton.wire import Record, hours, one2many_create

INVOICE_METHODS: Mapping[BillingMethod, str] = {
    BillingMethod.TIME_AND_MATERIALS: "timesheet",
    BillingMethod.FIXED_FEE: "effort",
    BillingMethod.MILESTONE: "progress",
    BillingMethod.RETAINER: "effort",
    BillingMethod.SUBSCRIPTION: "effort",
}
METHODS_BACK = {
    "timesheet": BillingMethod.TIME_AND_MATERIALS,
    "effort": BillingMethod.FIXED_FEE,
    "progress": BillingMethod.MILESTONE,
}
CENT = Decimal("0.01")
PREFIX = "tryton:"


def graph_id(record_id: int | str) -> str:
    """A Tryton id as the graph shows it beside NetSuite's internal ids (``tryton:12``)."""
    return f"{PREFIX}{record_id}"


def reference(canonical_id: str, **tags: str | None) -> str:
    """A work's comment: ``p2c:<canonical id>`` on the first line, then ``key: value`` per tag given — what
    the canonical record has and Tryton has no field for (a project's business line)."""
    return "\n".join([f"p2c:{canonical_id}", *(f"{key}: {value}" for key, value in tags.items() if value)])


def reference_domain(canonical_id: str) -> list[Any]:
    """The search domain that finds the work ``reference(canonical_id, ...)`` was written on, whatever its
    tags: the comment is the reference alone or the reference and a newline (no prefix match on the id)."""
    exact = reference(canonical_id)
    escaped = exact.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return ["OR", ["comment", "=", exact], ["comment", "like", f"{escaped}\n%"]]


def parse_reference(comment: object) -> tuple[str | None, dict[str, str]]:
    """``reference``'s inverse: the canonical id (None when the work is not ours) and the tags."""
    first, *rest = str(comment or "").splitlines() or [""]
    tags = dict(line.split(": ", 1) for line in rest if ": " in line)
    return (first.removeprefix("p2c:") or None) if first.startswith("p2c:") else None, tags


def line_reference(entry_id: int, version: int) -> str:
    """What a timesheet line's description starts with: the dedupe key Tryton lacks an external id for."""
    return f"psa:{entry_id}:v{version}"


def party_values(account: Account, payment_term: int | None) -> Record:
    address: Record = {}
    a = account.billing_address
    if a is not None:
        address.update(street=a.street or "", postal_code=a.postal_code or "", city=a.city or "")
    values: Record = {
        "name": account.name,
        "code": account.id,
        "addresses": one2many_create([address]),  # invoicing needs one; raw RPC adds no default
    }
    if payment_term is not None:
        values["customer_payment_term"] = payment_term
    return values


def effort_and_price(value: Money, quantity: Decimal) -> tuple[timedelta, Decimal]:
    """A fixed price as Tryton sees it: ``effort`` hours at ``value / effort`` an hour."""
    effort = quantity if quantity > 0 else Decimal(1)
    price = (value.amount / effort).quantize(Decimal("0.0001"))
    return timedelta(hours=float(effort)), price


def task_values(
    name: str,
    canonical_id: str,
    product: int,
    list_price: Decimal,
    *,
    start: date,
    end: date,
    effort: timedelta | None = None,
) -> Record:
    values: Record = {
        "name": name,
        "type": "task",
        "product": product,
        "list_price": list_price,
        "timesheet_available": True,
        "timesheet_start_date": start,
        "timesheet_end_date": end,
        "comment": reference(canonical_id),
    }
    if effort is not None:
        values["effort_duration"] = effort
    return values


def project_values(
    project: Project,
    party: int,
    product: int,
    list_price: Decimal,
    tasks: Sequence[Record],
    *,
    effort: timedelta | None = None,
) -> Record:
    method = INVOICE_METHODS[project.billing_method or BillingMethod.TIME_AND_MATERIALS]
    values: Record = {
        "name": f"{project.code} {project.name}" if project.code else project.name,
        "type": "project",
        "party": party,
        "project_invoice_method": method,
        "product": product,
        "list_price": list_price,
        "timesheet_available": True,
        "comment": reference(project.id, business_line=project.business_line),
        "children": one2many_create(list(tasks)),
    }
    if project.start_date is not None:
        values["timesheet_start_date"] = project.start_date
    if project.end_date is not None:
        values["timesheet_end_date"] = project.end_date
    if effort is None and method == "timesheet" and project.budget is not None and list_price > 0:
        # Tryton has no budget field: a time-and-materials deal's value is kept as the planned effort at the
        # project's rate (the timesheet method invoices logged time whatever the effort), which
        # ``project_from_work`` reads back as the budget, as NetSuite's job keeps its projected budget.
        effort = timedelta(hours=float(project.budget.amount / list_price))
    if effort is not None:
        values["effort_duration"] = effort
    return values


def timesheet_values(
    work: int, employee: int, on: date, spent: Decimal, entry_id: int, version: int, notes: str = ""
) -> Record:
    text = line_reference(entry_id, version) + (f" {notes}" if notes else "")
    return {
        "work": work,
        "employee": employee,
        "date": on,
        "duration": timedelta(hours=float(spent)),
        "description": text,
    }


def invoice_status(state: str, total: Decimal, to_pay: Decimal) -> InvoiceStatus:
    if state in ("draft", "validated"):
        return InvoiceStatus.DRAFT
    if state == "cancelled":
        return InvoiceStatus.VOIDED
    if state == "paid" or to_pay <= 0:
        return InvoiceStatus.PAID
    return InvoiceStatus.PARTIALLY_PAID if to_pay < total else InvoiceStatus.OPEN


INVOICE_FIELDS = (
    "number",
    "state",
    "invoice_date",
    "payment_term_date",
    "total_amount",
    "amount_to_pay",
    "currency.code",
    "party",
    "party.code",
    "reference",
    "write_date",
    "lines_to_pay.maturity_date",
)


def invoice_from_row(
    row: Mapping[str, Any], *, legal_entity: str | None, project_id: str | None = None
) -> Invoice:
    """``row`` read with ``INVOICE_FIELDS``. Amounts are rounded to cents; the canonical id is Tryton's
    (``tryton:<id>``), the account is the party's code (our canonical account id)."""
    currency = str((row.get("currency.") or {}).get("code") or "EUR")
    total = Decimal(row.get("total_amount") or 0).quantize(CENT)
    state = str(row.get("state") or "draft")
    to_pay = total if state in ("draft", "validated") else Decimal(row.get("amount_to_pay") or 0)
    to_pay = to_pay.quantize(CENT)
    paid = total - to_pay
    if state == "cancelled":  # VOIDED: never owed, so nothing paid either (Tryton reports it fully settled)
        paid = to_pay = Decimal(0).quantize(CENT)
    issued: date = row.get("invoice_date") or date.today()
    maturities = [ln["maturity_date"] for ln in row.get("lines_to_pay.") or [] if ln.get("maturity_date")]
    due: date = min(maturities, default=None) or row.get("payment_term_date") or issued  # the term's date
    return Invoice(
        id=f"tryton:{row['id']}",
        number=str(row.get("number") or f"DRAFT-{row['id']}"),
        account_id=str((row.get("party.") or {}).get("code") or row.get("party")),
        tran_date=issued,
        due_date=due,
        total=Money(total, currency),
        amount_paid=Money(paid, currency),
        amount_remaining=Money(to_pay, currency),
        status=invoice_status(state, total, to_pay),
        project_id=project_id,
        legal_entity=legal_entity,
        erp_id=str(row["id"]),
    )


def logged_hours(row: Mapping[str, Any]) -> Decimal:
    return hours(row.get("duration"))


PARTY_FIELDS = ("name", "code", "addresses.street", "addresses.city", "addresses.postal_code")
WORK_FIELDS = (
    "name",
    "party.code",
    "project_invoice_method",
    "timesheet_start_date",
    "timesheet_end_date",
    "comment",
    "effort_duration",
    "list_price",
    "company.currency.code",
)


def account_from_party(row: Mapping[str, Any], *, legal_entity: str, currency: str) -> Account:
    """A party read with ``PARTY_FIELDS``; its code is the canonical account id when we made it."""
    address = (row.get("addresses.") or [{}])[0]
    return Account(
        id=str(row.get("code") or f"tryton:{row['id']}"),
        name=str(row.get("name") or ""),
        legal_entity=legal_entity,
        currency=currency,
        billing_address=Address(
            street=address.get("street") or None,
            city=address.get("city") or None,
            postal_code=address.get("postal_code") or None,
        ),
        erp_id=str(row["id"]),
    )


def project_from_work(row: Mapping[str, Any], *, legal_entity: str) -> Project:
    """A project work read with ``WORK_FIELDS``."""
    canonical_id, tags = parse_reference(row.get("comment"))
    method = METHODS_BACK.get(str(row.get("project_invoice_method") or ""), BillingMethod.TIME_AND_MATERIALS)
    currency = str(((row.get("company.") or {}).get("currency.") or {}).get("code") or "EUR")
    budget = None
    if row.get("effort_duration") and row.get("list_price") is not None:
        # from the exact duration: hours rounded to 0.01 times a rate of thousands would miss by euros
        planned = Decimal(str(row["effort_duration"].total_seconds())) / 3600
        budget = Money(planned * Decimal(row["list_price"]), currency).rounded()
    name = str(row.get("name") or "")
    code, _, rest = name.partition(" ")
    return Project(
        id=canonical_id or f"tryton:{row['id']}",
        name=rest if code.startswith("P2C-") else name,
        account_id=str((row.get("party.") or {}).get("code") or ""),
        code=code if code.startswith("P2C-") else None,
        legal_entity=legal_entity,
        business_line=tags.get("business_line"),
        billing_method=method,
        status=ProjectStatus.ACTIVE,
        start_date=row.get("timesheet_start_date"),
        end_date=row.get("timesheet_end_date"),
        budget=budget,
        erp_id=str(row["id"]),
    )


#: an invoice's payment lines (``account.move.line``): what the pay wizard booked against it
PAYMENT_LINE_FIELDS = ("date", "debit", "credit", "move.number")


def payment_id(line_id: int | str) -> str:
    return f"tryton:payment:{line_id}"


def payment_from_line(line: Mapping[str, Any], invoice: Invoice, *, today: date) -> Payment:
    """A payment line of ``invoice`` read with ``PAYMENT_LINE_FIELDS``: what it settled of the invoice, in
    the invoice's currency (a refund line debits, so its amount is negative)."""
    amount = Money(Decimal(line.get("credit") or 0) - Decimal(line.get("debit") or 0), invoice.currency)
    return Payment(
        id=payment_id(line["id"]),
        account_id=invoice.account_id,
        date=line.get("date") or today,
        amount=amount,
        applications=(PaymentApplication(invoice.id, amount),),
        reference=(line.get("move.") or {}).get("number"),
        erp_id=str(line["id"]),
    )


#: a project's child works (its tasks, and on a progress-invoiced project its milestones)
CHILD_FIELDS = ("parent", "name", "comment", "effort_duration", "list_price", "progress", "status.progress")


#: a work's progress when it is done (Tryton's progress is a fraction)
DONE = 1.0


def is_closed(work: Mapping[str, Any]) -> bool:
    """A work (read with ``status.progress``) whose status requires full progress: Tryton's closed project
    or done task."""
    status = work.get("status.") or {}
    return status.get("progress") is not None and float(status["progress"]) >= DONE


def fully_progressed(work: Mapping[str, Any]) -> bool:
    return work.get("progress") is not None and float(work["progress"]) >= DONE


def _done(row: Mapping[str, Any]) -> bool:
    """Done in Tryton: a status that requires full progress, or full progress itself (what the milestone
    release sets)."""
    return is_closed(row) or fully_progressed(row)


def tasks_and_milestones(
    project: Project, children: Sequence[Mapping[str, Any]], *, currency: str
) -> tuple[list[Task], list[Milestone]]:
    """A project's child works read with ``CHILD_FIELDS``, in id order. On a milestone project (invoiced on
    progress) a child with planned effort is a milestone worth effort × its price — what provisioning made
    of each milestone, and what Tryton bills on its progress; every other child is a task. Ids are the
    canonical ones in the comment (``tryton:<id>`` for a work we did not make)."""
    tasks: list[Task] = []
    milestones: list[Milestone] = []
    for row in sorted(children, key=lambda r: int(r["id"])):
        canonical_id = parse_reference(row.get("comment"))[0] or graph_id(row["id"])
        name, done = str(row.get("name") or ""), _done(row)
        effort = row.get("effort_duration")
        if project.billing_method is BillingMethod.MILESTONE and effort:
            planned = Decimal(str(effort.total_seconds())) / 3600
            milestones.append(
                Milestone(
                    id=canonical_id,
                    project_id=project.id,
                    name=name,
                    amount=Money(planned * Decimal(row.get("list_price") or 0), currency).rounded(),
                    status=MilestoneStatus.COMPLETED if done else MilestoneStatus.PLANNED,
                    erp_id=graph_id(row["id"]),
                )
            )
        else:
            status = TaskStatus.CLOSED if done else TaskStatus.OPEN
            tasks.append(Task(canonical_id, project.id, name, status, erp_id=graph_id(row["id"])))
    return tasks, milestones


# -- lists for the graph ------------------------------------------------------------------------------------

#: Invoices the graph lists: issued ones (a draft has no number and is not owed yet, like NetSuite's).
ISSUED: list[Any] = [
    ["type", "=", "out"],
    ["state", "in", ["posted", "paid", "cancelled"]],
    ["number", "!=", None],
]
LIST_INVOICE_FIELDS = (
    *INVOICE_FIELDS,
    "description",
    "lines.project_invoice_works.path",
    "lines.project_invoice_progresses.work.path",
)
#: timesheet lines invoiced on the invoices still without a project: which work each one was logged on
TIMESHEET_LINK_FIELDS = ("invoice_line.invoice", "work.origin.path")


def project_code(text: str | None) -> str | None:
    """The project code a work's name starts with (``"P2C-79DF5B3C Rollout"`` → ``"P2C-79DF5B3C"``)."""
    code = str(text or "").partition(" ")[0]
    return code if code.startswith("P2C-") else None


def root_of(path: str | None) -> int | None:
    """The top work of a tree path (``"12/15/"`` → 12): the project a task belongs to."""
    head = str(path or "").partition("/")[0]
    return int(head) if head.isdigit() else None


def invoiced_roots(row: Mapping[str, Any]) -> set[int]:
    """The projects an invoice read with ``LIST_INVOICE_FIELDS`` billed by effort or progress: the works its
    lines invoiced (timesheet invoicing leaves its mark on the timesheet lines instead)."""
    roots: set[int] = set()
    for line in row.get("lines.") or []:
        for work in line.get("project_invoice_works.") or []:
            roots.add(root_of(work.get("path")) or 0)
        for progress in line.get("project_invoice_progresses.") or []:
            roots.add(root_of((progress.get("work.") or {}).get("path")) or 0)
    return roots - {0}


def invoice_project(
    row: Mapping[str, Any], by_code: Mapping[str, Project], by_work: Mapping[int, Project]
) -> Project | None:
    """The project an invoice bills: the work it was made from names it (Tryton copies the work's name,
    which starts with our project code, into the invoice's description), else the works its lines invoiced.
    None when neither tells (then ``timesheet_roots`` is asked)."""
    code = project_code(row.get("description"))
    if code is not None and code in by_code:
        return by_code[code]
    found = [by_work[r] for r in sorted(invoiced_roots(row)) if r in by_work]
    return found[0] if found else None


def timesheet_roots(rows: Sequence[Mapping[str, Any]]) -> dict[int, int]:
    """Invoice id → project work id from timesheet lines read with ``TIMESHEET_LINK_FIELDS``."""
    found: dict[int, int] = {}
    for row in rows:
        invoice = (row.get("invoice_line.") or {}).get("invoice")
        origin = ((row.get("work.") or {}).get("origin.") or {}).get("path")
        root = root_of(origin)
        if invoice is not None and root is not None:
            found.setdefault(int(invoice), root)
    return found


def party_ref(row: Mapping[str, Any]) -> str | None:
    """A project's or an invoice's party as the graph names an ERP customer (``tryton:<party id>``)."""
    party = (row.get("party.") or {}).get("id") or row.get("party")
    return graph_id(party) if party else None


def listed_project(row: Mapping[str, Any], *, legal_entity: str) -> Project:
    """A project work read with ``WORK_FIELDS`` as the graph lists it: ``erp_id`` is ``tryton:<id>``."""
    project = project_from_work(row, legal_entity=legal_entity)
    return replace(project, erp_id=graph_id(row["id"]))
