"""NetSuite payload shapes and the readers that make REST records and SuiteQL rows look alike.

A REST record carries references as ``{"id": "12", "refName": ...}``, booleans as JSON booleans and
camelCase names; a SuiteQL row carries the bare id, ``'T'``/``'F'`` and lowercase names. Mapping code reads
both through ``field``/``ref``/``boolean``/``decimal``/``day`` so one function maps either shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, TypedDict

Record = dict[str, Any]  # a REST record or a SuiteQL row, as received


class Ref(TypedDict, total=False):
    id: str
    refName: str


class CustomerBody(TypedDict, total=False):
    externalId: str
    entityId: str
    companyName: str
    accountNumber: str
    subsidiary: Ref
    currency: Ref
    vatRegNumber: str | None
    custentity_industry: str | None
    defaultBillingAddress: dict[str, str | None]


class JobBody(TypedDict, total=False):
    externalId: str
    entityId: str
    companyName: str
    parent: Ref
    jobBillingType: str
    custentity_p2c_billing_method: str | None
    custentity_business_line: str | None
    status: str
    startDate: str | None
    projectedEndDate: str | None
    currency: Ref
    subsidiary: Ref
    projectedBudget: float | None


class TimeBillBody(TypedDict, total=False):
    externalId: str
    employee: Ref
    customer: Ref  # the job (project)
    projectTask: Ref
    tranDate: str
    hours: float
    rate: float
    item: Ref
    isBillable: bool
    memo: str


class ApplyItem(TypedDict, total=False):
    doc: Ref
    amount: float
    apply: bool


class Apply(TypedDict):
    items: list[ApplyItem]


class PaymentBody(TypedDict, total=False):
    externalId: str
    customer: Ref
    tranDate: str
    payment: float
    currency: Ref
    apply: Apply


class CreditMemoBody(TypedDict, total=False):
    externalId: str
    entity: Ref
    tranDate: str
    total: float
    currency: Ref
    memo: str
    apply: Apply


@dataclass(frozen=True)
class Page:
    """One page of a list or SuiteQL answer."""

    items: list[Record]
    offset: int
    total: int
    has_more: bool


def ref(id_: str | int | None) -> Ref | None:
    return None if id_ is None else {"id": str(id_)}


def field(record: Record, name: str) -> Any:
    """``record[name]`` for a REST record, or the lowercase SuiteQL column of the same name."""
    if name in record:
        return record[name]
    return record.get(name.lower())


def ref_id(record: Record, name: str) -> str | None:
    value = field(record, name)
    if isinstance(value, dict):
        value = value.get("id")
    return None if value in (None, "") else str(value)


def boolean(record: Record, name: str, default: bool = False) -> bool:
    value = field(record, name)
    if value is None:
        return default
    return value is True or value == "T" or value == "true"


def decimal(record: Record, name: str) -> Decimal | None:
    value = field(record, name)
    if value in (None, ""):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def day(record: Record, name: str) -> date | None:
    value = field(record, name)
    if not value:
        return None
    return date.fromisoformat(str(value)[:10])


def text(record: Record, name: str) -> str | None:
    value = field(record, name)
    return None if value is None else str(value)


def sql_string(value: str) -> str:
    """A SuiteQL string literal. NetSuite's REST SuiteQL has no bind parameters, so quoting is ours."""
    return "'" + value.replace("'", "''") + "'"


def sql_ids(ids: list[str]) -> str:
    """An IN list of internal ids; anything not an integer is refused rather than pasted."""
    return ", ".join(str(int(i)) for i in ids)
