"""wire → canonical → wire keeps every writable field; bad records raise MappingInvalid."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from canonical.enums import BillingMethod, InvoiceStatus, OpportunityStage
from canonical.errors import MappingInvalid
from canonical.ids import canonical_id
from subgraphs.crm.mapping import (
    account_from_wire,
    account_to_wire,
    invoice_from_wire,
    invoice_to_wire,
    line_to_wire,
    opportunity_from_wire,
    opportunity_to_wire,
)

text = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12)
maybe = st.none() | text
sf_ids = st.integers(1, 10**9).map(lambda n: f"001{n:012d}AAA")
uuids = st.uuids().map(str)
currencies = st.sampled_from(["USD", "EUR", "GBP", "JPY"])
amounts = st.decimals(min_value=-(10**9), max_value=10**9, places=2, allow_nan=False)
dates = st.dates(date(2000, 1, 1), date(2040, 12, 31)).map(date.isoformat)

accounts = st.fixed_dictionaries(
    {
        "Id": sf_ids,
        "P2C_Id__c": uuids,
        "Name": text,
        "AccountNumber": maybe,
        "Industry": maybe,
        "BillingStreet": maybe,
        "BillingCity": maybe,
        "BillingState": maybe,
        "BillingPostalCode": maybe,
        "BillingCountry": maybe,
        "CurrencyIsoCode": currencies,
        "OwnerId": maybe,
        "Legal_Entity__c": st.sampled_from(["US01", "EU01"]),
        "Tax_Id__c": maybe,
        "Business_Line__c": maybe,
        "ERP_Customer_Id__c": maybe,
    }
)
opportunities = st.fixed_dictionaries(
    {
        "Id": sf_ids.map(lambda i: "006" + i[3:]),
        "P2C_Id__c": uuids,
        "AccountId": sf_ids,
        "Name": text,
        "StageName": st.sampled_from([s.value for s in OpportunityStage]),
        "Amount": amounts,
        "CurrencyIsoCode": currencies,
        "CloseDate": dates,
        "Billing_Method__c": st.none() | st.sampled_from([m.value for m in BillingMethod]),
        "Type": maybe,
        "Probability": st.none() | st.decimals(0, 100, places=0),
        "Business_Line__c": maybe,
        "OwnerId": maybe,
    }
)
invoices = st.fixed_dictionaries(
    {
        "Id": sf_ids.map(lambda i: "a0I" + i[3:]),
        "P2C_Id__c": uuids,
        "Name": text,
        "Account__c": sf_ids,
        "Invoice_Date__c": dates,
        "Due_Date__c": dates,
        "Amount__c": amounts,
        "Amount_Paid__c": amounts,
        "Amount_Remaining__c": amounts,
        "Status__c": st.sampled_from([s.value for s in InvoiceStatus]),
        "CurrencyIsoCode": currencies,
        "Legal_Entity__c": maybe,
        "ERP_Invoice_Id__c": maybe,
    }
)


def writable(record: dict[str, Any], *read_only: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("Id", *read_only)}


@settings(max_examples=60)
@given(accounts)
def test_account_round_trip(record: dict[str, Any]) -> None:
    account = account_from_wire(record)  # type: ignore[arg-type]
    assert account.crm_id == record["Id"] and account.id == record["P2C_Id__c"]
    assert account_to_wire(account) == writable(record)


@settings(max_examples=60)
@given(opportunities)
def test_opportunity_round_trip(record: dict[str, Any]) -> None:
    opportunity = opportunity_from_wire(record)  # type: ignore[arg-type]
    assert opportunity.account_id == canonical_id("crm", "Account", record["AccountId"])
    wire = opportunity_to_wire(opportunity, account_crm_id=record["AccountId"])
    assert wire == writable(record)


@settings(max_examples=60)
@given(invoices)
def test_invoice_round_trip(record: dict[str, Any]) -> None:
    invoice = invoice_from_wire(record)  # type: ignore[arg-type]
    assert invoice.total.currency == record["CurrencyIsoCode"]
    assert invoice_to_wire(invoice, account_crm_id=record["Account__c"]) == writable(record)


def test_parent_external_id_wins_over_derived_id_and_lines_map() -> None:
    record = {
        "Id": "006000000000001AAA",
        "AccountId": "001000000000001AAA",
        "Account": {"P2C_Id__c": "acc-1", "Legal_Entity__c": "EU01"},
        "Name": "Deal",
        "StageName": "Closed Won",
        "Amount": Decimal("300.00"),
        "CurrencyIsoCode": "EUR",
        "CloseDate": "2026-10-01",
        "IsWon": True,
        "IsClosed": True,
    }
    line = {
        "Id": "00k000000000001AAA",
        "OpportunityId": "006000000000001AAA",
        "ProductCode": "PM",
        "Quantity": Decimal("2.0"),
        "UnitPrice": Decimal("150.0"),
        "TotalPrice": Decimal("300.0"),
    }
    opportunity = opportunity_from_wire(record, [line])  # type: ignore[arg-type, list-item]
    assert opportunity.account_id == "acc-1" and opportunity.legal_entity == "EU01"
    assert opportunity.id == canonical_id("crm", "Opportunity", "006000000000001AAA")
    assert opportunity.lines_total == opportunity.amount and opportunity.is_won
    wire_line = line_to_wire(opportunity.lines[0], opportunity_crm_id="006000000000001AAA")
    assert wire_line["Quantity"] == Decimal("2.0") and wire_line["P2C_Id__c"] == opportunity.lines[0].id


def test_invoice_days_overdue_from_as_of() -> None:
    record = {
        "P2C_Id__c": "inv-1",
        "Name": "INV-1",
        "Account__c": "001000000000001AAA",
        "Invoice_Date__c": "2026-09-01",
        "Due_Date__c": "2026-10-01",
        "Amount__c": Decimal("100"),
        "Amount_Paid__c": Decimal("40"),
        "Amount_Remaining__c": Decimal("60"),
        "Status__c": "PARTIALLY_PAID",
        "CurrencyIsoCode": "USD",
    }
    wire = invoice_to_wire(invoice_from_wire(record), as_of=date(2026, 11, 27))  # type: ignore[arg-type]
    assert wire["Days_Overdue__c"] == 57


@pytest.mark.parametrize(
    "record, field",
    [
        ({"Id": "001000000000001AAA", "Name": "x", "CurrencyIsoCode": "USD"}, "Legal_Entity__c"),
        ({"Id": "001000000000001AAA", "Legal_Entity__c": "US01", "CurrencyIsoCode": "USD"}, "Name"),
    ],
)
def test_incomplete_accounts_are_mapping_errors(record: dict[str, Any], field: str) -> None:
    with pytest.raises(MappingInvalid) as caught:
        account_from_wire(record)  # type: ignore[arg-type]
    assert caught.value.problems[0].field == field


def test_unknown_stage_is_a_mapping_error() -> None:
    record = {
        "Id": "006000000000001AAA",
        "AccountId": "001000000000001AAA",
        "Name": "x",
        "StageName": "Won-ish",
        "CurrencyIsoCode": "USD",
        "CloseDate": "2026-01-01",
    }
    with pytest.raises(MappingInvalid) as caught:
        opportunity_from_wire(record)  # type: ignore[arg-type]
    assert caught.value.problems[0].reason == "UNMAPPED_VALUE"
