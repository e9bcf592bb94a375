from __future__ import annotations

import dataclasses
import json
from datetime import date
from decimal import Decimal
from importlib import resources
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from canonical.entities import Account, Address, Project, TimeEntry
from canonical.enums import ApprovalStatus, BillingMethod, PostingStatus, ProjectStatus
from canonical.mapping import demo_mapping, load_mapping_text
from canonical.money import Money
from subgraphs.demo import generate_firm
from subgraphs.erp.client import ErpClient
from subgraphs.erp.mapping import (
    account_from_customer,
    billing_method_of_job_type,
    customer_body,
    job_billing_type,
    job_body,
    project_from_job,
    time_bill_body,
    time_entry_from_time_bill,
)
from subgraphs.erp.refdata import Reference
from subgraphs.erp.sandbox.seed import JOB_BILLING_TYPE

REFERENCE = Reference(
    subsidiaries={"1": {}, "2": {}},
    currencies={"1": "USD", "2": "EUR"},
    rates=(),
    items={},
    periods=(),
    employees={},
    legal_entities={"1": "US01", "2": "EU01"},
)
names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40)
maybe = st.none() | names
ids = st.uuids().map(str)
days = st.dates(date(2020, 1, 1), date(2030, 12, 31))
currencies = st.sampled_from(["USD", "EUR"])


def as_record(body: Any, internal_id: str) -> dict[str, Any]:
    """What a GET returns after the body was written: JSON round trip plus the internal id."""
    return {**json.loads(json.dumps(body)), "id": internal_id}


accounts = st.builds(
    Account,
    id=ids,
    name=names,
    legal_entity=st.sampled_from(["US01", "EU01"]),
    currency=currencies,
    account_number=maybe,
    industry=maybe,
    tax_id=maybe,
    billing_address=st.none()
    | st.builds(
        Address,
        street=maybe,
        city=maybe,
        state=maybe,
        postal_code=maybe,
        country=st.none() | st.sampled_from(["US", "DE"]),
    ),
)


@given(accounts)
def test_customer_round_trip(account: Account) -> None:
    record = as_record(customer_body(account, REFERENCE), "1042")
    back = account_from_customer(record, REFERENCE)
    expected = dataclasses.replace(
        account, erp_id="1042", account_number=account.account_number or account.id
    )
    assert back == expected


money = st.builds(Money, amount=st.decimals(0, 10**7, places=2, allow_nan=False), currency=currencies)
projects = st.builds(
    Project,
    id=ids,
    name=names,
    account_id=ids,
    code=st.none() | st.from_regex(r"PRJ-[0-9]{5}", fullmatch=True),
    business_line=maybe,
    legal_entity=st.sampled_from(["US01", "EU01"]),
    billing_method=st.none() | st.sampled_from(BillingMethod),
    status=st.sampled_from(ProjectStatus),
    start_date=st.none() | days,
    end_date=st.none() | days,
    budget=st.none() | money,
)


@given(projects)
def test_job_round_trip(project: Project) -> None:
    record = as_record(job_body(project, "1042", REFERENCE), "50001")
    back = project_from_job(record, REFERENCE, account_id=project.account_id)
    assert back == dataclasses.replace(project, erp_id="50001", code=project.code or project.id)


entries = st.builds(
    TimeEntry,
    id=ids,
    project_id=ids,
    task_id=ids,
    user=names,
    spent_date=days,
    hours=st.decimals(Decimal("0.25"), 24, places=2),
    billable=st.booleans(),
    bill_rate=st.none() | st.builds(Money, amount=st.decimals(0, 999, places=2), currency=currencies),
    approval_status=st.just(ApprovalStatus.APPROVED),
    posting_status=st.just(PostingStatus.POSTED),
    version=st.integers(1, 50),
    notes=st.text(max_size=60),
)


@given(entries)
@settings(max_examples=150)
def test_time_bill_round_trip(entry: TimeEntry) -> None:
    body = time_bill_body(entry, employee_id="3001", job_id="50001", item_id="201")
    record = as_record(body, "700123")
    back = time_entry_from_time_bill(
        record, project_id=entry.project_id, task_id=entry.task_id, user=entry.user
    )
    assert back == dataclasses.replace(entry, erp_id="700123")


