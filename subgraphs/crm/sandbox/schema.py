"""The sObjects the sandbox knows: fields, types, relationships, and how JSON values become SQLite values.

Each sObject is one table whose columns carry the Salesforce API names, so the SOQL translator only has to
map names case-insensitively (SOQL is case-insensitive, responses use the declared casing).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

ID, STR, REF, NUM, DATE, DT, BOOL = "id", "string", "reference", "double", "date", "datetime", "boolean"
_SQL_TYPE = {ID: "TEXT", STR: "TEXT", REF: "TEXT", NUM: "REAL", DATE: "TEXT", DT: "TEXT", BOOL: "INTEGER"}
STAGES = (
    "Prospecting",
    "Qualification",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
)


class SfError(Exception):
    """A refusal rendered as Salesforce's error array."""

    def __init__(self, status: int, code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields or []

    def as_item(self) -> dict[str, Any]:
        return {"message": self.message, "errorCode": self.code, "fields": self.fields}


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    writable: bool = True
    required: bool = False
    external_id: bool = False
    ref: str | None = None  # target sObject of a reference
    rel: str | None = None  # relationship name used in SOQL paths (Account.Name)


@dataclass
class SObject:
    name: str
    prefix: str
    fields: dict[str, Field]
    _lower: dict[str, Field] = field(default_factory=dict, repr=False)
    _rels: dict[str, Field] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._lower = {name.lower(): f for name, f in self.fields.items()}
        self._rels = {f.rel.lower(): f for f in self.fields.values() if f.rel}

    def field(self, name: str) -> Field | None:
        return self._lower.get(name.lower())

    def relationship(self, name: str) -> Field | None:
        return self._rels.get(name.lower())

    def ddl(self) -> str:
        cols = ", ".join(f'"{f.name}" {_SQL_TYPE[f.type]}' for f in self.fields.values())
        return f'CREATE TABLE "{self.name}" ({cols}, PRIMARY KEY ("Id"))'


def _system_fields() -> list[Field]:
    return [
        Field("Id", ID, writable=False),
        Field("CreatedDate", DT, writable=False),
        Field("LastModifiedDate", DT, writable=False),
        Field("SystemModstamp", DT, writable=False),
    ]


def _obj(name: str, prefix: str, *fields: Field) -> SObject:
    return SObject(name, prefix, {f.name: f for f in [*_system_fields(), *fields]})


def _str(*names: str) -> list[Field]:
    return [Field(n, STR) for n in names]


OBJECTS: dict[str, SObject] = {
    o.name: o
    for o in (
        _obj(
            "Account",
            "001",
            Field("Name", STR, required=True),
            *_str("AccountNumber", "Type", "Industry"),
            Field("ParentId", REF, ref="Account", rel="Parent"),
            *_str(
                "BillingStreet",
                "BillingCity",
                "BillingState",
                "BillingPostalCode",
                "BillingCountry",
                "CurrencyIsoCode",
                "OwnerId",
                "Legal_Entity__c",
                "Tax_Id__c",
                "Business_Line__c",
            ),
            Field("ERP_Customer_Id__c", STR, external_id=True),
            Field("P2C_Id__c", STR, external_id=True),
            Field("Billed_To_Date__c", NUM),
            Field("Open_Receivables__c", NUM),
            Field("Overdue_Amount__c", NUM),
            Field("Last_Payment_Date__c", DATE),
        ),
        _obj(
            "Opportunity",
            "006",
            Field("AccountId", REF, ref="Account", rel="Account"),
            Field("Name", STR, required=True),
            Field("StageName", STR, required=True),
            Field("Amount", NUM),
            Field("CloseDate", DATE, required=True),
            Field("IsClosed", BOOL, writable=False),
            Field("IsWon", BOOL, writable=False),
            *_str("CurrencyIsoCode"),
            Field("Probability", NUM),
            *_str("Type", "OwnerId", "Billing_Method__c", "Business_Line__c"),
            Field("P2C_Id__c", STR, external_id=True),
            Field("ERP_Project_Id__c", STR, external_id=True),
            *_str("ERP_Customer_Id__c", "Provisioning_Status__c"),
            Field("Parent_Opportunity__c", REF, ref="Opportunity", rel="Parent_Opportunity__r"),
        ),
        _obj(
            "OpportunityLineItem",
            "00k",
            Field("OpportunityId", REF, required=True, ref="Opportunity", rel="Opportunity"),
            *_str("Product2Id", "ProductCode"),
            Field("Quantity", NUM, required=True),
            Field("UnitPrice", NUM, required=True),
            Field("TotalPrice", NUM, writable=False),
            Field("ServiceDate", DATE),
            *_str("Description", "CurrencyIsoCode"),
            Field("P2C_Id__c", STR, external_id=True),
        ),
        _obj(
            "Invoice__c",
            "a0I",
            Field("Name", STR, required=True),
            Field("P2C_Id__c", STR, external_id=True),
            Field("ERP_Invoice_Id__c", STR, external_id=True),
            Field("Account__c", REF, ref="Account", rel="Account__r"),
            Field("Opportunity__c", REF, ref="Opportunity", rel="Opportunity__r"),
            Field("Invoice_Date__c", DATE),
            Field("Due_Date__c", DATE),
            Field("Amount__c", NUM),
            Field("Amount_Paid__c", NUM),
            Field("Amount_Remaining__c", NUM),
            *_str("Status__c", "CurrencyIsoCode", "Legal_Entity__c"),
            Field("Days_Overdue__c", NUM),
        ),
    )
}
BY_PREFIX = {o.prefix: o for o in OBJECTS.values()}


def sobject(name: str) -> SObject:
    found = next((o for o in OBJECTS.values() if o.name.lower() == name.lower()), None)
    if found is None:
        raise SfError(404, "NOT_FOUND", f"The requested resource does not exist: sObject type '{name}'")
    return found


# --- values ---------------------------------------------------------------------------------------------

_DT_FORMAT = "%Y-%m-%dT%H:%M:%S.{ms:03d}+0000"
_DT_LITERAL = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:?\d{2})$")


