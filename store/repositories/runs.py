"""Integration runs and their steps: what a flow did, so a replay resumes at the failed step.

    runs = RunRepo(session)
    run = await runs.start("provision_engagement", subject=opportunity_id, input={...})
    step = await runs.step(run.id, "upsert_customer", step_key("erp", "customer", account_id))
    if step.status != "SUCCEEDED":
        await runs.begin_step(step.key)
        ...   # the outbound write, carrying our canonical id as external id
        await runs.step_succeeded(step.key, {"erp_id": "1234"})

Step keys are unique across runs: a write another run already did is found SUCCEEDED and skipped.

Two attempts at the same step at once (two deliveries of one event without an idempotency key, a replay
racing a worker) are kept apart by ``claim_step``, a compare-and-set: it marks the step RUNNING only when
it has not SUCCEEDED and is not RUNNING under a live claim. ``started_at`` is the claim's timestamp; a
claim older than ``stale_after`` is presumed dead (its process was killed) and may be taken over::

    if await runs.claim_step(key, run.id, "psa_project"):
        ...   # ours alone until it succeeds, fails, or goes stale
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from canonical.errors import NotFound
from store.models import IntegrationRun, IntegrationStep
from store.repositories._base import Repository

FINISHED = ("SUCCEEDED", "FAILED")
#: How long a RUNNING step's claim stays live. Longer than any step takes (its upstream calls with their
#: retries), so only a claimer that died is overtaken.
CLAIM_TIMEOUT = timedelta(seconds=60)


class RunRepo(Repository):
    async def start(
        self,
        flow: str,
        *,
        subject: str | None = None,
        input: Any = None,
        legal_entity: str | None = None,
        correlation_id: str | None = None,
    ) -> IntegrationRun:
        run = IntegrationRun(
            flow=flow,
            subject=subject,
            status="RUNNING",
            legal_entity=legal_entity,
            correlation_id=correlation_id,
            attempts=1,
            input=input,
            started_at=self.clock(),
        )
        self.session.add(run)
        await self.session.flush()
        return run

    async def get(self, run_id: str) -> IntegrationRun:
        run = await self.session.get(IntegrationRun, run_id, populate_existing=True)
        if run is None:
            raise NotFound("integration run", run_id)
        return run

    async def latest(self, flow: str, subject: str) -> IntegrationRun | None:
        query = (
            sa.select(IntegrationRun)
            .where(IntegrationRun.flow == flow, IntegrationRun.subject == subject)
            .order_by(IntegrationRun.started_at.desc())
            .limit(1)
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def resume(self, run_id: str, *, correlation_id: str | None = None) -> IntegrationRun:
        """Run ``run_id`` again (a replay): RUNNING, one more attempt, unfinished."""
        run = await self.get(run_id)
        run.status = "RUNNING"
        run.attempts += 1
        run.finished_at = None
        if correlation_id is not None:
            run.correlation_id = correlation_id
        await self.session.flush()
        return run

    async def finish(self, run_id: str, status: str) -> IntegrationRun:
        if status not in FINISHED:
            raise ValueError(f"a run finishes SUCCEEDED or FAILED, not {status!r}")
        run = await self.get(run_id)
        run.status = status
        run.finished_at = self.clock()
        await self.session.flush()
        return run

    async def step(self, run_id: str, name: str, key: str) -> IntegrationStep:
        """The step with ``key``, created PENDING under ``run_id`` when it does not exist yet."""
        insert = (
            self.upsert_insert(IntegrationStep)
            .values(run_id=run_id, name=name, key=key, status="PENDING", attempts=0)
            .on_conflict_do_nothing(index_elements=["key"])
        )
        await self.session.execute(insert)
        return await self.get_step(key)

    async def get_step(self, key: str) -> IntegrationStep:
        query = (
            sa.select(IntegrationStep)
            .where(IntegrationStep.key == key)
            .execution_options(populate_existing=True)
        )
        step = (await self.session.execute(query)).scalar_one_or_none()
        if step is None:
            raise NotFound("integration step", key)
        return step

    async def begin_step(self, key: str) -> IntegrationStep:
        step = await self.get_step(key)
        step.status = "RUNNING"
        step.attempts += 1
        step.started_at = self.clock()
        step.finished_at = None
        await self.session.flush()
        return step

    async def claim_step(
        self,
        key: str,
        run_id: str,
        name: str,
        *,
        stale_after: timedelta = CLAIM_TIMEOUT,
        correlation_id: str | None = None,
    ) -> bool:
        """Atomically claim step ``key`` for an attempt (creating it under ``run_id`` if new) → True when
        claimed: now RUNNING, one more attempt, ``started_at`` = now. False when it already SUCCEEDED or
        another attempt holds a claim younger than ``stale_after``. A claim stamps ``correlation_id`` (the
        attempt's) on the step. One UPDATE whose WHERE is the
        condition: PostgreSQL re-checks it on the row a concurrent claimer just committed; SQLite runs
        units of work one at a time (``BEGIN IMMEDIATE``)."""
        await self.step(run_id, name, key)
        now = self.clock()
        # SUCCEEDED is final, however old its ``started_at``: only a RUNNING claim goes stale.
        claimable = sa.and_(
            IntegrationStep.status != "SUCCEEDED",
            sa.or_(
                IntegrationStep.status != "RUNNING",
                IntegrationStep.started_at.is_(None),
                IntegrationStep.started_at <= now - stale_after,  # the claimer is presumed dead
            ),
        )
        claim = (
            sa.update(IntegrationStep)
            .where(IntegrationStep.key == key, claimable)
            .values(
                status="RUNNING",
                attempts=IntegrationStep.attempts + 1,
                started_at=now,
                finished_at=None,
                correlation_id=correlation_id,
            )
            .execution_options(synchronize_session=False)
        )
        claimed: bool = (await self.session.execute(claim)).rowcount == 1  # type: ignore[attr-defined]
        await self.get_step(key)  # refresh the identity map with what the UPDATE wrote
        return claimed

    async def release_step(self, key: str) -> None:
        """Give a claim up without an outcome (the attempt was cancelled): PENDING, claimable at once."""
        step = await self.get_step(key)
        if step.status == "RUNNING":
            step.status = "PENDING"
            step.started_at = None
            await self.session.flush()

    async def step_succeeded(self, key: str, result: Mapping[str, Any] | None = None) -> IntegrationStep:
        step = await self.get_step(key)
        step.status = "SUCCEEDED"
        step.result = dict(result) if result is not None else None
        step.error = None
        step.finished_at = self.clock()
        await self.session.flush()
        return step

    async def step_failed(self, key: str, error: Mapping[str, Any]) -> IntegrationStep:
        step = await self.get_step(key)
        step.status = "FAILED"
        step.error = dict(error)
        step.finished_at = self.clock()
        await self.session.flush()
        return step

    async def steps(self, run_id: str) -> Sequence[IntegrationStep]:
        """The steps of a run in the order they were first recorded."""
        query = (
            sa.select(IntegrationStep).where(IntegrationStep.run_id == run_id).order_by(IntegrationStep.id)
        )
        return (await self.session.execute(query)).scalars().all()

    async def first_unfinished_step(self, run_id: str) -> IntegrationStep | None:
        """Where a replay resumes: the earliest step of the run that has not SUCCEEDED."""
        query = (
            sa.select(IntegrationStep)
            .where(IntegrationStep.run_id == run_id, IntegrationStep.status != "SUCCEEDED")
            .order_by(IntegrationStep.id)
            .limit(1)
        )
        return (await self.session.execute(query)).scalar_one_or_none()
