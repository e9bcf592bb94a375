from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from importlib import resources
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from canonical.enums import BillingMethod, PeriodPolicy
from canonical.errors import MappingInvalid
from canonical.mapping import (
    ErpBillingType,
    MappingMissing,
    MappingSet,
    ScheduleKind,
    demo_mapping,
    load_mapping,
    load_mapping_text,
)

DEMO_TEXT = resources.files("canonical").joinpath("demo_mapping.yaml").read_text(encoding="utf-8")
PRODUCT_CODES = ["CONSULT-SR", "CONSULT-JR", "IMPL-FIXED", "MS-RETAINER", "MS-SUB", "TRAINING", "PM"]
TASKS = ["Discovery", "Design", "Build", "Test", "Deploy", "Project Management", "Support", "Training"]
LABOUR_CATEGORIES = ["Senior Consultant", "Consultant", "Architect", "Project Manager", "Support Engineer"]
BUSINESS_LINES = ["Consulting", "Implementation", "Managed Services"]
COUNTRIES = ["US", "DE", "FR", "GB", "NL"]


def edit(old: str, new: str, text: str = DEMO_TEXT) -> str:
    assert text.count(old) == 1, f"{old!r} must occur exactly once"
    return text.replace(old, new)


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def invalid(text: str) -> MappingInvalid:
    with pytest.raises(MappingInvalid) as info:
        load_mapping_text(text, source="firm.yaml")
    assert info.value.code == "MAPPING_INVALID"
    return info.value


# --- the demo mapping ----------------------------------------------------------------------------


def test_demo_mapping_loads_and_is_cached() -> None:
    mapping = demo_mapping()
    assert mapping.version == "2025.1"
    assert mapping is demo_mapping()
    assert mapping.source.endswith("demo_mapping.yaml")


def test_demo_legal_entities() -> None:
    us, eu = demo_mapping().legal_entity("US01"), demo_mapping().legal_entity("EU01")
    assert (us.subsidiary, us.currency, us.country, us.requires_tax_id) == ("1", "USD", "US", True)
    assert (eu.subsidiary, eu.currency, eu.country, eu.requires_tax_id) == ("2", "EUR", "DE", True)
    assert eu.tax_id_label == "VAT ID"
    assert demo_mapping().legal_entity_for_subsidiary(2) == eu
    assert demo_mapping().legal_entity_for_subsidiary("1") == us
    assert demo_mapping().period_policy("US01") is PeriodPolicy.NEXT_OPEN
    assert demo_mapping().period_policy("EU01") is PeriodPolicy.EXCEPTION
    terms = demo_mapping().default_terms("US01")
    assert (terms.code, terms.days) == ("NET30", 30)
    assert terms.due_date(date(2025, 1, 15)) == date(2025, 2, 14)


@pytest.mark.parametrize(
    ("method", "erp_type", "kind", "in_arrears"),
    [
        (BillingMethod.FIXED_FEE, ErpBillingType.FIXED_BID_MILESTONE, ScheduleKind.MILESTONE, False),
        (BillingMethod.MILESTONE, ErpBillingType.FIXED_BID_MILESTONE, ScheduleKind.MILESTONE, False),
        (BillingMethod.TIME_AND_MATERIALS, ErpBillingType.TIME_AND_MATERIALS, ScheduleKind.AS_INCURRED, True),
        (BillingMethod.RETAINER, ErpBillingType.FIXED_BID_INTERVAL, ScheduleKind.RECURRING, True),
        (BillingMethod.SUBSCRIPTION, ErpBillingType.FIXED_BID_INTERVAL, ScheduleKind.RECURRING, False),
    ],
)
def test_demo_billing_methods(
    method: BillingMethod, erp_type: ErpBillingType, kind: ScheduleKind, in_arrears: bool
) -> None:
    mapping = demo_mapping()
    assert mapping.erp_billing_type(method) == erp_type
    assert mapping.erp_billing_type(method.value) == erp_type  # plain strings work too
    assert (mapping.schedule_template(method).kind, mapping.schedule_template(method).in_arrears) == (
        kind, in_arrears)


