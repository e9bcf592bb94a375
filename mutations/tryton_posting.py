"""Approved time → Tryton timesheet lines (expenses → the exception queue): the posting flow's adapter for
projects booked in Tryton.

``mutations.posting.post.post_items`` hands over the entries whose PSA project is linked to a Tryton project
(cross-reference system ``tryton``); everything else — the queue, heads, exceptions, completion — works as
for NetSuite, with the same ledger (``PostingRepo``) and the same outcomes.

Exactly one line per approved entry version, without an external-id upsert:

* the line's description starts with ``psa:<entry id>:v<version>`` (its reference);
* a finished write is a step ``tryton:timesheet:<entry id>:v<version>``; the head (``psa:time:<id>:head``)
  says which version is live, and is claimed for the batch, so two workers never post one entry at once;
* before creating, the entry's lines are searched by reference: a line of this version is adopted (a worker
  killed between Tryton's commit and ours left it), older versions' lines are deleted (a correction or an
  unapproval) unless invoiced — then ``ALREADY_BILLED``, Tryton untouched.

Refusals become exceptions with Tryton's reason codes: ``AFTER_END_DATE`` (the work's timesheet end date is
before the entry), ``ALREADY_BILLED``, ``PERIOD_CLOSED``; an employee missing in Tryton is
``MAPPING_MISSING``. Transient failures are retried by the queue like NetSuite's.

Expenses have no honest target in Tryton as installed (``pyproject.toml``: no expense module, so no expense
report; a supplier invoice from the employee would be an accounting decision — which expense account,
which journal, is it reimbursable, is it rebilled — that the gateway cannot take, and ``project_invoice``
would not bill it to the client). An approved expense of a Tryton project therefore becomes an exception
``EXPENSE_UNSUPPORTED`` (step ``tryton:expense:<id>:v<version>`` FAILED, the head unchanged: never marked
posted, never dropped) whose fix tells finance to book it in Tryton by hand and resolve the exception; an
expense that is not (or no longer) approved is ``SKIPPED`` — nothing of it was ever posted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from canonical.errors import ConfigurationError, Conflict, UpstreamRateLimited, UpstreamUnavailable
from mutations.deps import FlowDeps
from mutations.governance import describe_error, reason_code
from mutations.identity import PROJECT
from mutations.posting.model import (
    ALREADY_BILLED,
    MAPPING_MISSING,
    MAX_ATTEMPTS,
    POST_EXPENSE,
    POST_TIME,
    Failure,
    PostItem,
)
from mutations.posting.post import BatchReport, Completer, Outcome, record_batch
from store.repositories import CrossReferenceRepo, RunRepo
from store.repositories.postings import PostingRepo, StepRow
from subgraphs.erp_tryton.client import TrytonClient
from subgraphs.erp_tryton.errors import TrytonRejected
from subgraphs.erp_tryton.mapping import line_reference, timesheet_values
from subgraphs.erp_tryton.wire import Record

FLOW = "post_time_tryton"
SYSTEM = "tryton"


EXPENSE_UNSUPPORTED = "EXPENSE_UNSUPPORTED"
EXPENSE_FIX = (
    "{entity} books in Tryton, which has no expense reports, so the gateway did not post this expense "
    "(total {total} {currency}, {category}, spent {date}). Book it in Tryton by hand — as a supplier "
    "invoice from the employee, or through payroll — and, if the client is to be recharged, add it to the "
    "client's next invoice; then resolve this exception. Replaying it will not post it."
)


def step_key(entry_id: int, version: int, kind: str = POST_TIME) -> str:
    noun = "expense" if kind == POST_EXPENSE else "timesheet"
    return f"tryton:{noun}:{entry_id}:v{version}"


def _key(item: PostItem) -> str:
    return step_key(item.entry_id, item.version, item.spec.kind)


async def tryton_projects(deps: FlowDeps, items: Sequence[PostItem]) -> dict[PostItem, int]:
    """The time entries and expenses among ``items`` whose PSA project is a Tryton project → its id."""
    kinds = (POST_TIME, POST_EXPENSE)
    time_items = [i for i in items if i.spec.kind in kinds and i.entry.get("project")]
    if not time_items or deps.tryton is None:
        return {}
    psa_ids = {str(i.entry["project"]["id"]) for i in time_items}
    async with deps.sessionmaker() as session:
        xrefs = CrossReferenceRepo(session)
        canonical = await xrefs.resolve_many("psa", PROJECT, psa_ids)
        in_tryton = await xrefs.system_ids_for(SYSTEM, list(canonical.values()))
    found: dict[PostItem, int] = {}
    for item in time_items:
        project = in_tryton.get(canonical.get(str(item.entry["project"]["id"]), ""))
        if project is not None:
            found[item] = int(project)
    return found


class _Batch:
    """One batch's reads of Tryton and the PSA, shared by its entries."""

    def __init__(self, deps: FlowDeps, client: TrytonClient) -> None:
        self.deps = deps
        self.client = client
        self.works: dict[int, Record] = {}
        self.emails: dict[int, str] | None = None

    async def load(self, projects: set[int], entry_ids: list[int]) -> dict[int, list[Record]]:
        rows = await self.client.read(
            "project.work", sorted(projects), ["timesheet_works", "children.name", "children.timesheet_works"]
        )
        self.works = {int(r["id"]): r for r in rows}
        users = await self.deps.psa.users()
        self.emails = {int(u["id"]): str(u.get("email") or "").lower() for u in users}
        lines: dict[int, list[Record]] = {e: [] for e in entry_ids}
        domain: list[Any] = ["OR", *[["description", "like", f"psa:{e}:v%"] for e in entry_ids]]
        for row in await self.client.search_all(
            "timesheet.line", [domain], ["description", "invoice_line", "duration", "work"]
        ):
            ref = str(row.get("description") or "").split(" ", 1)[0]  # psa:<id>:v<n>
            entry = int(ref.split(":")[1]) if ref.count(":") == 2 else None
            if entry in lines:
                lines[entry].append(row)
        return lines

    def work_for(self, project: int, task_name: str | None) -> int | None:
        row = self.works.get(project)
        if row is None:
            return None
        for child in row.get("children.") or []:
            if child.get("name") == task_name and child.get("timesheet_works"):
                return int(child["timesheet_works"][0])
        own = row.get("timesheet_works") or []
        return int(own[0]) if own else None


