"""A delivery milestone completed in the PSA → its task done in Tryton: the milestone flow's Tryton adapter.

``mutations.posting.milestones.release_milestone`` hands over a milestone whose PSA project is linked to a
Tryton project (cross-reference system ``tryton``); the work item, the run and its step record are shared
with NetSuite, only the step key says ``tryton:milestoneRelease:<milestone id>``.

Provisioning makes each milestone a task of the project (``mutations/provisioning/tryton.py``): its name is
the milestone's, its effort × list price is the milestone's amount, and the project invoices ``progress``
(milestone deals) or ``effort`` (fixed fee). Releasing the milestone is what a project manager does in
Tryton: the task's progress to 1.0 and its status to the one that means done. ``project.work.invoice`` then
bills it: on progress the not yet invoiced part of the progress (recorded as
``project.work.invoiced_progress``), on effort the task once (it keeps its invoice line) — either way the
milestone's amount, once.

Once, three times guarded: the work item's dedupe key, the step record, and Tryton itself — a task already
at progress 1.0 is left as it is (``released: False``). A project whose status is done (Tryton's closed
project) refuses with ``PROJECT_CLOSED``; no task of that name is ``MILESTONE_UNKNOWN``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mutations.posting.model import PROJECT_CLOSED
from subgraphs.erp_tryton.client import TrytonClient
from subgraphs.erp_tryton.mapping import DONE, fully_progressed, is_closed
from subgraphs.erp_tryton.wire import Record

SYSTEM = "tryton"
WORK_FIELDS = (
    "name",
    "status.progress",
    "status.name",
    "children.name",
    "children.progress",
    "children.type",
)


class Refused(Exception):
    """Why a milestone cannot be released; the caller turns it into its flow's error (a reason code)."""

    def __init__(self, code: str, message: str, fix: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fix = fix
        self.details = details


def step_key(milestone_id: str) -> str:
    return f"{SYSTEM}:milestoneRelease:{milestone_id}"


async def _done_status(client: TrytonClient) -> int | None:
    rows = await client.search_read("project.work.status", [["progress", "=", DONE]], ["types"])
    return next((int(r["id"]) for r in rows if "task" in (r.get("types") or ())), None)


def _task(project: Record, name: str | None) -> Record | None:
    if not name:
        return None
    tasks = [c for c in project.get("children.") or [] if c.get("name") == name]
    return tasks[0] if tasks else None


async def release(client: TrytonClient, project_id: int, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Mark the milestone's task done in Tryton project ``project_id`` → the step's result."""
    milestone_id = str(payload["milestone_id"])
    name = payload.get("name")
    rows = await client.read("project.work", [project_id], WORK_FIELDS)
    if not rows:
        raise Refused(
            "UNKNOWN_PROJECT",
            f"Tryton project {project_id} of milestone {milestone_id} no longer exists",
            "link the PSA project to its Tryton project again (provision the engagement), then replay",
            projectId=project_id,
        )
    (project,) = rows
    if is_closed(project):
        raise Refused(
            PROJECT_CLOSED,
            f"Tryton project {project.get('name')} ({project_id}) is closed: milestone {milestone_id} "
            f"({name}) cannot be released",
            "reopen the project in Tryton (status Open) if the milestone is still to be billed, then replay; "
            "otherwise resolve this exception",
            projectId=project_id,
        )
    task = _task(project, str(name) if name else None)
    if task is None:
        raise Refused(
            "MILESTONE_UNKNOWN",
            f"no task named {name!r} for milestone {milestone_id} on Tryton project {project_id}",
            "add the milestone as a task of the project in Tryton (same name, effort × price = its amount), "
            "then replay",
            projectId=project_id,
        )
    task_id = int(task["id"])
    result = {"erp": SYSTEM, "project": str(project_id), "task": str(task_id)}
    if fully_progressed(task):
        return {**result, "released": False}  # released before (or by hand): Tryton bills it once
    values: Record = {"progress": DONE}
    done = await _done_status(client)
    if done is not None:
        values["status"] = done
    await client.write("project.work", [task_id], values)
    return {**result, "released": True}