def test_every_demo_value_is_mapped() -> None:
    mapping = demo_mapping()
    assert {mapping.service_item(code).product_code for code in PRODUCT_CODES} == set(PRODUCT_CODES)
    # every product posts with a service item the demo ERP has (one per labour category: 200–204)
    assert {mapping.service_item(code).erp_item for code in PRODUCT_CODES} <= {str(200 + i) for i in range(5)}
    for task in TASKS:
        assert mapping.labour_category(task) in LABOUR_CATEGORIES
        assert mapping.time_service_item(task).product_code in PRODUCT_CODES
    for category in LABOUR_CATEGORIES:
        assert mapping.labour_category("Build", role=category) == category
    for name in BUSINESS_LINES:
        line = mapping.business_line(name)
        assert line.cost_center and line.department and line.class_
        assert set(mapping.project_template(name).tasks) <= set(TASKS)
    for country in COUNTRIES:
        assert mapping.tax_code(country).code
        assert mapping.legal_entity_for_country(country).code in ("US01", "EU01")


def test_demo_specific_rules() -> None:
    mapping = demo_mapping()
    assert mapping.labour_category("Design") == "Architect"
    assert mapping.labour_category("Build", role="Solution Architect") == "Architect"  # role wins
    assert mapping.time_service_item("Training").product_code == "TRAINING"  # task's own item
    assert mapping.time_service_item("Build").product_code == "CONSULT-JR"
    assert mapping.time_service_item("Build", role="Architect").product_code == "CONSULT-SR"
    assert mapping.tax_code("DE").rate == Decimal(19)
    assert mapping.legal_entity_for_country("GB").code == "EU01"


def test_project_plan_has_milestones_only_for_milestone_billing() -> None:
    mapping = demo_mapping()
    fixed = mapping.project_plan("Implementation", BillingMethod.FIXED_FEE)
    assert [m.name for m in fixed.milestones] == ["Design sign-off", "Build complete", "Go-live",
                                                 "Training delivered"]
    assert sum(m.billing_percent for m in fixed.milestones) == 100
    tm = mapping.project_plan("Implementation", BillingMethod.TIME_AND_MATERIALS)
    assert tm.tasks == fixed.tasks and tm.milestones == ()
    assert mapping.project_plan("Managed Services", BillingMethod.RETAINER).milestones == ()
    for line in BUSINESS_LINES:
        assert mapping.project_plan(line, BillingMethod.MILESTONE).milestones


def test_missing_mappings_raise_naming_table_and_key() -> None:
    mapping = demo_mapping()
    cases: list[tuple[Callable[[], object], str, str]] = [
        (lambda: mapping.service_item("GOLD-PLATING"), "service_items", "GOLD-PLATING"),
        (lambda: mapping.labour_category("Napping"), "tasks", "Napping"),
        (lambda: mapping.labour_category("Build", role="Intern"), "roles", "Intern"),
        (lambda: mapping.business_line("Catering"), "business_lines", "Catering"),
        (lambda: mapping.legal_entity("JP01"), "legal_entities", "JP01"),
        (lambda: mapping.legal_entity_for_subsidiary(99), "legal_entities.subsidiary", "99"),
        (lambda: mapping.tax_code("JP"), "countries", "JP"),
        (lambda: mapping.terms("NET90"), "payment_terms", "NET90"),
        (lambda: mapping.billing_rule("BARTER"), "billing_methods", "BARTER"),
    ]
    for call, table, key in cases:
        with pytest.raises(MappingMissing) as info:
            call()
        error = info.value
        assert error.code == "MAPPING_MISSING"
        assert (error.table, error.key) == (table, key)
        assert key in str(error) and table in str(error)
        assert error.extensions["mappingVersion"] == "2025.1"


def test_a_method_not_in_the_file_is_missing_not_crashing() -> None:
    text = edit("  SUBSCRIPTION:       {erp_billing_type: FBI, schedule_template: monthly_in_advance}\n", "")
    with pytest.raises(MappingMissing):
        load_mapping_text(text).billing_rule(BillingMethod.SUBSCRIPTION)


def test_tables_are_read_only() -> None:
    with pytest.raises(TypeError):
        demo_mapping().service_items["X"] = demo_mapping().service_item("PM")  # type: ignore[index]


# --- identity ------------------------------------------------------------------------------------