def _refused(reason: str, message: str, fix: str, **details: Any) -> Failure:
    return Failure(reason, message, fix, details)


async def _post_one(
    batch: _Batch, item: PostItem, project: int, lines: list[Record]
) -> tuple[str, dict[str, Any], list[StepRow]]:
    """→ (outcome, new head, steps). Raises ``TrytonRejected`` / upstream errors, or returns a Failure."""
    client, entry_id = batch.client, item.entry_id
    ref = line_reference(entry_id, item.version)
    mine = [ln for ln in lines if str(ln.get("description") or "").split(" ", 1)[0] == ref]
    older = [ln for ln in lines if ln not in mine]
    billed = [ln for ln in older if ln.get("invoice_line")]
    if billed:
        raise _Refusal(
            _refused(
                ALREADY_BILLED,
                f"PSA entry {entry_id}: Tryton timesheet line {billed[0]['id']} is already invoiced",
                "credit the invoice in Tryton (or leave the entry as billed), then replay",
                line=billed[0]["id"],
            )
        )
    steps: list[StepRow] = []
    if older:
        await client.delete("timesheet.line", [int(ln["id"]) for ln in older])
        for ln in older:
            old_ref = str(ln["description"]).split(" ", 1)[0]
            steps.append(
                StepRow(
                    f"tryton:timesheet:{old_ref[4:]}:reversal",
                    "reverse",
                    "SUCCEEDED",
                    {"erp_id": str(ln["id"]), "deleted": True},
                )
            )
    hours = Decimal(str(item.entry.get("hours") or 0))
    if not item.approved or hours <= 0:
        for ln in mine:  # a version that is no longer approved leaves nothing behind either
            await client.delete("timesheet.line", [int(ln["id"])])
        outcome = "REVERSED" if older or mine else "SKIPPED"
        return outcome, {"version": item.version, "live": None, "erp": SYSTEM}, steps
    if mine:  # Tryton committed it, we did not record it: adopt it, never create a second one
        line_id = int(mine[0]["id"])
        if len(mine) > 1:
            await client.delete("timesheet.line", [int(ln["id"]) for ln in mine[1:]])
    else:
        user = int((item.entry.get("user") or {}).get("id") or 0)
        email = (batch.emails or {}).get(user, "")
        employee = (await client.employees()).get(email)
        if employee is None:
            raise _Refusal(
                _refused(
                    MAPPING_MISSING,
                    f"PSA user {user} ({email or 'no e-mail'}) has no Tryton employee",
                    "create the employee in Tryton with the person's e-mail as its party code, then replay",
                    table="employees",
                    key=email,
                )
            )
        work = batch.work_for(project, (item.entry.get("task") or {}).get("name"))
        if work is None:
            raise _Refusal(
                _refused(
                    "UNKNOWN_PROJECT",
                    f"Tryton project {project} has no timesheet work",
                    "make the project (or the task) available for timesheets in Tryton, then replay",
                )
            )
        spent = date.fromisoformat(str(item.entry["spent_date"]))
        values = timesheet_values(
            work, employee, spent, hours, entry_id, item.version, str(item.entry.get("notes") or "")
        )
        (line_id,) = await client.create("timesheet.line", [values])
    steps.append(
        StepRow(
            step_key(entry_id, item.version), "post", "SUCCEEDED", {"erp_id": str(line_id), "reference": ref}
        )
    )
    outcome = "CORRECTED" if older else "POSTED"
    return outcome, {"version": item.version, "live": ref, "erp_id": str(line_id), "erp": SYSTEM}, steps


