"""Delivery milestones: completed in the PSA → the billing event released in the ERP, once.

    await release_milestone(deps, {"milestone_id": 9001, "project_id": 42}, correlation_id="c-1")

Once, twice guarded: the work item's dedupe key is ``release_milestone:<milestone id>`` (a milestone
marked complete twice queues once), and the release is a run step ``erp:milestoneRelease:<milestone id>``
(a replay or a second item finds it SUCCEEDED and does nothing). The ERP side is idempotent as well: the
event is found on the job's billing schedule by its id (the PSA milestone's id, or its name) and only
flagged ``completed`` when it is not yet; the ERP's billing run invoices a completed event once.

A project booked in Tryton (its PSA project linked under the system ``tryton``) takes the Tryton adapter
(``mutations/tryton_milestones.py``): the same work item, run and step record, the step keyed
``tryton:milestoneRelease:<milestone id>``, the milestone's task marked done so that Tryton's project
invoicing bills it once. A closed project — a NetSuite job with status closed, a Tryton project whose status
is done — refuses with ``PROJECT_CLOSED`` and releases nothing.

``MilestonePoller`` finds completed milestones of the active fixed-fee PSA projects (one list read, one
read per project: run it on a long interval); the ``milestone.completed`` webhook queues them at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from canonical.errors import GatewayError
from canonical.principal import Principal
from mutations.deps import FlowDeps
from mutations.governance import FlowRunner
from mutations.identity import PROJECT
from mutations.intake import WORKER
from mutations.pollers import PollResult
from mutations.posting.intake import enqueue_milestones
from mutations.posting.model import PROJECT_CLOSED, RELEASE_MILESTONE, UNKNOWN_PROJECT
from mutations.posting.validate import ERP_CLOSED_JOB
from store.repositories import CrossReferenceRepo

MILESTONE_UNKNOWN = "MILESTONE_UNKNOWN"


class ReleaseRefused(GatewayError):
    http_status = 422

    def __init__(self, code: str, message: str, fix: str, **extensions: Any) -> None:
        self.code = code
        super().__init__(f"{message} — {fix}", fix=fix, **extensions)


async def _links(deps: FlowDeps, psa_project_id: str) -> dict[str, str]:
    """The PSA project's links by system (``erp`` for NetSuite, ``tryton``), empty when it has none."""
    async with deps.sessionmaker() as session:
        xrefs = CrossReferenceRepo(session)
        canonical = await xrefs.canonical_id_for("psa", PROJECT, psa_project_id) if psa_project_id else None
        return {} if canonical is None else await xrefs.links_of(canonical)


async def _release(deps: FlowDeps, payload: Mapping[str, Any], job_id: str | None) -> dict[str, Any]:
    milestone_id = str(payload["milestone_id"])
    project_id = str(payload.get("project_id") or "")
    if job_id is None:
        raise ReleaseRefused(
            UNKNOWN_PROJECT,
            f"PSA project {project_id} of milestone {milestone_id} is not linked to an ERP project",
            "link the PSA project to its ERP job (backfill or provisioning), then replay",
        )
    job = await deps.erp.get("job", job_id)
    if str(job.get("status") or "") in ERP_CLOSED_JOB:
        raise ReleaseRefused(
            PROJECT_CLOSED,
            f"ERP project {job.get('entityId') or job_id} is closed: "
            f"milestone {milestone_id} cannot be released",
            "reopen the project in the ERP if the milestone is still to be billed, then replay; otherwise "
            "resolve this exception",
            jobId=job_id,
        )
    schedules = (await deps.erp.billing_schedules_by_job_ids([job_id])).get(job_id, [])
    records = await deps.erp.records_by_ids("billingSchedule", [str(s["id"]) for s in schedules])
    name = payload.get("name")
    for schedule_id, record in records.items():
        events = [dict(e) for e in record.get("milestones") or []]
        for event in events:
            if str(event.get("id")) != milestone_id and not (name and event.get("name") == name):
                continue
            if event.get("completed"):
                return {"schedule": schedule_id, "event": event.get("id"), "released": False}
            event["completed"] = True
            event["custevent_p2c_released_by"] = f"psa:milestone:{milestone_id}"
            await deps.erp.update("billingSchedule", schedule_id, {"milestones": events})
            return {"schedule": schedule_id, "event": event.get("id"), "released": True}
    raise ReleaseRefused(
        MILESTONE_UNKNOWN,
        f"no billing event for milestone {milestone_id} ({name}) on ERP project {job_id}",
        "add the milestone to the project's billing schedule in the ERP, then replay",
        jobId=job_id,
    )