def test_fingerprint_ignores_formatting_but_not_content() -> None:
    base = demo_mapping().fingerprint()
    assert len(base) == 64
    reformatted = "# a comment\n" + edit("{erp_item: \"200\"", "{ erp_item: 200 ")
    assert load_mapping_text(reformatted).fingerprint() == base
    assert load_mapping_text(edit("tax_rate: 19}", "tax_rate: 19.0}")).fingerprint() == base
    assert load_mapping_text(edit("tax_rate: 19}", "tax_rate: 19.5}")).fingerprint() != base
    assert load_mapping_text(edit('version: "2025.1"', 'version: "2025.2"')).fingerprint() != base
    assert load_mapping_text(DEMO_TEXT, source="elsewhere.yaml") == demo_mapping()  # source is not content


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32))
def test_fingerprint_is_independent_of_key_order(seed: int) -> None:
    shuffle = random.Random(seed).shuffle

    def shuffled(value: object) -> object:
        if isinstance(value, dict):
            items = list(value.items())
            shuffle(items)
            return {k: shuffled(v) for k, v in items}
        return value  # list order (tasks, milestones) is meaningful

    data = yaml.safe_load(DEMO_TEXT)
    text = yaml.safe_dump(shuffled(data), sort_keys=False, allow_unicode=True)
    assert load_mapping_text(text).fingerprint() == demo_mapping().fingerprint()


def test_as_dict_is_plain_json_data() -> None:
    data = demo_mapping().as_dict()
    assert data["billing_methods"]["FIXED_FEE"]["erp_billing_type"] == "FBM"
    assert data["business_lines"]["Consulting"]["class"] == "1"
    assert "source" not in data


# --- validation ----------------------------------------------------------------------------------


def test_missing_key_names_key_and_line() -> None:
    old = "  TIME_AND_MATERIALS: {erp_billing_type: TM, schedule_template: as_incurred}"
    text = edit(old, "  TIME_AND_MATERIALS: {schedule_template: as_incurred}")
    error = invalid(text)
    [problem] = error.problems
    assert problem.field == "billing_methods.TIME_AND_MATERIALS.erp_billing_type"
    assert problem.reason == "MISSING"
    assert f"line {line_of(text, 'TIME_AND_MATERIALS')}" in problem.message
    assert "erp_billing_type" in str(error) and "firm.yaml" in str(error)


def test_missing_section() -> None:
    start, end = DEMO_TEXT.index("payment_terms:\n  DUE"), DEMO_TEXT.index("# Tasks and milestones")
    text = DEMO_TEXT[:start] + DEMO_TEXT[end:]
    fields = {p.field: p for p in invalid(text).problems}
    assert fields["payment_terms"].reason == "MISSING"
    # both entities name terms that no longer exist
    assert fields["legal_entities.US01.payment_terms"].reason == "UNKNOWN_REFERENCE"


def test_wrong_type_names_key_and_line() -> None:
    text = edit("    tax_id_label: VAT ID\n    payment_terms: NET30\n    period_policy: EXCEPTION",
                "    tax_id_label: VAT ID\n    payment_terms: NET30\n    period_policy: [EXCEPTION]")
    text = edit("    requires_tax_id: true\n    tax_id_label: VAT ID",
                "    requires_tax_id: \"yes\"\n    tax_id_label: VAT ID", text)
    problems = invalid(text).problems
    assert [p.field for p in problems] == ["legal_entities.EU01.requires_tax_id",
                                           "legal_entities.EU01.period_policy"]
    assert problems[0].reason == "WRONG_TYPE"
    assert "expected true or false, got a string 'yes'" in problems[0].message
    yes_line = line_of(text, 'requires_tax_id: "yes"')
    assert f"line {yes_line}" in problems[0].message
    assert problems[1].reason == "UNKNOWN_VALUE"


def test_unknown_billing_method_and_erp_type() -> None:
    text = edit("  RETAINER:           {erp_billing_type: FBI",
                "  BARTER:             {erp_billing_type: FBI")
    text = edit("{erp_billing_type: FBI, schedule_template: monthly_in_advance}",
                "{erp_billing_type: XX, schedule_template: monthly_in_advance}", text)
    problems = invalid(text).problems
    assert problems[0].field == "billing_methods.BARTER"
    assert "unknown billing method 'BARTER'" in problems[0].message
    assert "FIXED_FEE" in problems[0].message  # says what would be valid
    assert f"line {line_of(text, 'BARTER')}" in problems[0].message
    assert problems[1].field == "billing_methods.SUBSCRIPTION.erp_billing_type"
    assert "unknown ERP billing type 'XX'; expected one of CB, FBI, FBM, TM" in problems[1].message