def _expense(item: PostItem, entity: str | None) -> tuple[str, dict[str, Any]]:
    """An expense version of a Tryton project → (SKIPPED, its head); raises ``_Refusal`` when approved."""
    total = Decimal(str(item.entry.get("total_cost") or 0)).quantize(Decimal("0.01"))
    if not item.approved or total <= 0:
        return "SKIPPED", {"version": item.version, "live": None, "erp": SYSTEM}
    category = (item.entry.get("expense_category") or {}).get("name") or "no category"
    user = item.entry.get("user") or {}
    currency = (item.entry.get("client") or {}).get("currency") or ""
    fix = EXPENSE_FIX.format(
        entity=entity or "This legal entity",
        total=total,
        currency=currency,
        category=category,
        date=item.entry.get("spent_date"),
    )
    raise _Refusal(
        _refused(
            EXPENSE_UNSUPPORTED,
            f"PSA expense {item.entry_id} ({user.get('name') or 'user ' + str(user.get('id'))}, "
            f"{total} {currency}) is for a project booked in Tryton, which has no expense reports",
            fix,
            step=_key(item),
            total=str(total),
        )
    )


class _Refusal(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


async def post_to_tryton(
    deps: FlowDeps,
    items: Mapping[PostItem, int],
    *,
    complete: Completer | None = None,
    stale_after: timedelta | None = None,
) -> BatchReport:
    """Post ``items`` (entry version → its Tryton project id); same shape and guarantees as ``post_items``."""
    client = deps.tryton
    if client is None:
        raise ConfigurationError("time for a Tryton project but no Tryton connector (P2C_TRYTON__BASE_URL)")
    entities = deps.tryton_entities()
    entity = entities[0] if entities else None  # one Tryton connector books one company
    newest: dict[tuple[str, int], PostItem] = {}  # a time entry and an expense may share an id
    for item in items:
        at = (item.spec.kind, item.entry_id)
        if at not in newest or newest[at].version < item.version:
            newest[at] = item
    async with deps.sessionmaker.begin() as session:
        run = await RunRepo(session, clock=deps.clock).start(
            FLOW, subject=f"{len(items)} items", input={"items": len(items)}
        )
        extra = {"stale_after": stale_after} if stale_after is not None else {}
        heads = await PostingRepo(session, clock=deps.clock).claim_heads(
            run.id, sorted({i.spec.head(i.entry_id) for i in newest.values()}), **extra
        )
    report = BatchReport(run.id)
    for item in items:
        report.legal_entities[item] = entity or ""
        if newest[(item.spec.kind, item.entry_id)] is not item:
            report.outcomes[item] = Outcome("SUPERSEDED")
    mine = [i for i in newest.values() if i.spec.head(i.entry_id) in heads]
    for item in newest.values():
        if item not in mine:
            report.outcomes[item] = Outcome(
                "BUSY",
                error=Conflict(f"entry {item.entry_id} is being posted by another worker", subject=item.key),
            )
    released: dict[str, Any] = {}
    steps: list[StepRow] = []
    failures: dict[PostItem, Failure] = {}
    try:
        batch = _Batch(deps, client)
        timed = [i for i in mine if i.spec.kind == POST_TIME]
        lines = await batch.load({items[i] for i in timed}, [i.entry_id for i in timed]) if timed else {}
        for item in mine:
            key = item.spec.head(item.entry_id)
            head = heads.get(key)
            released[key] = head
            if head is not None and int(head.get("version") or 0) >= item.version:
                report.outcomes[item] = Outcome("SUPERSEDED")
                continue
            try:
                if item.spec.kind == POST_EXPENSE:
                    outcome, new_head = _expense(item, entity)
                    written: list[StepRow] = []
                else:
                    outcome, new_head, written = await _post_one(
                        batch, item, items[item], lines[item.entry_id]
                    )
            except _Refusal as refused:
                failures[item] = refused.failure
                continue
            except TrytonRejected as exc:
                failures[item] = Failure(
                    exc.reason,
                    str(exc),
                    f"Tryton refused the line ({exc.reason}): fix it, then replay",
                    {"step": _key(item), **describe_error(exc)},
                )
                continue
            except (UpstreamUnavailable, UpstreamRateLimited) as exc:
                if item.job_id is not None and item.attempts < MAX_ATTEMPTS:
                    report.outcomes[item] = Outcome("RETRY", error=exc)
                else:
                    failures[item] = Failure(
                        reason_code(exc), str(exc), "replay once Tryton answers", describe_error(exc)
                    )
                continue
            steps.extend(written)
            released[key] = new_head
            report.outcomes[item] = Outcome(outcome)
    finally:
        for item, failure in failures.items():
            report.outcomes[item] = Outcome("FAILED", failure=failure)
            steps.append(StepRow(_key(item), "post", "FAILED", error=failure.as_error()))
        await record_batch(deps, report, released, steps, failures, lambda _item: entity, complete)
    return report
