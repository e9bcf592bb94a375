"""The deterministic demo firm: reproducible, and internally consistent across the three systems."""

from __future__ import annotations

from collections import Counter
from datetime import date
from decimal import Decimal

import pytest

from subgraphs.demo import BILLING_METHODS, LEGAL_ENTITIES, STAGES, Firm, generate_firm


@pytest.fixture(scope="module")
def firm() -> Firm:
    return generate_firm(seed=7, accounts=200)


# -- determinism and size ------------------------------------------------------------------------


def test_same_seed_and_size_give_the_same_firm(firm: Firm) -> None:
    again = generate_firm(seed=7, accounts=200)
    assert again == firm
    # field by field too, so a failure names the part that drifted
    for part in ("accounts", "opportunities", "projects", "time_entries", "expenses", "invoices", "periods"):
        assert getattr(again, part) == getattr(firm, part), part


def test_a_different_seed_gives_a_different_firm(firm: Firm) -> None:
    other = generate_firm(seed=8, accounts=200)
    assert other != firm
    assert other.accounts != firm.accounts
    assert other.time_entries != firm.time_entries


def test_generation_does_not_touch_the_global_random_state() -> None:
    import random

    random.seed(123)
    expected = random.random()
    random.seed(123)
    generate_firm(seed=1, accounts=20)
    assert random.random() == expected


@pytest.mark.parametrize("size", [1, 10, 50])
def test_small_firms_are_well_formed(size: int) -> None:
    small = generate_firm(seed=3, accounts=size)
    assert len(small.accounts) == size
    assert len(small.opportunities) == 3 * size
    assert len(small.employees) == 12  # a floor, so every project can be staffed
    assert [a.index for a in small.accounts] == list(range(size))


def test_sizes_scale() -> None:
    small, large = generate_firm(seed=7, accounts=40), generate_firm(seed=7, accounts=400)
    assert (len(small.accounts), len(large.accounts)) == (40, 400)
    assert len(large.employees) == 100 > len(small.employees)
    assert len(large.projects) > 5 * len(small.projects)
    assert len(large.time_entries) > 5 * len(small.time_entries)
    assert len(large.invoices) > 5 * len(small.invoices)


# -- identities ----------------------------------------------------------------------------------


def test_ids_are_unique_per_system(firm: Firm) -> None:
    def unique(values: list[object]) -> bool:
        return len(values) == len(set(values))

    assert unique([a.crm_id for a in firm.accounts])
    assert unique([a.account_number for a in firm.accounts])
    assert unique([a.psa_client_id for a in firm.accounts])
    assert unique([a.erp_customer_id for a in firm.accounts if a.erp_customer_id is not None])
    assert unique([o.crm_id for o in firm.opportunities])
    assert unique([ln.crm_id for o in firm.opportunities for ln in o.lines])
    assert unique([p.code for p in firm.projects])
    assert unique([p.psa_project_id for p in firm.projects])
    assert unique([p.erp_job_id for p in firm.projects])
    assert unique([t.psa_task_id for p in firm.projects for t in p.tasks])
    assert unique([t.psa_id for t in firm.time_entries])
    assert unique([t.erp_time_bill_id for t in firm.time_entries if t.erp_time_bill_id is not None])
    assert unique([e.psa_id for e in firm.expenses])
    assert unique([i.erp_id for i in firm.invoices])
    assert unique([i.number for i in firm.invoices])
    assert unique([e.psa_user_id for e in firm.employees])
    assert all(len(a.crm_id) == 18 for a in firm.accounts)


def test_lookups(firm: Firm) -> None:
    project = firm.projects[3]
    assert firm.project(project.code) is project
    assert firm.account(5) is firm.accounts[5]
    with pytest.raises(KeyError):
        firm.project("PRJ-NOPE")


# -- cross-system references ---------------------------------------------------------------------


def test_every_project_belongs_to_an_account_in_the_erp(firm: Firm) -> None:
    missing = [p.code for p in firm.projects if firm.accounts[p.account_index].erp_customer_id is None]
    assert missing == []