def format_datetime(value: datetime) -> str:
    """Salesforce's wire form; fixed width in UTC so stored stamps compare correctly as text."""
    value = value.astimezone(UTC)
    return value.strftime(_DT_FORMAT.format(ms=value.microsecond // 1000))


def parse_datetime(text: str) -> datetime:
    if not _DT_LITERAL.match(text):
        raise ValueError(f"not a datetime: {text}")
    text = text.replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", text):
        text = text[:-2] + ":" + text[-2:]
    return datetime.fromisoformat(text)


def now_stamp() -> str:
    return format_datetime(datetime.now(UTC))


def to_db(f: Field, value: Any) -> Any:
    """JSON value of a write → column value; refuses what Salesforce's deserialiser refuses."""
    if value is None:
        return None
    bad = SfError(
        400,
        "JSON_PARSER_ERROR",
        f"Cannot deserialize instance of {f.type} from value {value!r} for field {f.name}",
        [f.name],
    )
    if f.type in (ID, STR, REF):
        if not isinstance(value, str):
            raise bad
        return value
    if f.type == NUM:
        if isinstance(value, bool):
            raise bad
        try:
            return float(Decimal(str(value)))
        except (InvalidOperation, ValueError) as exc:
            raise bad from exc
    if f.type == BOOL:
        if not isinstance(value, bool):
            raise bad
        return int(value)
    if f.type == DATE:
        try:
            return date.fromisoformat(str(value)).isoformat()
        except ValueError as exc:
            raise bad from exc
    try:
        return format_datetime(parse_datetime(str(value)))
    except ValueError as exc:
        raise bad from exc


def from_db(f: Field, value: Any) -> Any:
    if value is None:
        return None
    if f.type == BOOL:
        return bool(value)
    if f.type == NUM:
        # Always a JSON float, as Salesforce renders currency and percent (clients parse them as decimals).
        return float(value)
    return value
