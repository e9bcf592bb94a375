"""``backfill``: day-one matching against the three sandboxes seeded with the 200-account demo firm, on
SQLite and PostgreSQL. Expected counts are computed from ``generate_firm`` directly, not from the flow."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from canonical.errors import UpstreamError
from mutations.backfill import (
    FLOW,
    MATCH_AMBIGUOUS,
    MATCH_MISSING,
    BackfillReport,
    backfill,
    match_accounts,
)
from mutations.identity import account_canonical_id, project_canonical_id
from store.models import CrossReference, IntegrationException, IntegrationRun
from store.repositories import CrossReferenceRepo, ExceptionRepo, RunRepo
from subgraphs.common.config import RetryConfig
from subgraphs.common.sandbox import SandboxAdmin, SandboxOptions
from subgraphs.crm.client import CrmClient
from subgraphs.crm.config import CrmConfig
from subgraphs.crm.sandbox import create_app as crm_app
from subgraphs.demo import Firm, generate_firm
from subgraphs.erp.client import ErpClient
from subgraphs.erp.config import ErpConfig
from subgraphs.erp.sandbox import create_app as erp_app
from subgraphs.psa.client import PsaClient
from subgraphs.psa.config import PsaConfig
from subgraphs.psa.sandbox import create_app as psa_app

SEED = 7
ACCOUNTS = 200
FAST_RETRY = RetryConfig(attempts=2, backoff_initial_s=0.001, backoff_max_s=0.01, budget_s=5)


@dataclass
class Systems:
    crm: CrmClient
    psa: PsaClient
    erp: ErpClient
    apps: dict[str, Starlette]
    cid: str = field(default_factory=lambda: f"test-{uuid.uuid4().hex[:12]}")

    def admin(self, name: str) -> SandboxAdmin:
        transport = httpx.ASGITransport(app=self.apps[name])
        return SandboxAdmin(httpx.AsyncClient(transport=transport, base_url=f"http://{name}.sandbox"))

    async def counters(self) -> dict[str, dict[str, object]]:
        found = {}
        for name in self.apps:
            admin = self.admin(name)
            found[name] = await admin.counters()
            await admin.client.aclose()
        return found


@pytest.fixture(scope="session")
def firm() -> Firm:
    return generate_firm(SEED, ACCOUNTS)


#: CRM edits that make the 200-account firm exercise the account-number rule. As generated, the accounts
#: whose ERP customer is duplicated already lack ``ERP_Customer_Id__c`` (so the tax id finds two customers:
#: ambiguous), but every account without a tax id knows its ERP id (so no account-number match).
CLEAR_ERP_FIELD = "ERP_Customer_Id__c"
CLEAR_TAX_ID = "Tax_Id__c"


def day_one_edits(firm: Firm) -> dict[int, tuple[str, ...]]:
    """``{account index: CRM fields to clear}``: two plain ERP-known accounts lose both ERP id and tax id
    (→ matched by account number)."""
    duplicated = {index for _erp_id, index in firm.duplicate_erp_customers}
    plain = [a.index for a in firm.accounts if a.erp_customer_id is not None and a.index not in duplicated]
    return dict.fromkeys(plain[:2], (CLEAR_ERP_FIELD, CLEAR_TAX_ID))


@pytest.fixture(scope="session")
def day_one(firm: Firm) -> Firm:
    """The firm as the CRM holds it after ``day_one_edits`` (what the ``systems`` fixture serves)."""
    accounts = list(firm.accounts)
    for index, cleared in day_one_edits(firm).items():
        a = accounts[index]
        accounts[index] = replace(
            a,
            crm_erp_id_field=None if CLEAR_ERP_FIELD in cleared else a.crm_erp_id_field,
            tax_id=None if CLEAR_TAX_ID in cleared else a.tax_id,
        )
    return replace(firm, accounts=accounts)


@pytest.fixture
async def systems(firm: Firm) -> AsyncIterator[Systems]:
    options = SandboxOptions(seed=SEED, accounts=ACCOUNTS)
    apps = {"crm": crm_app(options), "psa": psa_app(options), "erp": erp_app(options)}
    crm = CrmClient.from_config(CrmConfig(retry=FAST_RETRY), httpx.ASGITransport(app=apps["crm"]))
    psa = PsaClient.from_config(PsaConfig(retry=FAST_RETRY), httpx.ASGITransport(app=apps["psa"]))
    erp = ErpClient.from_config(ErpConfig(retry=FAST_RETRY), httpx.ASGITransport(app=apps["erp"]))
    for index, cleared in day_one_edits(firm).items():
        await crm.update("Account", firm.accounts[index].crm_id, dict.fromkeys(cleared))
    for app in apps.values():  # the edits are set-up, not part of what a test counts
        admin = SandboxAdmin(httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s"))
        await admin.reset_counters()
        await admin.client.aclose()
    yield Systems(crm, psa, erp, apps)
    for client in (crm, psa, erp):
        await client.aclose()


Sessions = async_sessionmaker[AsyncSession]


def expected_outcomes(firm: Firm) -> dict[str, str]:
    """``{crm account id: rule | MATCH_MISSING | MATCH_AMBIGUOUS}`` as the demo firm implies it."""
    duplicated = {index for _erp_id, index in firm.duplicate_erp_customers}
    outcome: dict[str, str] = {}
    for a in firm.accounts:
        if a.erp_customer_id is None:
            outcome[a.crm_id] = MATCH_MISSING
        elif a.crm_erp_id_field is not None:
            outcome[a.crm_id] = "erp_id_field"
        elif a.index in duplicated:  # two ERP customers share its tax id and account number
            outcome[a.crm_id] = MATCH_AMBIGUOUS
        elif a.tax_id is not None:
            outcome[a.crm_id] = "tax_id"
        else:
            outcome[a.crm_id] = "account_number"
    return outcome


async def run(systems: Systems, sessionmaker: Sessions) -> BackfillReport:
    return await backfill(
        crm=systems.crm,
        psa=systems.psa,
        erp=systems.erp,
        sessionmaker=sessionmaker,
        correlation_id=systems.cid,
    )


async def runs_of(session: AsyncSession, systems: Systems) -> list[IntegrationRun]:
    """This test's runs only: the PostgreSQL test database is shared with whatever else commits to it."""
    query = sa.select(IntegrationRun).where(IntegrationRun.correlation_id == systems.cid)
    return list((await session.execute(query.order_by(IntegrationRun.started_at))).scalars())