@pytest.mark.parametrize("seed", [1, 2, 3, 7, 42])
def test_no_seed_makes_a_project_for_a_customer_missing_from_the_erp(seed: int) -> None:
    other = generate_firm(seed=seed, accounts=120)
    assert all(other.accounts[p.account_index].erp_customer_id is not None for p in other.projects)


def test_projects_come_from_won_opportunities_of_their_account(firm: Firm) -> None:
    opportunities = {o.crm_id: o for o in firm.opportunities}
    for p in firm.projects:
        opp = opportunities[p.opportunity_crm_id]
        account = firm.accounts[p.account_index]
        assert opp.is_won and opp.is_closed
        assert opp.account_crm_id == account.crm_id
        assert (p.billing_method, p.currency) == (opp.billing_method, account.currency)
        assert p.budget_amount == opp.amount
        assert p.starts_on > opp.close_date
        assert p.starts_on < p.ends_on


def test_project_staff_work_for_the_projects_legal_entity(firm: Firm) -> None:
    for p in firm.projects:
        entity = firm.accounts[p.account_index].legal_entity
        assert p.staff
        assert {firm.employees[i].legal_entity for i in p.staff} == {entity}


def test_time_entries_reference_existing_projects_tasks_and_staff(firm: Firm) -> None:
    assert firm.time_entries
    for entry in firm.time_entries:
        project = firm.project(entry.project_code)
        assert entry.psa_task_id in {t.psa_task_id for t in project.tasks}
        assert entry.employee_index in project.staff
        employee = firm.employees[entry.employee_index]
        assert (entry.billable_rate, entry.cost_rate) == (employee.bill_rate, employee.cost_rate)
        assert entry.spent_date <= firm.as_of
        assert entry.spent_date >= project.starts_on
        assert entry.spent_date.weekday() < 5
        assert Decimal("1") <= entry.hours <= Decimal("8")
        assert entry.approval in ("APPROVED", "SUBMITTED", "REJECTED")


def test_only_approved_entries_were_posted_or_billed(firm: Firm) -> None:
    for entry in firm.time_entries:
        if entry.erp_time_bill_id is not None:
            assert entry.approval == "APPROVED"
        if entry.is_billed:
            assert entry.erp_time_bill_id is not None
            assert entry.billable
    # the current month has work still waiting for the gateway
    assert any(e.erp_time_bill_id is None and e.approval == "APPROVED" for e in firm.time_entries)
    assert {e.approval for e in firm.time_entries} == {"APPROVED", "SUBMITTED", "REJECTED"}


def test_expenses_reference_existing_projects_and_staff(firm: Firm) -> None:
    assert firm.expenses
    for expense in firm.expenses:
        assert expense.employee_index in firm.project(expense.project_code).staff
        assert expense.total_cost > 0
        assert (expense.erp_expense_report_id is not None) == (expense.approval == "APPROVED")


def test_opportunity_amounts_are_the_sum_of_their_lines(firm: Firm) -> None:
    for opp in firm.opportunities:
        assert opp.lines
        assert opp.amount == sum((ln.total for ln in opp.lines), Decimal(0))
        assert opp.currency == next(a.currency for a in firm.accounts if a.crm_id == opp.account_crm_id)


# -- money ---------------------------------------------------------------------------------------


def test_invoice_amounts_add_up(firm: Firm) -> None:
    assert firm.invoices
    for inv in firm.invoices:
        assert inv.total > 0
        assert inv.amount_paid + inv.amount_remaining == inv.total
        assert Decimal(0) <= inv.amount_paid <= inv.total
        assert inv.total == inv.total.quantize(Decimal("0.01"))
        assert inv.tran_date <= firm.as_of
        assert all(pay.tran_date <= firm.as_of and pay.currency == inv.currency for pay in inv.payments)
        project = firm.project(inv.project_code)
        assert (inv.account_index, inv.currency) == (project.account_index, project.currency)


def test_invoice_status_follows_the_amounts(firm: Firm) -> None:
    for inv in firm.invoices:
        if inv.amount_remaining == 0:
            assert inv.status == "PAID"
        elif inv.amount_paid == 0:
            assert inv.status == "OPEN"
        else:
            assert inv.status == "PARTIALLY_PAID"
    assert set(Counter(i.status for i in firm.invoices)) == {"PAID", "PARTIALLY_PAID", "OPEN"}


