"""The exception queue's replay and dismissal: who may, who the flow runs as, what is audited, and that every
flow's handler is found without its module having been imported first. SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

import mutations
import mutations.replay as replay
from canonical.errors import Conflict, NotFound, PermissionDenied
from canonical.principal import Permission, Principal, Role
from mutations.identity import provisioned_project_canonical_id
from mutations.provision import ProvisionResult
from mutations.replay import (
    HANDLER_MODULES,
    REPLAY_HANDLERS,
    acting_principal,
    dismiss_exception,
    replay_exception,
)
from store.models import AuditEntry
from store.repositories import AuditRepo, ExceptionRepo
from tests.mutations.conftest import Flow
from tests.mutations.posting_support import Posting, mapping_with, with_mapping
from tests.mutations.test_provision_scenarios import TM, provision, win

FINANCE_US = Principal(
    "fiona@firm.example", roles=frozenset({Role.FINANCE}), legal_entities=frozenset({"US01"})
)
FINANCE_EU = Principal(
    "eric@firm.example", roles=frozenset({Role.FINANCE}), legal_entities=frozenset({"EU01"})
)
SALES = Principal("sam@firm.example", roles=frozenset({Role.SALES}), all_entities=True)
AUDITOR = Principal("ada@firm.example", roles=frozenset({Role.AUDITOR}), all_entities=True)
ROOT = Path(__file__).resolve().parents[2]


async def failed_provisioning(flow: Flow) -> str:
    """The TM deal (US01) fails at the ERP job; the fault is lifted again → the open exception's id."""
    await win(flow, TM)
    await flow.faults("erp", fail_records={provisioned_project_canonical_id(TM): 400})
    failed = await provision(flow, TM)
    assert failed.status == "EXCEPTION" and failed.exception_id is not None
    await flow.faults("erp")
    return failed.exception_id


async def entries(flow: Flow, operation: str) -> list[AuditEntry]:
    async with flow.deps.sessionmaker() as session:
        return list(reversed(await AuditRepo(session).query(operation=operation)))  # oldest first


async def status_of(flow: Flow, exception_id: str) -> str:
    async with flow.deps.sessionmaker() as session:
        return (await ExceptionRepo(session).get(exception_id)).status


# --- who the replayed flow runs as ------------------------------------------------------------------------


def test_the_replayed_flow_runs_as_the_system_in_the_exceptions_legal_entity_only() -> None:
    actor = acting_principal(FINANCE_US, "US01")
    assert actor.subject == "system:replay"
    assert actor.roles == frozenset({Role.INTEGRATION_ADMIN})
    assert (actor.all_entities, actor.legal_entities) == (False, frozenset({"US01"}))
    assert actor.can_see_entity("US01") and not actor.can_see_entity("EU01")
    unscoped = acting_principal(Principal.system("cli"), None)  # no entity on the exception: the caller's
    assert unscoped.all_entities and unscoped.subject == "system:replay"
    assert acting_principal(FINANCE_US, None).legal_entities == frozenset({"US01"})


async def test_finance_replays_a_provisioning_exception_and_the_audit_names_finance(flow: Flow) -> None:
    exception_id = await failed_provisioning(flow)
    assert not FINANCE_US.may(Permission.PROVISION)  # finance could not provision by itself

    replayed = await replay_exception(flow.deps, exception_id, principal=FINANCE_US, correlation_id="c-fin")

    assert replayed.exception.status == "RESOLVED"
    assert isinstance(replayed.result, ProvisionResult) and replayed.result.status == "PROVISIONED"
    jobs = await flow.deps.erp.suiteql(
        f"SELECT id FROM job WHERE externalid = '{provisioned_project_canonical_id(TM)}'"
    )
    assert len(jobs) == 1
    [entry] = await entries(flow, "replayException")
    assert (entry.principal, entry.roles, entry.status) == ("fiona@firm.example", ["finance"], "RESOLVED")
    assert entry.input == {"exceptionId": exception_id} and entry.correlation_id == "c-fin"
    assert entry.result is not None and entry.result["actedAs"] == "system:replay"
    flow_entries = [e for e in await entries(flow, "provision_engagement") if e.correlation_id == "c-fin"]
    assert [(e.principal, e.status) for e in flow_entries] == [("system:replay", "PROVISIONED")]