async def xrefs(sessionmaker: Sessions) -> set[tuple[str, str, str, str]]:
    async with sessionmaker() as session:
        rows = await session.execute(
            sa.select(
                CrossReference.canonical_id,
                CrossReference.entity_type,
                CrossReference.system,
                CrossReference.system_id,
            )
        )
        return {tuple(r) for r in rows}  # type: ignore[misc]


def payload(e: IntegrationException) -> dict[str, Any]:
    assert isinstance(e.payload, dict)
    return e.payload


def result(step: Any) -> dict[str, Any]:
    value = step.result if step.status == "SUCCEEDED" else step.error
    assert isinstance(value, dict)
    return value


async def exceptions(sessionmaker: Sessions) -> list[IntegrationException]:
    async with sessionmaker() as session:
        return list(await ExceptionRepo(session).list(flow=FLOW, limit=10_000))


async def test_every_account_with_an_erp_customer_is_linked_by_the_rule_the_firm_implies(
    systems: Systems, sessionmaker: Sessions, day_one: Firm
) -> None:
    firm = day_one
    outcome = expected_outcomes(firm)
    implied = Counter(outcome.values())

    report = await run(systems, sessionmaker)

    assert report.accounts == len(firm.accounts)
    assert report.matched == {
        "external_id": 0,
        "erp_id_field": implied["erp_id_field"],
        "tax_id": implied["tax_id"],
        "account_number": implied["account_number"],
    }
    assert implied["tax_id"] > 0 and implied["account_number"] > 0 and implied[MATCH_AMBIGUOUS] > 0
    assert report.missing == implied[MATCH_MISSING] > 0
    assert report.ambiguous == implied[MATCH_AMBIGUOUS]
    linked = await xrefs(sessionmaker)
    for a in firm.accounts:
        cid = account_canonical_id(a.crm_id)
        assert (cid, "Account", "crm", a.crm_id) in linked
        assert (cid, "Account", "psa", str(a.psa_client_id)) in linked
        erp_link = (cid, "Account", "erp", str(a.erp_customer_id))
        assert (erp_link in linked) == (outcome[a.crm_id] not in (MATCH_MISSING, MATCH_AMBIGUOUS))
    assert report.psa_clients_linked == len(firm.accounts)
    for p in firm.projects:
        pid = project_canonical_id(p.erp_job_id)
        assert (pid, "Project", "erp", str(p.erp_job_id)) in linked
        assert (pid, "Project", "psa", str(p.psa_project_id)) in linked
    assert report.projects_linked == len(firm.projects)
    assert report.projects_erp_only == report.project_exceptions == report.client_exceptions == 0
    assert report.xrefs_created == len(linked)
    # the duplicates, and the originals of the ambiguous ones, belong to no account
    assert report.erp_customers_unmatched == len(firm.duplicate_erp_customers) + implied[MATCH_AMBIGUOUS]


