"""Which system owns which entity and field: the graph reads a field from its owner, writes go only there.

CRM owns pipeline and commercial context, ERP owns the legal customer, contracts, billing, receivables
and the books, PSA owns delivery: staffing, tasks, time, expenses and milestone completion. Each entity
has a default owner; ``_OVERRIDES`` lists the fields another system owns. Every field of every entity
dataclass is covered, and a name that is not a field is an error, not a silent default.

>>> owner_of("Account", "tax_id")
'erp'
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from canonical import entities
from canonical.errors import Problem, ValidationFailed
from canonical.ids import System


class UnknownOwnership(ValidationFailed):
    code = "UNKNOWN_FIELD"

    def __init__(self, name: str, known: list[str], *, entity: str | None = None) -> None:
        what = f"field {name!r} of {entity}" if entity else f"entity {name!r}"
        hint = difflib.get_close_matches(name, known, n=3)
        message = f"unknown {what}" + (f"; did you mean {', '.join(hint)}?" if hint else "")
        super().__init__([Problem(field=name, message=message, reason="UNKNOWN")], subject="ownership")


@dataclass(frozen=True, slots=True)
class Ownership:
    """The owner of one entity and of each of its fields."""

    entity: str
    owner: System
    fields: Mapping[str, System]

    def owned_by(self, system: System) -> frozenset[str]:
        return frozenset(name for name, owner in self.fields.items() if owner == system)


_ERP_LINK: dict[str, System] = {"erp_id": "erp"}
_PSA_LINK: dict[str, System] = {"psa_id": "psa"}

# (entity class, default owner, fields owned by someone else, fields that exist only in the graph)
_TABLE: list[tuple[type, System, Mapping[str, System], tuple[str, ...]]] = [
    (entities.LegalEntity, "erp", {}, ()),
    (
        entities.Account,
        "crm",
        # The legal customer (entity, tax registration, billing currency) is ERP master data; the CRM
        # keeps the relationship. Billing feedback fields are computed from ERP receivables.
        {"legal_entity": "erp", "tax_id": "erp", "currency": "erp", **_ERP_LINK, **_PSA_LINK,
         "billed_to_date": "erp", "paid_to_date": "erp", "open_receivables": "erp", "payment_terms": "erp"},
        ("billed_to_date", "paid_to_date", "open_receivables", "payment_terms"),
    ),
    (entities.Address, "crm", {}, ()),
    (entities.Opportunity, "crm", {}, ()),
    (entities.OpportunityLine, "crm", {}, ()),
    (entities.Contract, "erp", {}, ()),
    (entities.ContractAmendment, "erp", {}, ()),
    (entities.RateCardLine, "erp", {}, ()),
    (entities.BillingSchedule, "erp", {}, ()),
    (entities.BillingEvent, "erp", {}, ()),
    (entities.Recurrence, "erp", {}, ()),
    (
        entities.Project,
        "psa",
        # The ERP job carries the commercial frame; the PSA runs the delivery.
        {"contract_id": "erp", "legal_entity": "erp", "billing_method": "erp", "budget": "erp", **_ERP_LINK},
        (),
    ),
    (entities.Task, "psa", {"labour_category": "erp", **_ERP_LINK}, ()),
    (
        entities.Milestone,
        "psa",
        # The PSA says when a milestone is done; what it is worth and its billing belong to the ERP.
        {"amount": "erp", "billing_event_id": "erp", **_ERP_LINK},
        (),
    ),
    # Posting and billing state is what the ERP did with the entry, not what the consultant recorded.
    (entities.TimeEntry, "psa", {"posting_status": "erp", "is_billed": "erp", **_ERP_LINK}, ()),
    (entities.Expense, "psa", {"posting_status": "erp", "is_billed": "erp", **_ERP_LINK}, ()),
    (entities.Invoice, "erp", {}, ()),
    (entities.Payment, "erp", {}, ()),
    (entities.PaymentApplication, "erp", {}, ()),
    (entities.CreditMemo, "erp", {}, ()),
    (entities.AccountingPeriod, "erp", {}, ()),
    (entities.CurrencyRate, "erp", {}, ()),
]

# Revenue is recognised in the ERP and has no dataclass of its own in the graph.
_VIRTUAL: list[tuple[str, System, tuple[str, ...]]] = [
    ("Revenue", "erp", ("contract_id", "project_id", "period", "amount", "recognised_on")),
]


def _build() -> dict[str, Ownership]:
    table: dict[str, Ownership] = {}
    for cls, owner, overrides, extra in _TABLE:
        names = [f.name for f in dataclasses.fields(cls)] + list(extra)
        unknown = set(overrides) - set(names)
        if unknown:  # a typo here would silently give a field the default owner
            raise RuntimeError(f"ownership of {cls.__name__} overrides unknown fields {sorted(unknown)}")
        fields: dict[str, System] = {name: overrides.get(name, owner) for name in names}
        # A system's own id of a record is always that system's fact.
        fields.update({f"{s}_id": s for s in ("crm", "psa", "erp") if f"{s}_id" in fields})
        table[cls.__name__] = Ownership(cls.__name__, owner, fields)
    for name, owner, virtual_fields in _VIRTUAL:
        table[name] = Ownership(name, owner, dict.fromkeys(virtual_fields, owner))
    return table


OWNERSHIP: Mapping[str, Ownership] = _build()

_BY_KEY = {name.lower(): name for name in OWNERSHIP}


def _normalise(name: str) -> str:
    return name.replace("_", "").replace(" ", "").lower()


def ownership(entity: str) -> Ownership:
    """The ownership of ``entity``, by class name in any case (``TimeEntry``, ``time_entry``)."""
    key = _BY_KEY.get(_normalise(entity))
    if key is None:
        raise UnknownOwnership(entity, list(OWNERSHIP))
    return OWNERSHIP[key]


def owner_of(entity: str, field: str | None = None) -> System:
    """The system that owns ``entity``, or its ``field`` when given; unknown names raise."""
    record = ownership(entity)
    if field is None:
        return record.owner
    try:
        return record.fields[field]
    except KeyError:
        raise UnknownOwnership(field, list(record.fields), entity=record.entity) from None


def check_write(system: System, entity: str, fields: Iterable[str]) -> None:
    """Refuse a write to ``system`` that touches fields another system owns."""
    record = ownership(entity)
    problems = [
        Problem(field=name, message=f"owned by {owner_of(record.entity, name)}, not {system}",
                reason="NOT_OWNER")
        for name in fields
        if owner_of(record.entity, name) != system
    ]
    if problems:
        raise ValidationFailed(problems, subject=f"write of {record.entity} to {system}")