def test_duplicate_key_names_both_lines() -> None:
    text = edit("  PM:          {erp_item: \"203\", name: Project Management}\n",
                "  PM:          {erp_item: \"203\", name: Project Management}\n"
                "  PM:          {erp_item: \"1502\", name: PM again}\n")
    [problem] = invalid(text).problems
    assert problem.field == "service_items.PM"
    assert problem.reason == "DUPLICATE_KEY"
    first = line_of(text, "PM:          ")
    assert f"line {first + 1}: duplicate key 'PM' (first at line {first})" in problem.message


def test_unknown_key_and_dangling_references() -> None:
    text = edit("CONSULT-JR:  {erp_item:", "CONSULT-JR:  {erp_itme:")
    text = edit("  Build:              {labour_category: Consultant}",
                "  Build:              {labour_category: Wizard}", text)
    problems = {p.field: p for p in invalid(text).problems}
    assert problems["service_items.CONSULT-JR.erp_itme"].reason == "UNKNOWN_KEY"
    assert problems["service_items.CONSULT-JR.erp_item"].reason == "MISSING"
    wizard = problems["tasks.Build.labour_category"]
    assert wizard.reason == "UNKNOWN_REFERENCE"
    assert f"line {line_of(text, 'Wizard')}: 'Wizard' is not in labour_categories" in wizard.message


def test_milestone_rules() -> None:
    text = edit("{name: Go-live, task: Deploy, billing_percent: 40",
                "{name: Go-live, task: Deploy, billing_percent: 30")
    text = edit("{name: Findings presented, task: Discovery,",
                "{name: Findings presented, task: Build,", text)
    problems = {p.field: p for p in invalid(text).problems}
    assert "adds up to 90, not 100" in problems["project_templates.implementation.milestones"].message
    bad_task = problems["project_templates.consulting.milestones[0].task"]
    assert "'Build' is not one of this template's tasks" in bad_task.message
    assert f"line {line_of(text, 'Findings presented')}" in bad_task.message


def test_two_entities_on_one_subsidiary() -> None:
    text = edit('    subsidiary: "2"', '    subsidiary: "1"')
    [problem] = invalid(text).problems
    assert problem.field == "legal_entities.EU01.subsidiary" and "US01" in problem.message


def test_codes_are_checked() -> None:
    text = edit("    currency: EUR", "    currency: euro")
    [problem] = invalid(text).problems
    assert problem.field == "legal_entities.EU01.currency" and "ISO 4217" in problem.message


def test_yaml_syntax_error_has_a_line() -> None:
    text = edit("{labour_category: Consultant}\n  Deploy:", "{labour_category: \n  Deploy:")
    [problem] = invalid(text).problems
    assert problem.reason == "SYNTAX"
    assert "line " in problem.message


@pytest.mark.parametrize("text", ["", "# only a comment\n", "- a list\n", "just text\n"])
def test_document_must_be_a_mapping(text: str) -> None:
    assert invalid(text).problems


def test_country_keys_stay_text_and_ids_may_be_numbers() -> None:
    # YAML 1.1 reads a bare NO as false; a mapping key must stay the country code Norway.
    text = edit("  NL: {legal_entity: EU01", "  NO: {legal_entity: EU01, tax_code: NO-VAT-S, tax_rate: 25}\n"
                                             "  NL: {legal_entity: EU01")
    text = edit('    subsidiary: "1"', "    subsidiary: 1", text)
    mapping = load_mapping_text(text)
    assert mapping.tax_code("NO").code == "NO-VAT-S"
    assert mapping.legal_entity("US01").subsidiary == "1"


def test_load_mapping_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "firm.yaml"
    path.write_text(DEMO_TEXT, encoding="utf-8")
    loaded = load_mapping(path)
    assert isinstance(loaded, MappingSet)
    assert loaded.source == str(path)
    assert loaded.fingerprint() == demo_mapping().fingerprint()
    with pytest.raises(MappingInvalid) as info:
        load_mapping(tmp_path / "missing.yaml")
    assert "missing.yaml" in str(info.value)