async def test_missing_and_ambiguous_accounts_become_exceptions_with_what_was_tried(
    systems: Systems, sessionmaker: Sessions, day_one: Firm
) -> None:
    firm = day_one
    outcome = expected_outcomes(firm)
    await run(systems, sessionmaker)

    raised = {e.subject: e for e in await exceptions(sessionmaker)}
    by_reason = Counter(e.reason_code for e in raised.values())
    assert by_reason == {
        MATCH_MISSING: Counter(outcome.values())[MATCH_MISSING],
        MATCH_AMBIGUOUS: Counter(outcome.values())[MATCH_AMBIGUOUS],
    }
    duplicate_of = {index: erp_id for erp_id, index in firm.duplicate_erp_customers}
    for a in firm.accounts:
        e = raised.get(account_canonical_id(a.crm_id))
        if outcome[a.crm_id] == MATCH_MISSING:
            assert e is not None and e.reason_code == MATCH_MISSING and e.status == "OPEN"
            assert e.correlation_id is not None and e.step == "match_account"
            assert payload(e)["crm_id"] == a.crm_id
            assert payload(e)["tried"][0]["rule"] == "external_id"
            assert all(t["candidates"] == [] for t in payload(e)["tried"])
        elif outcome[a.crm_id] == MATCH_AMBIGUOUS:
            assert e is not None and e.reason_code == MATCH_AMBIGUOUS
            assert payload(e)["candidates"] == sorted([str(a.erp_customer_id), str(duplicate_of[a.index])])
        else:
            assert e is None


async def test_a_second_run_adds_nothing_and_duplicates_no_exception(
    systems: Systems, sessionmaker: Sessions
) -> None:
    first = await run(systems, sessionmaker)
    linked, raised = await xrefs(sessionmaker), await exceptions(sessionmaker)

    second = await run(systems, sessionmaker)

    assert second.xrefs_created == 0 and second.exceptions_opened == 0
    assert second.exceptions_still_open == first.exceptions_opened == len(raised)
    assert second.matched == first.matched
    assert await xrefs(sessionmaker) == linked
    again = await exceptions(sessionmaker)
    assert [(e.id, e.occurrences) for e in again] == [(e.id, e.occurrences) for e in raised]
    async with sessionmaker() as session:
        assert [r.status for r in await runs_of(session, systems)] == ["SUCCEEDED", "SUCCEEDED"]
        steps = await RunRepo(session).steps(second.run_id)
        assert [s.name for s in steps] == ["read", "report"]
        assert result(steps[1])["xrefs_created"] == 0


async def test_a_link_made_by_a_person_settles_an_ambiguous_account_and_resolves_its_exception(
    systems: Systems, sessionmaker: Sessions
) -> None:
    await run(systems, sessionmaker)
    ambiguous = [e for e in await exceptions(sessionmaker) if e.reason_code == MATCH_AMBIGUOUS]
    chosen = ambiguous[0]
    async with sessionmaker.begin() as session:
        await CrossReferenceRepo(session).link(
            chosen.subject or "", "Account", "erp", payload(chosen)["candidates"][0]
        )

    report = await run(systems, sessionmaker)

    assert report.kept_existing == 1
    assert report.exceptions_resolved == 1
    async with sessionmaker() as session:
        assert (await ExceptionRepo(session).get(chosen.id)).status == "RESOLVED"