async def release_milestone(
    deps: FlowDeps, payload: Mapping[str, Any], *, correlation_id: str | None = None
) -> dict[str, Any]:
    milestone_id = str(payload["milestone_id"])
    links = await _links(deps, str(payload.get("project_id") or ""))
    in_tryton = links.get("tryton") if deps.tryton is not None else None
    entities = deps.tryton_entities()
    entity = entities[0] if in_tryton is not None and entities else None  # one Tryton connector, one company
    runner = FlowRunner(
        deps,
        flow=RELEASE_MILESTONE,
        subject=f"psa:milestone:{milestone_id}",
        correlation_id=correlation_id,
        legal_entity=entity,
    )
    runner.payload = dict(payload)
    await runner.attach(input=dict(payload))

    if in_tryton is not None:  # the project books in Tryton (issue 9): that adapter, the same step record
        from mutations import tryton_milestones

        client = deps.tryton_for(entity) or deps.tryton
        if client is None:  # unreachable: in_tryton needs deps.tryton
            raise RuntimeError("no Tryton connector")

        async def in_tryton_action() -> Mapping[str, Any]:
            named = dict(payload)
            if not named.get("name") and named.get("project_id"):  # Tryton finds the task by its name
                psa = await deps.psa.milestones(int(str(named["project_id"])))
                named["name"] = next((m.get("name") for m in psa if str(m["id"]) == milestone_id), None)
            try:
                return await tryton_milestones.release(client, int(str(in_tryton)), named)
            except tryton_milestones.Refused as refused:
                raise ReleaseRefused(
                    refused.code, refused.message, refused.fix, **refused.details
                ) from refused

        result = await runner.step("release", tryton_milestones.step_key(milestone_id), in_tryton_action)
        await runner.finish()
        return result

    async def action() -> Mapping[str, Any]:
        return await _release(deps, payload, links.get("erp"))

    result = await runner.step("release", f"erp:milestoneRelease:{milestone_id}", action)
    await runner.finish()
    return result


async def replay_release(
    deps: FlowDeps, exception: Any, principal: Principal, correlation_id: str | None
) -> tuple[Any, str | None]:
    from mutations.governance import StepFailed
    from store.repositories import ExceptionRepo

    async with deps.sessionmaker() as session:
        payload = (await ExceptionRepo(session).get(exception.id)).payload or {}
    try:
        return await release_milestone(deps, payload, correlation_id=correlation_id), None
    except StepFailed as exc:
        return None, exc.exception_id


class MilestonePoller:
    def __init__(self, deps: FlowDeps, *, name: str = "psa.milestones", interval_s: float = 300.0) -> None:
        self.deps = deps
        self.name = name
        self.interval_s = interval_s

    async def poll(self) -> PollResult:
        now = self.deps.clock()
        projects = [
            p async for page in self.deps.psa.projects(is_active=True) for p in page if p.get("is_fixed_fee")
        ]
        done: list[dict[str, Any]] = []
        for project in projects:
            done += [
                dict(m) for m in await self.deps.psa.milestones(int(project["id"])) if m.get("is_completed")
            ]
        async with self.deps.sessionmaker.begin() as session:
            queued = await enqueue_milestones(
                session, done, clock=self.deps.clock, trigger={"trigger": self.name}
            )
        return PollResult(self.name, now, len(done), queued, None, now.isoformat())


__all__ = ["WORKER", "MilestonePoller", "ReleaseRefused", "release_milestone", "replay_release"]