async def test_a_replay_without_a_correlation_id_still_joins_its_audit_entries(flow: Flow) -> None:
    exception_id = await failed_provisioning(flow)

    await replay_exception(flow.deps, exception_id, principal=FINANCE_US)

    [entry] = await entries(flow, "replayException")
    assert entry.correlation_id is not None and entry.correlation_id.startswith("replay-")
    joined = [e.principal for e in await entries(flow, "provision_engagement")]
    assert joined[-1] == "system:replay"
    async with flow.deps.sessionmaker() as session:
        by_id = await AuditRepo(session).query(correlation_id=entry.correlation_id)
    assert {e.operation for e in by_id} == {"replayException", "provision_engagement"}


async def test_finance_of_another_entity_gets_not_found_audited_and_the_exception_stays_open(
    flow: Flow,
) -> None:
    exception_id = await failed_provisioning(flow)
    await flow.reset_counters()

    with pytest.raises(NotFound):
        await replay_exception(flow.deps, exception_id, principal=FINANCE_EU)
    with pytest.raises(NotFound):
        await dismiss_exception(flow.deps, exception_id, "not ours", principal=FINANCE_EU)

    assert await status_of(flow, exception_id) == "OPEN"
    assert await flow.writes() == {}
    [replayed] = await entries(flow, "replayException")
    [dismissed] = await entries(flow, "dismissException")
    for entry in (replayed, dismissed):
        assert (entry.principal, entry.status) == ("eric@firm.example", "NOT_FOUND")


async def test_permission_denials_are_audited_and_change_nothing(flow: Flow) -> None:
    exception_id = await failed_provisioning(flow)
    await flow.reset_counters()

    with pytest.raises(PermissionDenied):
        await replay_exception(flow.deps, exception_id, principal=SALES, correlation_id="c-sales")
    with pytest.raises(PermissionDenied):
        await dismiss_exception(flow.deps, exception_id, "looks fine", principal=AUDITOR)

    assert await status_of(flow, exception_id) == "OPEN"
    assert await flow.writes() == {}
    [replayed] = await entries(flow, "replayException")
    assert (replayed.principal, replayed.status, replayed.correlation_id) == (
        "sam@firm.example",
        "FORBIDDEN",
        "c-sales",
    )
    assert replayed.input == {"exceptionId": exception_id}
    assert replayed.result is not None
    assert set(replayed.result["requiredRoles"]) == {"finance", "integration_admin"}
    [dismissed] = await entries(flow, "dismissException")
    assert (dismissed.principal, dismissed.status) == ("ada@firm.example", "FORBIDDEN")
    assert dismissed.input == {"exceptionId": exception_id, "reason": "looks fine"}


async def test_finance_may_dismiss_in_its_own_entity(flow: Flow) -> None:
    exception_id = await failed_provisioning(flow)

    dismissed = await dismiss_exception(flow.deps, exception_id, "  handled by hand ", principal=FINANCE_US)

    assert (dismissed.status, dismissed.resolution_note) == ("DISMISSED", "handled by hand")
    [entry] = await entries(flow, "dismissException")
    assert (entry.principal, entry.status) == ("fiona@firm.example", "DISMISSED")
    with pytest.raises(Conflict):  # dismissed: no replay any more
        await replay_exception(flow.deps, exception_id, principal=FINANCE_US)


async def test_an_exception_of_a_flow_nobody_replays_is_refused_and_left_open(flow: Flow) -> None:
    async with flow.deps.sessionmaker.begin() as session:
        exception = await ExceptionRepo(session).open(
            flow="mystery_flow", reason_code="INTERNAL", subject="x-1", legal_entity="US01"
        )
        exception_id = exception.id

    with pytest.raises(Conflict):
        await replay_exception(flow.deps, exception_id, principal=FINANCE_US)

    assert await status_of(flow, exception_id) == "OPEN"  # not stuck in REPLAYING
    [entry] = await entries(flow, "replayException")
    assert entry.status == "CONFLICT"


