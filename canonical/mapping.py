"""The firm's mapping set: how canonical values become ERP and PSA values, loaded from a versioned YAML.

A ``MappingSet`` is immutable; its lookups raise ``MappingMissing`` naming the table and key, which is
what lands in the exception queue when, say, a labour category is unmapped. Fix the file, load a new
version, replay. ``fingerprint()`` identifies the content (not the formatting) for the store's mapping
versions. Loading reports every problem at once, each with its dotted key and line number, e.g.
``mapping firm.yaml: billing_methods.RETAINER.erp_billing_type: line 9: unknown ERP billing type 'XX'; …``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, is_dataclass
from datetime import date, timedelta
from decimal import Decimal
from enum import Enum, StrEnum
from functools import lru_cache
from importlib import resources
from types import MappingProxyType
from typing import Any, TypeVar

import yaml

from canonical.entities import LegalEntity
from canonical.enums import BillingMethod, PeriodPolicy
from canonical.errors import MappingInvalid, Problem, ValidationFailed


class MappingMissing(ValidationFailed):
    code = "MAPPING_MISSING"

    def __init__(self, table: str, key: object, version: str) -> None:
        super().__init__(
            [Problem(field=table, message=f"no mapping for '{key!s}' (mapping version {version})",
                     reason="MAPPING_MISSING")],
            subject="mapping",
        )
        self.table, self.key = table, str(key)
        self.extensions.update(table=table, key=str(key), mappingVersion=version)


class ErpBillingType(StrEnum):
    """NetSuite ``job.jobBillingType``."""

    CHARGE_BASED = "CB"
    FIXED_BID_INTERVAL = "FBI"
    FIXED_BID_MILESTONE = "FBM"
    TIME_AND_MATERIALS = "TM"


class ScheduleKind(StrEnum):
    MILESTONE = "MILESTONE"  # an event per milestone, released when it completes
    AS_INCURRED = "AS_INCURRED"  # billed from approved time and expenses each period
    RECURRING = "RECURRING"  # a fixed fee every period


@dataclass(frozen=True, slots=True)
class ScheduleTemplate:
    name: str
    kind: ScheduleKind
    every_months: int = 1
    in_arrears: bool = False


@dataclass(frozen=True, slots=True)
class BillingRule:
    method: BillingMethod
    erp_billing_type: ErpBillingType
    schedule: ScheduleTemplate


@dataclass(frozen=True, slots=True)
class ServiceItem:
    product_code: str
    erp_item: str  # ERP internal id
    name: str


@dataclass(frozen=True, slots=True)
class TaskRule:
    labour_category: str
    product_code: str | None = None  # overrides the labour category's service item


@dataclass(frozen=True, slots=True)
class BusinessLine:
    name: str
    cost_center: str
    department: str  # ERP internal id
    class_: str  # ERP internal id (``class`` in the file and in NetSuite)
    project_template: str


@dataclass(frozen=True, slots=True)
class PaymentTerms:
    code: str
    erp_id: str
    days: int

    def due_date(self, tran_date: date) -> date:
        return tran_date + timedelta(days=self.days)


@dataclass(frozen=True, slots=True)
class EntitySettings:
    """A legal entity with the policies the mapping attaches to it."""

    entity: LegalEntity
    payment_terms: str
    period_policy: PeriodPolicy


@dataclass(frozen=True, slots=True)
class TaxCode:
    country: str
    code: str
    rate: Decimal  # percent


@dataclass(frozen=True, slots=True)
class CountryRule:
    country: str
    legal_entity: str
    tax: TaxCode


@dataclass(frozen=True, slots=True)
class MilestonePattern:
    name: str
    task: str
    billing_percent: Decimal
    due_after_days: int | None = None


@dataclass(frozen=True, slots=True)
class ProjectTemplate:
    name: str
    tasks: tuple[str, ...]
    milestones: tuple[MilestonePattern, ...] = ()


_K = TypeVar("_K")
_V = TypeVar("_V")
_E = TypeVar("_E", bound=Enum)


@dataclass(frozen=True, eq=False)
class MappingSet:
    """One validated version of the mapping. Tables are read-only; use the lookup methods."""

    version: str
    billing_methods: Mapping[BillingMethod, BillingRule]
    schedule_templates: Mapping[str, ScheduleTemplate]
    service_items: Mapping[str, ServiceItem]
    labour_categories: Mapping[str, str]  # category → product code
    tasks: Mapping[str, TaskRule]
    roles: Mapping[str, str]  # PSA role → labour category
    business_lines: Mapping[str, BusinessLine]
    legal_entities: Mapping[str, EntitySettings]
    countries: Mapping[str, CountryRule]
    payment_terms: Mapping[str, PaymentTerms]
    project_templates: Mapping[str, ProjectTemplate]
    description: str = ""
    source: str = "<text>"

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, dict):  # a shared instance (``demo_mapping()``) must not be mutable
                object.__setattr__(self, f.name, MappingProxyType(value))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MappingSet) and self.fingerprint() == other.fingerprint()

    def __hash__(self) -> int:
        return hash(self.fingerprint())

    def _get(self, table: str, entries: Mapping[_K, _V], key: _K) -> _V:
        try:
            return entries[key]
        except (KeyError, TypeError):
            raise MappingMissing(table, key, self.version) from None

    # --- lookups ---------------------------------------------------------------------------------

    def billing_rule(self, method: BillingMethod | str) -> BillingRule:
        try:
            canonical = BillingMethod(method)
        except ValueError:
            raise MappingMissing("billing_methods", method, self.version) from None
        return self._get("billing_methods", self.billing_methods, canonical)

    def erp_billing_type(self, method: BillingMethod | str) -> ErpBillingType:
        return self.billing_rule(method).erp_billing_type

    def schedule_template(self, method: BillingMethod | str) -> ScheduleTemplate:
        return self.billing_rule(method).schedule

    def service_item(self, product_code: str) -> ServiceItem:
        return self._get("service_items", self.service_items, product_code)

    def labour_category(self, task: str, role: str | None = None) -> str:
        """The labour category of time on ``task``; a mapped ``role`` wins (a senior on Build bills as
        senior). An unmapped role is an error rather than a silent fallback to the task."""
        if role is not None:
            return self._get("roles", self.roles, role)
        return self._get("tasks", self.tasks, task).labour_category

    def time_service_item(self, task: str, role: str | None = None) -> ServiceItem:
        """The ERP item time on ``task`` posts with: the task's own item, else its labour category's."""
        rule = self._get("tasks", self.tasks, task)
        if rule.product_code is not None:
            return self.service_item(rule.product_code)
        category = self.labour_category(task, role)
        return self.service_item(self._get("labour_categories", self.labour_categories, category))

    def business_line(self, name: str) -> BusinessLine:
        return self._get("business_lines", self.business_lines, name)

    def entity_settings(self, code: str) -> EntitySettings:
        return self._get("legal_entities", self.legal_entities, code)

    def legal_entity(self, code: str) -> LegalEntity:
        return self.entity_settings(code).entity

    def legal_entity_for_subsidiary(self, subsidiary: str | int) -> LegalEntity:
        found = next((s.entity for s in self.legal_entities.values()
                      if s.entity.subsidiary == str(subsidiary)), None)
        if found is None:
            raise MappingMissing("legal_entities.subsidiary", subsidiary, self.version)
        return found

    def legal_entity_for_country(self, country: str) -> LegalEntity:
        return self.legal_entity(self._get("countries", self.countries, country).legal_entity)

    def period_policy(self, legal_entity: str) -> PeriodPolicy:
        return self.entity_settings(legal_entity).period_policy

    def terms(self, code: str) -> PaymentTerms:
        return self._get("payment_terms", self.payment_terms, code)

    def default_terms(self, legal_entity: str) -> PaymentTerms:
        return self.terms(self.entity_settings(legal_entity).payment_terms)

    def tax_code(self, country: str) -> TaxCode:
        return self._get("countries", self.countries, country).tax

    def project_template(self, business_line: str) -> ProjectTemplate:
        name = self.business_line(business_line).project_template
        return self._get("project_templates", self.project_templates, name)

    def project_plan(self, business_line: str, method: BillingMethod | str) -> ProjectTemplate:
        """The business line's template, with milestones only when the method bills by milestone
        (a T&M or retainer project has tasks but no billing milestones)."""
        template = self.project_template(business_line)
        if self.schedule_template(method).kind is ScheduleKind.MILESTONE:
            if not template.milestones:
                raise MappingMissing(f"project_templates.{template.name}.milestones", method, self.version)
            return template
        return ProjectTemplate(template.name, template.tasks, ())

    # --- identity --------------------------------------------------------------------------------

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready content (without ``source``): what the fingerprint covers."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self) if f.name != "source"}

    def fingerprint(self) -> str:
        text = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()


def _jsonable(value: object) -> object:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name.rstrip("_"): _jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        # 30 and 30.0 are the same mapping, so they must give the same fingerprint.
        return format(value.normalize(), "f")
    return value


# --- loading -------------------------------------------------------------------------------------

Path = tuple[str | int, ...]
_MISSING: Any = object()


def _dotted(path: Path) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else p for p in path).replace(".[", "[") or "<root>"


def _kind(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "a mapping", type(None): "nothing"}
    return names.get(type(value), type(value).__name__)


class _Document:
    """A YAML document as plain values plus the line of every key, and the problems found so far.

    PyYAML's loaders forget positions and silently keep the last of duplicate keys; walking the composed
    node graph keeps both facts. Mapping keys are taken as written, so ``NO`` (Norway) stays a string.
    """

    def __init__(self) -> None:
        self.lines: dict[Path, int] = {}
        self.problems: list[tuple[int, Problem]] = []  # with the line, to report in file order
        self._constructor = yaml.constructor.SafeConstructor()

    def line(self, path: Path) -> int:
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path, 1)

    def fail(self, path: Path, message: str, reason: str = "INVALID") -> None:
        self.report(self.line(path), path, message, reason)

    def report(self, line: int, path: Path, message: str, reason: str) -> None:
        self.problems.append((line, Problem(_dotted(path), f"line {line}: {message}", reason)))

    def read(self, node: yaml.Node, path: Path) -> object:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            result: dict[str, object] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    self.report(key_node.start_mark.line + 1, path, "keys must be plain text", "WRONG_TYPE")
                    continue
                key, key_line = str(key_node.value), key_node.start_mark.line + 1
                if key in result:
                    first = self.lines[(*path, key)]
                    self.report(key_line, (*path, key), f"duplicate key {key!r} (first at line {first})",
                                "DUPLICATE_KEY")
                    continue
                self.lines[(*path, key)] = key_line
                result[key] = self.read(value_node, (*path, key))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.read(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._constructor.construct_object(node, deep=True)

    # --- typed access; a bad value is recorded and replaced by a harmless default ----------------

    def value(self, obj: Mapping[str, object], path: Path, key: str, default: object = _MISSING) -> object:
        if key in obj:
            return obj[key]
        if default is _MISSING:
            self.fail((*path, key), f"missing required key {key!r}", "MISSING")
        return default

    def wrong(self, path: Path, expected: str, value: object) -> None:
        self.fail(path, f"expected {expected}, got {_kind(value)} {value!r}", "WRONG_TYPE")

    def mapping(self, value: object, path: Path) -> dict[str, object]:
        if isinstance(value, dict):
            return value
        self.wrong(path, "a mapping", value)
        return {}

    def section(self, obj: Mapping[str, object], path: Path, key: str) -> dict[str, object]:
        value = self.value(obj, path, key)
        return {} if value is _MISSING else self.mapping(value, (*path, key))

    def only(self, obj: Mapping[str, object], path: Path, allowed: Iterable[str]) -> None:
        allowed = list(allowed)
        for key in obj:
            if key not in allowed:
                self.fail((*path, key), f"unknown key {key!r}; expected one of {', '.join(allowed)}",
                          "UNKNOWN_KEY")

    def text(self, obj: Mapping[str, object], path: Path, key: str, default: object = _MISSING) -> str:
        value = self.value(obj, path, key, default)
        if value is _MISSING or (value is None and default is None):
            return ""
        if isinstance(value, str) and value.strip():
            return value
        self.wrong((*path, key), "non-empty text", value)
        return ""

    def ident(self, obj: Mapping[str, object], path: Path, key: str) -> str:
        """An ERP internal id: text, or an integer written without quotes."""
        value = self.value(obj, path, key)
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return self.text(obj, path, key)

    def code(self, obj: Mapping[str, object], path: Path, key: str, length: int, what: str) -> str:
        value = self.text(obj, path, key)
        if value and not (len(value) == length and value.isalpha() and value.isupper()):
            self.fail((*path, key), f"{value!r} is not {what}", "INVALID")
        return value

    def flag(self, obj: Mapping[str, object], path: Path, key: str, default: bool) -> bool:
        value = self.value(obj, path, key, default)
        if isinstance(value, bool):
            return value
        self.wrong((*path, key), "true or false", value)
        return default

    def integer(self, obj: Mapping[str, object], path: Path, key: str, default: object = _MISSING) -> int:
        value = self.value(obj, path, key, default)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if value is not _MISSING:
            self.wrong((*path, key), "a whole number ≥ 0", value)
        return 0

    def number(self, obj: Mapping[str, object], path: Path, key: str) -> Decimal:
        value = self.value(obj, path, key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        if value is not _MISSING:
            self.wrong((*path, key), "a number ≥ 0", value)
        return Decimal(0)

    def choice(self, obj: Mapping[str, object], path: Path, key: str, enum: type[_E], what: str) -> _E:
        value = self.value(obj, path, key)
        return self.member(value, (*path, key), enum, what)

    def member(self, value: object, path: Path, enum: type[_E], what: str) -> _E:
        members = list(enum)
        for member in members:
            if member.value == value:
                return member
        if value is not _MISSING:
            expected = ", ".join(str(m.value) for m in members)
            self.fail(path, f"unknown {what} {value!r}; expected one of {expected}", "UNKNOWN_VALUE")
        return members[0]

    def names(self, obj: Mapping[str, object], path: Path, key: str) -> tuple[str, ...]:
        value = self.value(obj, path, key)
        if not isinstance(value, list):
            if value is not _MISSING:
                self.wrong((*path, key), "a list", value)
            return ()
        result = []
        for i, item in enumerate(value):
            if isinstance(item, str) and item.strip():
                result.append(item)
            else:
                self.wrong((*path, key, i), "non-empty text", item)
        return tuple(result)

    def refers(self, value: str | None, path: Path, target: Mapping[str, object], table: str) -> None:
        if value and value not in target:
            self.fail(path, f"{value!r} is not in {table}", "UNKNOWN_REFERENCE")


_T = TypeVar("_T")


def _table(
    doc: _Document, data: Mapping[str, object], name: str,
    build: Callable[[str, dict[str, object], Path], _T], allowed: Iterable[str] | None,
    *, required: bool = True,
) -> tuple[dict[str, _T], dict[str, object]]:
    """Build every entry of section ``name``; returns the entries and the raw section (for references).

    ``allowed`` lists an entry's keys; ``None`` means entries are plain values, passed as ``{"": value}``.
    """
    if not required and name not in data:
        return {}, {}
    raw = doc.section(data, (), name)
    built: dict[str, _T] = {}
    for key, value in raw.items():
        path: Path = (name, key)
        entry = doc.mapping(value, path) if allowed is not None else {"": value}
        if allowed is not None:
            doc.only(entry, path, allowed)
        built[key] = build(key, entry, path)
    return built, raw


def _parse(data: Mapping[str, object], doc: _Document, source: str) -> MappingSet:
    doc.only(data, (), ["version", "description", "billing_methods", "schedule_templates", "service_items",
                        "labour_categories", "tasks", "roles", "business_lines", "legal_entities",
                        "countries", "payment_terms", "project_templates"])
    version = doc.ident(data, (), "version")
    description = doc.text(data, (), "description", default=None)

    schedules, raw_schedules = _table(doc, data, "schedule_templates", lambda key, e, p: ScheduleTemplate(
        key, doc.choice(e, p, "kind", ScheduleKind, "schedule kind"),
        every_months=doc.integer(e, p, "every_months", default=1),
        in_arrears=doc.flag(e, p, "in_arrears", default=False),
    ), ["kind", "every_months", "in_arrears"])

    def billing(key: str, e: dict[str, object], p: Path) -> BillingRule:
        template = doc.text(e, p, "schedule_template")
        doc.refers(template, (*p, "schedule_template"), raw_schedules, "schedule_templates")
        return BillingRule(
            doc.member(key, p, BillingMethod, "billing method"),
            doc.choice(e, p, "erp_billing_type", ErpBillingType, "ERP billing type"),
            schedules.get(template) or ScheduleTemplate(template, ScheduleKind.MILESTONE),
        )

    rules, _ = _table(doc, data, "billing_methods", billing, ["erp_billing_type", "schedule_template"])

    items, raw_items = _table(doc, data, "service_items", lambda key, e, p: ServiceItem(
        key, doc.ident(e, p, "erp_item"), doc.text(e, p, "name")), ["erp_item", "name"])

    def category(key: str, e: dict[str, object], p: Path) -> str:
        product = doc.text(e, p, "product_code")
        doc.refers(product, (*p, "product_code"), raw_items, "service_items")
        return product

    categories, raw_categories = _table(doc, data, "labour_categories", category, ["product_code"])

    def task(key: str, e: dict[str, object], p: Path) -> TaskRule:
        category = doc.text(e, p, "labour_category")
        doc.refers(category, (*p, "labour_category"), raw_categories, "labour_categories")
        product = doc.text(e, p, "product_code", default=None) or None
        doc.refers(product, (*p, "product_code"), raw_items, "service_items")
        return TaskRule(category, product)

    tasks, raw_tasks = _table(doc, data, "tasks", task, ["labour_category", "product_code"])

    def role(key: str, e: dict[str, object], p: Path) -> str:
        category = e[""]
        if not (isinstance(category, str) and category.strip()):
            doc.wrong(p, "a labour category", category)
            return ""
        doc.refers(category, p, raw_categories, "labour_categories")
        return category

    roles, _ = _table(doc, data, "roles", role, None, required=False)

    def milestone(e: dict[str, object], p: Path) -> MilestonePattern:
        doc.only(e, p, ["name", "task", "billing_percent", "due_after_days"])
        return MilestonePattern(
            doc.text(e, p, "name"), doc.text(e, p, "task"), doc.number(e, p, "billing_percent"),
            doc.integer(e, p, "due_after_days") if "due_after_days" in e else None,
        )

    def template(key: str, e: dict[str, object], p: Path) -> ProjectTemplate:
        template_tasks = doc.names(e, p, "tasks")
        for i, name in enumerate(template_tasks):
            doc.refers(name, (*p, "tasks", i), raw_tasks, "tasks")
        raw_milestones = doc.value(e, p, "milestones", default=[])
        if not isinstance(raw_milestones, list):
            doc.wrong((*p, "milestones"), "a list", raw_milestones)
            raw_milestones = []
        patterns = []
        for i, raw in enumerate(raw_milestones):
            mp: Path = (*p, "milestones", i)
            pattern = milestone(doc.mapping(raw, mp), mp)
            if pattern.task and pattern.task not in template_tasks:
                doc.fail((*mp, "task"), f"{pattern.task!r} is not one of this template's tasks",
                         "UNKNOWN_REFERENCE")
            patterns.append(pattern)
        share = sum((m.billing_percent for m in patterns), Decimal(0))
        if patterns and share != 100:
            doc.fail((*p, "milestones"), f"billing_percent adds up to {share}, not 100", "INVALID")
        return ProjectTemplate(key, template_tasks, tuple(patterns))

    templates, raw_templates = _table(doc, data, "project_templates", template, ["tasks", "milestones"])

    def business_line(key: str, e: dict[str, object], p: Path) -> BusinessLine:
        name = doc.text(e, p, "project_template")
        doc.refers(name, (*p, "project_template"), raw_templates, "project_templates")
        return BusinessLine(key, doc.text(e, p, "cost_center"), doc.ident(e, p, "department"),
                            doc.ident(e, p, "class"), name)

    lines, _ = _table(doc, data, "business_lines", business_line,
                      ["cost_center", "department", "class", "project_template"])

    terms, raw_terms = _table(doc, data, "payment_terms", lambda key, e, p: PaymentTerms(
        key, doc.ident(e, p, "erp_id"), doc.integer(e, p, "days")), ["erp_id", "days"])

    subsidiaries: dict[str, str] = {}

    def entity(key: str, e: dict[str, object], p: Path) -> EntitySettings:
        subsidiary = doc.ident(e, p, "subsidiary")
        if subsidiary and subsidiary in subsidiaries:
            # Two entities on one subsidiary would make ERP → canonical ambiguous.
            doc.fail((*p, "subsidiary"), f"subsidiary {subsidiary!r} is also {subsidiaries[subsidiary]}'s",
                     "DUPLICATE_KEY")
        subsidiaries.setdefault(subsidiary, key)
        payment_terms = doc.text(e, p, "payment_terms")
        doc.refers(payment_terms, (*p, "payment_terms"), raw_terms, "payment_terms")
        return EntitySettings(
            LegalEntity(
                code=key, name=doc.text(e, p, "name"),
                country=doc.code(e, p, "country", 2, "an ISO 3166 country code"),
                currency=doc.code(e, p, "currency", 3, "an ISO 4217 currency code"),
                subsidiary=subsidiary,
                requires_tax_id=doc.flag(e, p, "requires_tax_id", default=False),
                tax_id_label=doc.text(e, p, "tax_id_label", default="Tax ID") or "Tax ID",
            ),
            payment_terms,
            doc.choice(e, p, "period_policy", PeriodPolicy, "period policy"),
        )

    entities, raw_entities = _table(doc, data, "legal_entities", entity, [
        "name", "subsidiary", "currency", "country", "requires_tax_id", "tax_id_label", "payment_terms",
        "period_policy"])

    def country(key: str, e: dict[str, object], p: Path) -> CountryRule:
        if not (len(key) == 2 and key.isalpha() and key.isupper()):
            doc.fail(p, f"{key!r} is not an ISO 3166 country code")
        legal_entity = doc.text(e, p, "legal_entity")
        doc.refers(legal_entity, (*p, "legal_entity"), raw_entities, "legal_entities")
        return CountryRule(key, legal_entity,
                           TaxCode(key, doc.text(e, p, "tax_code"), doc.number(e, p, "tax_rate")))

    countries, _ = _table(doc, data, "countries", country, ["legal_entity", "tax_code", "tax_rate"])

    return MappingSet(
        version=version, billing_methods={r.method: r for r in rules.values()},
        schedule_templates=schedules, service_items=items, labour_categories=categories, tasks=tasks,
        roles=roles, business_lines=lines, legal_entities=entities, countries=countries,
        payment_terms=terms, project_templates=templates, description=description, source=source,
    )


def load_mapping_text(text: str, *, source: str = "<text>") -> MappingSet:
    """Parse and validate a mapping set; ``MappingInvalid`` lists every problem with its line."""
    subject = f"mapping {source}"
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"line {mark.line + 1}: " if mark else ""
        raise MappingInvalid([Problem("<file>", f"{line}{exc.problem or exc}", "SYNTAX")],
                             subject=subject) from exc
    except yaml.YAMLError as exc:
        raise MappingInvalid([Problem("<file>", str(exc), "SYNTAX")], subject=subject) from exc
    doc = _Document()
    if root is None:
        raise MappingInvalid([Problem("<file>", "the document is empty", "MISSING")], subject=subject)
    try:
        data = doc.read(root, ())
    except yaml.MarkedYAMLError as exc:  # a scalar that does not construct, e.g. a bad timestamp
        raise MappingInvalid([Problem("<file>", str(exc), "INVALID")], subject=subject) from exc
    result = _parse(doc.mapping(data, ()), doc, source)
    if doc.problems:
        raise MappingInvalid([p for _, p in sorted(doc.problems, key=lambda lp: lp[0])], subject=subject)
    return result


def load_mapping(path: str | os.PathLike[str]) -> MappingSet:
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError as exc:
        raise MappingInvalid([Problem("<file>", f"cannot read {os.fspath(path)}: {exc.strerror}", "MISSING")],
                             subject="mapping") from exc
    return load_mapping_text(text, source=os.fspath(path))


@lru_cache(maxsize=1)
def demo_mapping() -> MappingSet:
    """The demo firm's mapping shipped with the package (cached: a ``MappingSet`` is immutable)."""
    text = resources.files("canonical").joinpath("demo_mapping.yaml").read_text(encoding="utf-8")
    return load_mapping_text(text, source="canonical/demo_mapping.yaml")
