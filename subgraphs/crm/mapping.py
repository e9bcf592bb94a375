"""Salesforce records ⇄ canonical entities.

Canonical ids: a record's ``P2C_Id__c`` (the external id we stamp on it) when present, otherwise the id
derived from its Salesforce Id (``canonical_id("crm", <sObject>, Id)``) — the CRM introduced it. Writing a
record back stamps that id, so ``x_to_wire(x_from_wire(r))`` reproduces ``r``'s writable fields.

Parent references are Salesforce Ids on the wire and canonical ids in the model; a canonical id cannot be
turned back into a Salesforce Id, so ``*_to_wire`` takes the parent's Salesforce Id from the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from canonical.entities import Account, Address, Invoice, Opportunity, OpportunityLine
from canonical.enums import BillingMethod, InvoiceStatus, OpportunityStage
from canonical.errors import MappingInvalid, Problem
from canonical.ids import canonical_id
from canonical.money import Money
from subgraphs.crm.wire import AccountRecord, InvoiceRecord, OpportunityLineRecord, OpportunityRecord

_ADDRESS = ("BillingStreet", "BillingCity", "BillingState", "BillingPostalCode", "BillingCountry")


def _id(record: Any, sobject: str) -> str:
    p2c = record.get("P2C_Id__c")
    if p2c:
        return str(p2c)
    if not record.get("Id"):
        raise MappingInvalid([Problem("Id", "neither Id nor P2C_Id__c is set", "MISSING")], subject=sobject)
    return canonical_id("crm", sobject, record["Id"])


def _parent_id(record: Any, ref_field: str, rel: str, sobject: str) -> str | None:
    parent = record.get(rel)
    if isinstance(parent, dict) and parent.get("P2C_Id__c"):
        return str(parent["P2C_Id__c"])
    sf_id = record.get(ref_field)
    return canonical_id("crm", sobject, sf_id) if sf_id else None


def _required(record: Any, field: str, subject: str) -> Any:
    value = record.get(field)
    if value is None or value == "":
        raise MappingInvalid([Problem(field, "is required", "MISSING")], subject=subject)
    return value


def _dec(value: Any) -> Decimal | None:
    if value is None:
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _date(value: Any, field: str, subject: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise MappingInvalid([Problem(field, f"{value!r} is not a date")], subject=subject) from exc


def _enum(
    kind: type[BillingMethod] | type[OpportunityStage] | type[InvoiceStatus],
    value: Any,
    field: str,
    subject: str,
) -> Any:
    try:
        return kind(value)
    except ValueError as exc:
        raise MappingInvalid(
            [Problem(field, f"unknown value {value!r}", "UNMAPPED_VALUE")], subject=subject
        ) from exc


def _money(amount: Any, currency: str) -> Money:
    return Money(_dec(amount) or Decimal(0), currency)


# --- Account -------------------------------------------------------------------------------------------


def account_from_wire(record: AccountRecord) -> Account:
    address: dict[str, str | None] = {f: record.get(f) for f in _ADDRESS}  # type: ignore[misc]
    return Account(
        id=_id(record, "Account"),
        name=_required(record, "Name", "Account"),
        legal_entity=_required(record, "Legal_Entity__c", "Account"),
        currency=_required(record, "CurrencyIsoCode", "Account"),
        account_number=record.get("AccountNumber"),
        industry=record.get("Industry"),
        billing_address=None
        if all(v is None for v in address.values())
        else Address(
            street=address["BillingStreet"],
            city=address["BillingCity"],
            state=address["BillingState"],
            postal_code=address["BillingPostalCode"],
            country=address["BillingCountry"],
        ),
        tax_id=record.get("Tax_Id__c"),
        business_line=record.get("Business_Line__c"),
        owner=record.get("OwnerId"),
        parent_id=_parent_id(record, "ParentId", "Parent", "Account"),
        crm_id=record.get("Id"),
        erp_id=record.get("ERP_Customer_Id__c"),
    )


def account_to_wire(account: Account, *, parent_crm_id: str | None = None) -> AccountRecord:
    address = account.billing_address or Address()
    record: AccountRecord = {
        "P2C_Id__c": account.id,
        "Name": account.name,
        "AccountNumber": account.account_number,
        "Industry": account.industry,
        "BillingStreet": address.street,
        "BillingCity": address.city,
        "BillingState": address.state,
        "BillingPostalCode": address.postal_code,
        "BillingCountry": address.country,
        "CurrencyIsoCode": account.currency,
        "OwnerId": account.owner,
        "Legal_Entity__c": account.legal_entity,
        "Tax_Id__c": account.tax_id,
        "Business_Line__c": account.business_line,
        "ERP_Customer_Id__c": account.erp_id,
    }
    if parent_crm_id is not None:
        record["ParentId"] = parent_crm_id
    return record


def receivables_to_wire(
    *, billed_to_date: Money, open_receivables: Money, overdue: Money, last_payment: date | None
) -> AccountRecord:
    """The ERP-owned billing summary written back onto the CRM account."""
    return {
        "Billed_To_Date__c": billed_to_date.rounded().amount,
        "Open_Receivables__c": open_receivables.rounded().amount,
        "Overdue_Amount__c": overdue.rounded().amount,
        "Last_Payment_Date__c": last_payment.isoformat() if last_payment else None,
    }


# --- Opportunity ---------------------------------------------------------------------------------------


def line_from_wire(record: OpportunityLineRecord, currency: str) -> OpportunityLine:
    currency = record.get("CurrencyIsoCode") or currency
    quantity = _dec(_required(record, "Quantity", "OpportunityLineItem")) or Decimal(0)
    unit = _money(_required(record, "UnitPrice", "OpportunityLineItem"), currency)
    total = record.get("TotalPrice")
    return OpportunityLine(
        product_code=record.get("ProductCode") or "",
        quantity=quantity,
        unit_price=unit,
        total=_money(total, currency) if total is not None else unit * quantity,
        description=record.get("Description") or "",
        service_date=_date(record.get("ServiceDate"), "ServiceDate", "OpportunityLineItem"),
        id=_id(record, "OpportunityLineItem") if record.get("Id") or record.get("P2C_Id__c") else None,
        crm_id=record.get("Id"),
    )


def line_to_wire(line: OpportunityLine, *, opportunity_crm_id: str | None = None) -> OpportunityLineRecord:
    record: OpportunityLineRecord = {
        "ProductCode": line.product_code,
        "Quantity": line.quantity,
        "UnitPrice": line.unit_price.amount,
        "Description": line.description or None,
        "ServiceDate": line.service_date.isoformat() if line.service_date else None,
        "P2C_Id__c": line.id,
    }
    if opportunity_crm_id is not None:
        record["OpportunityId"] = opportunity_crm_id
    return record


def opportunity_from_wire(
    record: OpportunityRecord, lines: Sequence[OpportunityLineRecord] = ()
) -> Opportunity:
    subject = "Opportunity"
    currency = _required(record, "CurrencyIsoCode", subject)
    account = record.get("Account")
    account_id = _parent_id(record, "AccountId", "Account", "Account")
    if account_id is None:
        raise MappingInvalid([Problem("AccountId", "is required", "MISSING")], subject=subject)
    method = record.get("Billing_Method__c")
    probability = record.get("Probability")
    return Opportunity(
        id=_id(record, subject),
        account_id=account_id,
        name=_required(record, "Name", subject),
        stage=_enum(OpportunityStage, _required(record, "StageName", subject), "StageName", subject),
        amount=_money(record.get("Amount"), currency),
        close_date=_date(_required(record, "CloseDate", subject), "CloseDate", subject) or date.min,
        billing_method=_enum(BillingMethod, method, "Billing_Method__c", subject) if method else None,
        type=record.get("Type"),
        probability=_dec(probability),
        lines=tuple(line_from_wire(line, currency) for line in lines),
        is_closed=bool(record.get("IsClosed", False)),
        is_won=bool(record.get("IsWon", False)),
        business_line=record.get("Business_Line__c"),
        legal_entity=account.get("Legal_Entity__c") if isinstance(account, dict) else None,
        owner=record.get("OwnerId"),
        crm_id=record.get("Id"),
    )


def opportunity_to_wire(opportunity: Opportunity, *, account_crm_id: str | None = None) -> OpportunityRecord:
    record: OpportunityRecord = {
        "P2C_Id__c": opportunity.id,
        "Name": opportunity.name,
        "StageName": opportunity.stage.value,
        "Amount": opportunity.amount.amount,
        "CurrencyIsoCode": opportunity.currency,
        "CloseDate": opportunity.close_date.isoformat(),
        "Billing_Method__c": opportunity.billing_method.value if opportunity.billing_method else None,
        "Type": opportunity.type,
        "Probability": opportunity.probability,
        "Business_Line__c": opportunity.business_line,
        "OwnerId": opportunity.owner,
    }
    if account_crm_id is not None:
        record["AccountId"] = account_crm_id
    return record


# --- Invoice__c ----------------------------------------------------------------------------------------


def invoice_from_wire(record: InvoiceRecord) -> Invoice:
    subject = "Invoice__c"
    currency = _required(record, "CurrencyIsoCode", subject)
    account_id = _parent_id(record, "Account__c", "Account__r", "Account")
    if account_id is None:
        raise MappingInvalid([Problem("Account__c", "is required", "MISSING")], subject=subject)
    status = record.get("Status__c")
    return Invoice(
        id=_id(record, subject),
        number=_required(record, "Name", subject),
        account_id=account_id,
        tran_date=_date(_required(record, "Invoice_Date__c", subject), "Invoice_Date__c", subject)
        or date.min,
        due_date=_date(_required(record, "Due_Date__c", subject), "Due_Date__c", subject) or date.min,
        total=_money(record.get("Amount__c"), currency),
        amount_paid=_money(record.get("Amount_Paid__c"), currency),
        amount_remaining=_money(record.get("Amount_Remaining__c"), currency),
        status=_enum(InvoiceStatus, status, "Status__c", subject) if status else InvoiceStatus.OPEN,
        legal_entity=record.get("Legal_Entity__c"),
        erp_id=record.get("ERP_Invoice_Id__c"),
    )


def invoice_to_wire(
    invoice: Invoice,
    *,
    account_crm_id: str | None = None,
    opportunity_crm_id: str | None = None,
    as_of: date | None = None,
) -> InvoiceRecord:
    """``as_of`` fills ``Days_Overdue__c`` (0 when paid or not yet due), which sales reports sort on."""
    record: InvoiceRecord = {
        "P2C_Id__c": invoice.id,
        "Name": invoice.number,
        "Invoice_Date__c": invoice.tran_date.isoformat(),
        "Due_Date__c": invoice.due_date.isoformat(),
        "Amount__c": invoice.total.amount,
        "Amount_Paid__c": invoice.amount_paid.amount,
        "Amount_Remaining__c": invoice.amount_remaining.amount,
        "Status__c": invoice.status.value,
        "CurrencyIsoCode": invoice.currency,
        "Legal_Entity__c": invoice.legal_entity,
        "ERP_Invoice_Id__c": invoice.erp_id,
    }
    if account_crm_id is not None:
        record["Account__c"] = account_crm_id
    if opportunity_crm_id is not None:
        record["Opportunity__c"] = opportunity_crm_id
    if as_of is not None:
        overdue = invoice.days_past_due(as_of) if invoice.amount_remaining.amount > 0 else 0
        record["Days_Overdue__c"] = Decimal(max(0, overdue))
    return record