async def test_an_exception_without_a_legal_entity_is_for_callers_with_every_entity(flow: Flow) -> None:
    async with flow.deps.sessionmaker.begin() as session:
        exception = await ExceptionRepo(session).open(
            flow="mystery_flow", reason_code="INTERNAL", subject="x-2"
        )
        exception_id = exception.id

    with pytest.raises(NotFound):
        await dismiss_exception(flow.deps, exception_id, "not mine", principal=FINANCE_US)
    anywhere = dataclasses.replace(FINANCE_US, legal_entities=frozenset(), all_entities=True)
    dismissed = await dismiss_exception(flow.deps, exception_id, "stray", principal=anywhere)
    assert dismissed.status == "DISMISSED"


# --- every flow's handler is found, whatever the process imported -------------------------------------


def test_handler_modules_cover_every_registered_flow_in_a_fresh_interpreter() -> None:
    """Only ``mutations.replay`` imported: each flow of ``HANDLER_MODULES`` resolves (by importing its
    module), and those modules register nothing that is missing from ``HANDLER_MODULES``."""
    script = (
        "import sys\n"
        "import mutations.replay as r\n"
        "assert 'mutations.time_posting' not in sys.modules and 'mutations.provision' not in sys.modules\n"
        "assert r.REPLAY_HANDLERS == {}\n"
        "for flow in sorted(r.HANDLER_MODULES):\n"
        "    print(flow, r._handler(flow).__module__)\n"
        "assert set(r.REPLAY_HANDLERS) == set(r.HANDLER_MODULES), sorted(r.REPLAY_HANDLERS)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    resolved = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert resolved == {
        "post_expense": "mutations.time_posting",
        "post_time": "mutations.time_posting",
        "provision_engagement": "mutations.provision",
        "release_milestone": "mutations.posting.milestones",
    }
    assert set(HANDLER_MODULES) >= {"post_time", "post_expense", "release_milestone"}


async def test_a_time_posting_exception_is_replayed_where_time_posting_was_never_imported(
    posting: Posting, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = posting.project()  # US01
    start = await posting.psa_now()
    psa = posting.deps.psa
    workshop = await psa.create_task({"name": "Workshop"})
    await psa.create_task_assignment(project.psa_project_id, {"task_id": workshop["id"], "billable": True})
    entry = await posting.entry(project, task=int(workshop["id"]))
    await posting.approve(int(entry["id"]))
    report = await posting.round(start)
    assert report.failed == 1
    async with posting.deps.sessionmaker() as session:
        [exception] = await ExceptionRepo(session).list(flow="post_time", reason_code="MAPPING_MISSING")
    # Posting exceptions opened before enrichment carry no legal entity (see the report): only a caller
    # with every entity sees, and so replays, them.
    assert exception.legal_entity is None

    # A process that has not imported mutations.time_posting: empty registry, module not loaded.
    monkeypatch.setattr(replay, "REPLAY_HANDLERS", {})
    monkeypatch.setattr(mutations, "time_posting", sys.modules["mutations.time_posting"])  # restored after
    monkeypatch.delitem(sys.modules, "mutations.time_posting")
    principal = dataclasses.replace(FINANCE_US, legal_entities=frozenset(), all_entities=True)

    fixed = with_mapping(posting.deps, mapping_with("Workshop"))
    result = await replay_exception(fixed, exception.id, principal=principal)

    assert result.exception.status == "RESOLVED"
    assert "post_time" in replay.REPLAY_HANDLERS  # registered by the import the replay made
    bills = await posting.time_bills(int(entry["id"]))
    assert len(bills) == 1 and bills[0]["approvalstatus"] == "approved"
    assert REPLAY_HANDLERS is not replay.REPLAY_HANDLERS  # the test really ran on an empty registry