async def test_upstream_reads_are_a_handful_of_paged_requests(
    systems: Systems, sessionmaker: Sessions
) -> None:
    await run(systems, sessionmaker)

    counters = await systems.counters()
    total = sum(int(c["total"]) for c in counters.values())  # type: ignore[call-overload]
    assert total <= 12, counters
    for name, c in counters.items():
        per_record = [k for k in c["by_endpoint"] if "{id}" in k]  # type: ignore[attr-defined]
        assert per_record == [], (name, per_record)


async def test_erp_down_raises_a_typed_error_and_links_nothing(
    systems: Systems, sessionmaker: Sessions
) -> None:
    admin = systems.admin("erp")
    await admin.set_faults(error_rates={"503": 1.0})
    try:
        with pytest.raises(UpstreamError) as caught:
            await run(systems, sessionmaker)
    finally:
        await admin.client.aclose()

    assert caught.value.system == "erp"
    assert await xrefs(sessionmaker) == set()
    assert await exceptions(sessionmaker) == []
    async with sessionmaker() as session:
        runs = await runs_of(session, systems)
        assert [r.status for r in runs] == ["FAILED"]
        [step] = await RunRepo(session).steps(runs[0].id)
        assert step.status == "FAILED" and result(step)["code"] == caught.value.code

    await systems.admin("erp").clear_faults()
    report = await run(systems, sessionmaker)  # resumes from a clean state
    assert report.xrefs_created > 0


# -- matching rules, without I/O ----------------------------------------------------------------------------


def account(n: int, **fields: Any) -> dict[str, Any]:
    return {
        "Id": f"001{n:012d}AAA",
        "Name": f"A{n}",
        "AccountNumber": None,
        "Tax_Id__c": None,
        "ERP_Customer_Id__c": None,
        "P2C_Id__c": None,
        **fields,
    }


def customer(i: int, **fields: Any) -> dict[str, Any]:
    return {"id": i, "externalid": None, "accountnumber": None, "vatregnumber": None, **fields}


def test_the_external_id_decides_before_the_crm_field() -> None:
    a = account(1, ERP_Customer_Id__c="11")
    cid = account_canonical_id(a["Id"])
    matches = match_accounts([a], [customer(10, externalid=cid), customer(11)])
    assert (matches[cid].target, matches[cid].rule) == ("10", "external_id")


def test_a_stale_crm_field_falls_through_to_the_tax_id() -> None:
    a = account(1, ERP_Customer_Id__c="999", Tax_Id__c="de 123.456")
    m = match_accounts([a], [customer(10, vatregnumber="DE123456")])[account_canonical_id(a["Id"])]
    assert (m.target, m.rule) == ("10", "tax_id")
    assert [t["rule"] for t in m.tried] == ["external_id", "erp_id_field", "tax_id"]


def test_one_customer_claimed_by_two_accounts_goes_to_neither() -> None:
    a, b = account(1, Tax_Id__c="X1"), account(2, AccountNumber="N1")
    matches = match_accounts([a, b], [customer(10, vatregnumber="X1", accountnumber="N1")])
    assert {m.problem for m in matches.values()} == {MATCH_AMBIGUOUS}
    assert all(m.target is None and m.candidates == ["10"] for m in matches.values())


def test_weak_rules_skip_customers_a_strong_rule_claimed_or_that_carry_an_external_id() -> None:
    a, b = account(1, ERP_Customer_Id__c="10"), account(2, Tax_Id__c="X1")
    customers = [customer(10, vatregnumber="X1"), customer(11, vatregnumber="X1", externalid="someone")]
    matches = match_accounts([a, b], customers)
    assert matches[account_canonical_id(a["Id"])].target == "10"
    assert matches[account_canonical_id(b["Id"])].problem == MATCH_MISSING
