"""Salesforce payloads as the connector sees them.

Numbers arrive as ``Decimal`` (the client parses JSON floats with ``parse_float=Decimal`` so currency never
passes through binary floating point); dates and datetimes stay the strings Salesforce sends. Records are
``total=False``: a SOQL query returns only the fields it selected.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, TypedDict


class Attributes(TypedDict):
    type: str
    url: str


class AccountRecord(TypedDict, total=False):
    attributes: Attributes
    Id: str
    Name: str
    AccountNumber: str | None
    Type: str | None
    Industry: str | None
    ParentId: str | None
    BillingStreet: str | None
    BillingCity: str | None
    BillingState: str | None
    BillingPostalCode: str | None
    BillingCountry: str | None
    CurrencyIsoCode: str | None
    OwnerId: str | None
    ERP_Customer_Id__c: str | None
    Legal_Entity__c: str | None
    Tax_Id__c: str | None
    Business_Line__c: str | None
    P2C_Id__c: str | None
    Billed_To_Date__c: Decimal | None
    Open_Receivables__c: Decimal | None
    Overdue_Amount__c: Decimal | None
    Last_Payment_Date__c: str | None
    SystemModstamp: str


class OpportunityLineRecord(TypedDict, total=False):
    attributes: Attributes
    Id: str
    OpportunityId: str
    Product2Id: str | None
    ProductCode: str | None
    Quantity: Decimal
    UnitPrice: Decimal
    TotalPrice: Decimal
    ServiceDate: str | None
    Description: str | None
    CurrencyIsoCode: str | None
    P2C_Id__c: str | None


class OpportunityRecord(TypedDict, total=False):
    attributes: Attributes
    Id: str
    AccountId: str | None
    Account: AccountRecord | None  # relationship fields, e.g. Account.P2C_Id__c
    Name: str
    StageName: str
    Amount: Decimal | None
    CloseDate: str
    IsClosed: bool
    IsWon: bool
    CurrencyIsoCode: str | None
    Probability: Decimal | None
    Type: str | None
    OwnerId: str | None
    Billing_Method__c: str | None
    Business_Line__c: str | None
    P2C_Id__c: str | None
    ERP_Project_Id__c: str | None
    ERP_Customer_Id__c: str | None
    Provisioning_Status__c: str | None
    Parent_Opportunity__c: str | None
    SystemModstamp: str


class InvoiceRecord(TypedDict, total=False):
    """The custom object ``Invoice__c``: the ERP's invoice mirrored onto the account for sales."""

    attributes: Attributes
    Id: str
    Name: str
    P2C_Id__c: str | None
    ERP_Invoice_Id__c: str | None
    Account__c: str | None
    Account__r: AccountRecord | None
    Opportunity__c: str | None
    Invoice_Date__c: str | None
    Due_Date__c: str | None
    Amount__c: Decimal | None
    Amount_Paid__c: Decimal | None
    Amount_Remaining__c: Decimal | None
    Status__c: str | None
    CurrencyIsoCode: str | None
    Legal_Entity__c: str | None
    Days_Overdue__c: Decimal | None
    SystemModstamp: str


class QueryPage(TypedDict, total=False):
    totalSize: int
    done: bool
    nextRecordsUrl: str
    records: list[dict[str, Any]]


class SaveError(TypedDict, total=False):
    statusCode: str
    message: str
    fields: list[str]


class SaveResult(TypedDict, total=False):
    """One entry of an sObject Collections response, in request order."""

    id: str
    success: bool
    errors: list[SaveError]
    created: bool


class ChangeEventHeader(TypedDict, total=False):
    entityName: str
    recordIds: list[str]
    changeType: str  # CREATE | UPDATE | DELETE | UNDELETE | GAP_*
    changedFields: list[str]
    changeOrigin: str
    commitTimestamp: int
    transactionKey: str


class ChangeEvent(TypedDict):
    replayId: int
    channel: str
    payload: dict[str, Any]  # {"ChangeEventHeader": ChangeEventHeader, ...changed field values}


#: Field lists the connector selects; the mapping reads exactly these.
ACCOUNT_FIELDS = (
    "Id",
    "Name",
    "AccountNumber",
    "Type",
    "Industry",
    "ParentId",
    "BillingStreet",
    "BillingCity",
    "BillingState",
    "BillingPostalCode",
    "BillingCountry",
    "CurrencyIsoCode",
    "OwnerId",
    "ERP_Customer_Id__c",
    "Legal_Entity__c",
    "Tax_Id__c",
    "Business_Line__c",
    "P2C_Id__c",
    "Billed_To_Date__c",
    "Open_Receivables__c",
    "Overdue_Amount__c",
    "Last_Payment_Date__c",
    "SystemModstamp",
)
OPPORTUNITY_FIELDS = (
    "Id",
    "AccountId",
    "Account.P2C_Id__c",
    "Account.Legal_Entity__c",
    "Name",
    "StageName",
    "Amount",
    "CloseDate",
    "IsClosed",
    "IsWon",
    "CurrencyIsoCode",
    "Probability",
    "Type",
    "OwnerId",
    "Billing_Method__c",
    "Business_Line__c",
    "P2C_Id__c",
    "ERP_Project_Id__c",
    "ERP_Customer_Id__c",
    "Provisioning_Status__c",
    "Parent_Opportunity__c",
    "SystemModstamp",
)
LINE_FIELDS = (
    "Id",
    "OpportunityId",
    "Product2Id",
    "ProductCode",
    "Quantity",
    "UnitPrice",
    "TotalPrice",
    "ServiceDate",
    "Description",
    "CurrencyIsoCode",
    "P2C_Id__c",
)
INVOICE_FIELDS = (
    "Id",
    "Name",
    "P2C_Id__c",
    "ERP_Invoice_Id__c",
    "Account__c",
    "Account__r.P2C_Id__c",
    "Opportunity__c",
    "Invoice_Date__c",
    "Due_Date__c",
    "Amount__c",
    "Amount_Paid__c",
    "Amount_Remaining__c",
    "Status__c",
    "CurrencyIsoCode",
    "Legal_Entity__c",
    "Days_Overdue__c",
    "SystemModstamp",
)