def test_time_and_materials_invoices_bill_exactly_the_billed_time(firm: Firm) -> None:
    for project in firm.projects:
        if project.billing_method != "TIME_AND_MATERIALS":
            continue
        billed = sum((e.hours * e.billable_rate for e in firm.time_entries
                      if e.project_code == project.code and e.is_billed), Decimal(0))
        invoiced = sum((i.total for i in firm.invoices if i.project_code == project.code), Decimal(0))
        assert invoiced == billed, project.code


def test_there_is_a_credit_memo(firm: Firm) -> None:
    memos = [(inv, memo) for inv in firm.invoices for memo in inv.credit_memos]
    assert len(memos) >= 1
    for inv, (_, amount) in memos:
        assert 0 < amount < inv.total


# -- periods, rates, entities --------------------------------------------------------------------


def test_exactly_one_closed_period(firm: Firm) -> None:
    closed = [p for p in firm.periods if p.closed]
    assert len(closed) == 1
    assert closed[0].end < firm.as_of
    assert [p.name for p in closed] == ["Sep 2026"]
    for earlier, later in zip(firm.periods, firm.periods[1:], strict=False):
        assert (later.start - earlier.end).days == 1


def test_some_posted_time_falls_into_the_closed_period(firm: Firm) -> None:
    closed = next(p for p in firm.periods if p.closed)
    assert any(closed.start <= e.spent_date <= closed.end and e.erp_time_bill_id for e in firm.time_entries)


def test_rates_cover_every_month(firm: Firm) -> None:
    assert [r[0] for r in firm.rates] == [date(2026, m, 1) for m in range(1, 13)]
    assert all((r[1], r[2]) == ("EUR", "USD") and r[3] > 1 for r in firm.rates)


def test_all_billing_methods_and_stages_are_present(firm: Firm) -> None:
    assert {o.billing_method for o in firm.opportunities} == set(BILLING_METHODS)
    assert {o.stage for o in firm.opportunities} == set(STAGES)
    assert {p.billing_method for p in firm.projects} == set(BILLING_METHODS)
    assert any(p.milestones for p in firm.projects)
    for p in firm.projects:
        assert bool(p.milestones) == (p.billing_method in ("FIXED_FEE", "MILESTONE"))


def test_accounts_in_both_legal_entities_with_matching_currency(firm: Firm) -> None:
    assert {a.legal_entity for a in firm.accounts} == set(LEGAL_ENTITIES)
    for account in firm.accounts:
        assert account.currency == LEGAL_ENTITIES[account.legal_entity]["currency"]
    for employee in firm.employees:
        assert employee.legal_entity in LEGAL_ENTITIES
    assert {e.legal_entity for e in firm.employees} == set(LEGAL_ENTITIES)


# -- the messy parts a day-one firm has ----------------------------------------------------------


def test_some_accounts_lack_tax_id_or_street(firm: Firm) -> None:
    assert any(a.tax_id is None for a in firm.accounts)
    assert any(a.street is None for a in firm.accounts)
    assert sum(a.tax_id is None or a.street is None for a in firm.accounts) < 10  # a few, not many


def test_erp_matching_scenarios_are_all_present(firm: Firm) -> None:
    in_erp = [a for a in firm.accounts if a.erp_customer_id is not None]
    assert any(a.crm_erp_id_field == a.erp_customer_id for a in in_erp)  # linked by the CRM field
    assert any(a.crm_erp_id_field is None for a in in_erp)  # matchable by tax id / number only
    assert any(a.erp_customer_id is None for a in firm.accounts)  # missing from the ERP
    for a in firm.accounts:
        assert a.crm_erp_id_field in (None, a.erp_customer_id)


def test_duplicate_erp_customers(firm: Firm) -> None:
    assert firm.duplicate_erp_customers
    known_ids = {a.erp_customer_id for a in firm.accounts}
    for erp_id, index in firm.duplicate_erp_customers:
        assert erp_id not in known_ids
        assert firm.accounts[index].erp_customer_id is not None
