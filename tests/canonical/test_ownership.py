from __future__ import annotations

import dataclasses

import pytest

from canonical import entities
from canonical.errors import ValidationFailed
from canonical.ownership import OWNERSHIP, UnknownOwnership, check_write, owner_of, ownership


@pytest.mark.parametrize(
    ("entity", "field", "owner"),
    [
        ("Account", None, "crm"),
        ("Account", "name", "crm"),
        ("Account", "industry", "crm"),
        ("Account", "tax_id", "erp"),
        ("Account", "legal_entity", "erp"),
        ("Account", "open_receivables", "erp"),
        ("Account", "psa_id", "psa"),
        ("Opportunity", "amount", "crm"),
        ("OpportunityLine", "unit_price", "crm"),
        ("Contract", "value", "erp"),
        ("BillingSchedule", "events", "erp"),
        ("Invoice", "amount_remaining", "erp"),
        ("Payment", None, "erp"),
        ("CreditMemo", None, "erp"),
        ("AccountingPeriod", "closed", "erp"),
        ("Revenue", "amount", "erp"),
        ("Project", "manager", "psa"),
        ("Project", "billing_method", "erp"),
        ("Task", "status", "psa"),
        ("TimeEntry", "hours", "psa"),
        ("TimeEntry", "approval_status", "psa"),
        ("TimeEntry", "posting_status", "erp"),
        ("TimeEntry", "is_billed", "erp"),
        ("Expense", "amount", "psa"),
        ("Milestone", "status", "psa"),
        ("Milestone", "completed_on", "psa"),
        ("Milestone", "amount", "erp"),
    ],
)
def test_owner_of(entity: str, field: str | None, owner: str) -> None:
    assert owner_of(entity, field) == owner


def test_names_are_case_and_underscore_insensitive() -> None:
    assert owner_of("time_entry", "hours") == owner_of("TimeEntry", "hours") == owner_of("TIMEENTRY", "hours")


def test_every_entity_field_has_an_owner_and_system_ids_belong_to_their_system() -> None:
    classes = [c for c in vars(entities).values()
               if isinstance(c, type) and dataclasses.is_dataclass(c) and c.__module__ == entities.__name__]
    assert {c.__name__ for c in classes} <= set(OWNERSHIP)
    for cls in classes:
        for f in dataclasses.fields(cls):
            owner = owner_of(cls.__name__, f.name)
            if f.name in ("crm_id", "psa_id", "erp_id"):
                assert owner == f.name.removesuffix("_id")


def test_unknown_names_raise_with_a_suggestion() -> None:
    with pytest.raises(UnknownOwnership) as info:
        owner_of("Acount")
    assert info.value.code == "UNKNOWN_FIELD"
    assert "Acount" in str(info.value) and "Account" in str(info.value)
    with pytest.raises(UnknownOwnership) as info:
        owner_of("Invoice", "amount_due")
    assert "amount_due" in str(info.value) and "Invoice" in str(info.value)
    with pytest.raises(UnknownOwnership):
        owner_of("Milestone", "crm_id")


def test_owned_by_and_check_write() -> None:
    crm_account_fields = ownership("Account").owned_by("crm")
    assert {"name", "industry", "billing_address"} <= crm_account_fields
    assert "tax_id" not in crm_account_fields
    check_write("crm", "Account", ["name", "industry"])
    with pytest.raises(ValidationFailed) as info:
        check_write("crm", "Account", ["name", "tax_id", "open_receivables"])
    assert [p.field for p in info.value.problems] == ["tax_id", "open_receivables"]
    assert all(p.reason == "NOT_OWNER" for p in info.value.problems)
