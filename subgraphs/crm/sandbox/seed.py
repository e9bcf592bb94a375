"""The demo firm as the CRM holds it: accounts, opportunities and their line items (no invoices yet —
``Invoice__c`` is filled by the gateway's write-back)."""

from __future__ import annotations

from datetime import date
from typing import Any

from subgraphs.crm.sandbox.state import CrmState
from subgraphs.demo import Firm


def _stamp(day: date) -> str:
    return f"{day.isoformat()}T00:00:00.000+0000"


def seed(state: CrmState, firm: Firm) -> None:
    created = _stamp(firm.as_of)
    accounts: list[dict[str, Any]] = []
    owners: dict[str, str] = {}
    for a in firm.accounts:
        owners[a.crm_id] = a.owner
        accounts.append(
            {
                "Id": a.crm_id,
                "Name": a.name,
                "AccountNumber": a.account_number,
                "Type": "Customer",
                "Industry": a.industry,
                "BillingStreet": a.street,
                "BillingCity": a.city,
                "BillingPostalCode": a.postal_code,
                "BillingCountry": a.country,
                "CurrencyIsoCode": a.currency,
                "OwnerId": a.owner,
                "Legal_Entity__c": a.legal_entity,
                "Tax_Id__c": a.tax_id,
                "Business_Line__c": a.business_line,
                "ERP_Customer_Id__c": None if a.crm_erp_id_field is None else str(a.crm_erp_id_field),
                "CreatedDate": created,
                "LastModifiedDate": created,
                "SystemModstamp": created,
            }
        )
    opportunities: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    for o in firm.opportunities:
        stamp = _stamp(o.modstamp)
        opportunities.append(
            {
                "Id": o.crm_id,
                "AccountId": o.account_crm_id,
                "Name": o.name,
                "StageName": o.stage,
                "Amount": float(o.amount),
                "CloseDate": o.close_date.isoformat(),
                "IsClosed": int(o.is_closed),
                "IsWon": int(o.is_won),
                "CurrencyIsoCode": o.currency,
                "Probability": float(o.probability),
                "Type": o.type,
                "OwnerId": owners[o.account_crm_id],
                "Billing_Method__c": o.billing_method,
                "Business_Line__c": o.business_line,
                "CreatedDate": stamp,
                "LastModifiedDate": stamp,
                "SystemModstamp": stamp,
            }
        )
        for ln in o.lines:
            lines.append(
                {
                    "Id": ln.crm_id,
                    "OpportunityId": o.crm_id,
                    "Product2Id": f"01t{ln.product_code:>12}AAA",
                    "ProductCode": ln.product_code,
                    "Quantity": float(ln.quantity),
                    "UnitPrice": float(ln.unit_price),
                    "TotalPrice": float(ln.total),
                    "ServiceDate": ln.service_date.isoformat(),
                    "Description": ln.description,
                    "CurrencyIsoCode": o.currency,
                    "CreatedDate": stamp,
                    "LastModifiedDate": stamp,
                    "SystemModstamp": stamp,
                }
            )
    state.load("Account", accounts)
    state.load("Opportunity", opportunities)
    state.load("OpportunityLineItem", lines)