async def test_round_trip_through_the_sandbox(client: ErpClient) -> None:
    reference = await client.reference_data()
    account = Account(
        id="c0ffee",
        name="Round Trip GmbH",
        legal_entity="EU01",
        currency="EUR",
        account_number="AC-RT",
        tax_id="DE123",
        billing_address=Address("1 Ring", "Berlin", None, "10115", "DE"),
    )
    erp_id = await client.upsert("customer", account.id, dict(customer_body(account, reference)))
    back = account_from_customer(await client.get("customer", erp_id), reference)
    assert back == dataclasses.replace(account, erp_id=erp_id)
    rows = await client.customers_by_ids([erp_id])
    assert account_from_customer(rows[erp_id], reference).name == account.name


# --- jobBillingType comes from the mapping set ------------------------------------------------------------

DEMO_JOB_BILLING_TYPES = {
    BillingMethod.FIXED_FEE: "fixedBidMilestone",  # FBM
    BillingMethod.MILESTONE: "fixedBidMilestone",  # FBM
    BillingMethod.TIME_AND_MATERIALS: "timeAndMaterials",  # TM
    BillingMethod.RETAINER: "fixedBidInterval",  # FBI
    BillingMethod.SUBSCRIPTION: "fixedBidInterval",  # FBI
}


def a_project(method: BillingMethod) -> Project:
    return Project(
        id="p-1",
        account_id="a-1",
        name="Mapped",
        legal_entity="US01",
        billing_method=method,
        status=ProjectStatus.ACTIVE,
    )


def test_job_body_takes_the_billing_type_from_the_demo_mapping_set() -> None:
    for method, expected in DEMO_JOB_BILLING_TYPES.items():
        body = job_body(a_project(method), "1042", REFERENCE)
        assert (body["jobBillingType"], body["custentity_p2c_billing_method"]) == (expected, method.value)
    assert (
        job_body(a_project(BillingMethod.FIXED_FEE), "1042", REFERENCE, demo_mapping())["jobBillingType"]
        == "fixedBidMilestone"
    )


def test_job_body_follows_the_mapping_set_in_force() -> None:
    text = resources.files("canonical").joinpath("demo_mapping.yaml").read_text(encoding="utf-8")
    line = "  FIXED_FEE:          {erp_billing_type: FBM, schedule_template: milestones}"
    assert line in text
    firm = load_mapping_text(text.replace(line, line.replace("FBM", "FBI")), source="firm.yaml")
    body = job_body(a_project(BillingMethod.FIXED_FEE), "1042", REFERENCE, firm)
    assert body["jobBillingType"] == "fixedBidInterval"
    assert job_billing_type(BillingMethod.FIXED_FEE, firm) == "fixedBidInterval"


def test_the_sandbox_seed_bills_jobs_as_the_mapping_says() -> None:
    """The seeded (day-one) jobs and the jobs the gateway writes agree on jobBillingType."""
    assert {m.value: t for m, t in DEMO_JOB_BILLING_TYPES.items()} == JOB_BILLING_TYPE
    # Two methods share each fixed-bid type: reading a job back needs custentity_p2c_billing_method.
    assert billing_method_of_job_type("fixedBidMilestone") is None
    assert billing_method_of_job_type("timeAndMaterials") is BillingMethod.TIME_AND_MATERIALS


async def test_seeded_jobs_carry_the_mapped_billing_type(client: ErpClient) -> None:
    firm = generate_firm(7, 30)  # the firm SandboxOptions(accounts=30) seeds (default seed 7)
    rows = await client.suiteql("SELECT id, jobbillingtype FROM job")
    by_id = {str(r["id"]): r for r in rows}
    seen: set[str] = set()
    for p in firm.projects:
        row = by_id[str(p.erp_job_id)]
        assert row["jobbillingtype"] == DEMO_JOB_BILLING_TYPES[BillingMethod(p.billing_method)]
        seen.add(p.billing_method)
    assert {"FIXED_FEE", "RETAINER"} <= seen
