"""Idempotency keys (replay, reuse, conflict, required, validation stores nothing), audit, and 20 concurrent
provisioning calls with one key on a store with real commits."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from canonical.errors import Conflict, IdempotencyKeyRequired, IdempotencyKeyReused, ValidationFailed
from canonical.principal import Principal
from mutations.deps import FlowDeps
from mutations.governance import jsonable, run_idempotent
from mutations.provision import EngagementInput, ProvisionResult, provision_engagement
from store.db import make_engine
from store.repositories import AuditRepo, IdempotencyRepo, fingerprint
from tests.mutations.conftest import ADMIN, Flow, build_apps, close_flow, make_flow
from tests.mutations.test_provision_recovery import exactly_one_of_everything
from tests.mutations.test_provision_scenarios import NEW_CUSTOMER_FIXED_FEE, NO_STREET, TM, win

OPERATION = "provisionEngagement"


def call(flow: Flow, key: str | None, opportunity: str = TM, principal: Principal = ADMIN):  # type: ignore[no-untyped-def]
    input = {"opportunity": opportunity}
    return run_idempotent(
        flow.deps,
        principal,
        OPERATION,
        key,
        input,
        lambda: provision_engagement(flow.deps, opportunity, EngagementInput(), principal=principal),
        load=ProvisionResult.from_json,
        dump=ProvisionResult.to_json,
        correlation_id="c-idem",
    )


async def test_same_key_same_input_replays_the_stored_result_without_new_work(flow: Flow) -> None:
    await win(flow, TM)
    first = await call(flow, "k-1")
    await flow.reset_counters()
    second = await call(flow, "k-1")
    assert second == first
    assert (await flow.counters("erp"))["total"] == 0 and (await flow.counters("crm"))["total"] == 0
    async with flow.deps.sessionmaker() as session:
        statuses = [a.status for a in await AuditRepo(session).query(operation=OPERATION)]
    assert statuses == ["REPLAYED", "COMPLETED"]


async def test_same_key_other_input_is_refused_and_no_key_is_required(flow: Flow) -> None:
    await win(flow, TM)
    await call(flow, "k-2")
    with pytest.raises(IdempotencyKeyReused) as reused:
        await call(flow, "k-2", opportunity=NEW_CUSTOMER_FIXED_FEE)
    assert reused.value.code == "IDEMPOTENCY_KEY_REUSED" and reused.value.http_status == 422
    with pytest.raises(IdempotencyKeyRequired):
        await call(flow, None)
    other = Principal("bob", roles=frozenset({"integration_admin"}), all_entities=True)
    assert (
        await call(flow, "k-2", principal=other)
    ).status == "ALREADY_PROVISIONED"  # keys are per principal


async def test_a_key_still_in_progress_is_a_conflict(flow: Flow) -> None:
    async with flow.deps.sessionmaker.begin() as session:
        digest = fingerprint(jsonable({"opportunity": TM}))
        await IdempotencyRepo(session).begin("k-3", ADMIN.subject, OPERATION, digest)
    with pytest.raises(Conflict):
        await call(flow, "k-3")


async def test_validation_failure_stores_nothing_so_the_key_can_be_retried(flow: Flow) -> None:
    await win(flow, NO_STREET)
    with pytest.raises(ValidationFailed):
        await call(flow, "k-4", opportunity=NO_STREET)
    async with flow.deps.sessionmaker() as session:
        assert await IdempotencyRepo(session).get("k-4", ADMIN.subject, OPERATION) is None
    account = flow.firm.accounts[13]
    await flow.deps.crm.update("Account", account.crm_id, {"BillingStreet": "1 Unter den Linden"})
    assert (await call(flow, "k-4", opportunity=NO_STREET)).status == "PROVISIONED"


async def test_keys_expire_after_the_retention(flow: Flow) -> None:
    await win(flow, TM)
    await call(flow, "k-5")
    later = FlowDeps(**{**flow.deps.__dict__, "clock": lambda: flow.deps.clock() + timedelta(hours=25)})
    result = await run_idempotent(
        later,
        ADMIN,
        OPERATION,
        "k-5",
        {"opportunity": TM},
        lambda: provision_engagement(later, TM, principal=ADMIN),
        load=ProvisionResult.from_json,
    )
    assert result.status == "ALREADY_PROVISIONED"  # the key was new again; the run store still dedupes


async def test_twenty_concurrent_calls_with_one_key_provision_once(
    flow_firm: object, scratch_database_url: str
) -> None:
    engine = make_engine(scratch_database_url)
    flow = await make_flow(build_apps(), flow_firm, async_sessionmaker(engine, expire_on_commit=False))  # type: ignore[arg-type]
    try:
        await win(flow, NEW_CUSTOMER_FIXED_FEE)
        outcomes = await asyncio.gather(
            *(call(flow, "k-20", opportunity=NEW_CUSTOMER_FIXED_FEE) for _ in range(20)),
            return_exceptions=True,
        )
        for o in outcomes:
            if isinstance(o, Exception) and not isinstance(o, Conflict):
                raise o
        kinds = Counter(type(o).__name__ if isinstance(o, Exception) else o.status for o in outcomes)
        assert set(kinds) <= {"PROVISIONED", "Conflict"} and kinds["PROVISIONED"] >= 1, kinds
        results = [o for o in outcomes if isinstance(o, ProvisionResult)]
        assert len({r.erp_job_id for r in results}) == 1
        await exactly_one_of_everything(flow, results[0])
        after = await call(flow, "k-20", opportunity=NEW_CUSTOMER_FIXED_FEE)
        assert after == results[0]
    finally:
        await close_flow(flow)
        await engine.dispose()
