"""The embedded demo's cut-over day: a legal entity that now books in Tryton gets its pending work there.

The story is an acquisition (or an ERP replacement): from today ``P2C_LEGAL_ENTITIES__EU01__ERP=tryton``.
What EU01 booked in NetSuite before stays there, where it was booked; what is new goes to Tryton, through
the gateway's own flows and nothing else:

1. **provisioning** — the entity's new customers (accounts NetSuite never knew) book in Tryton: their
   closed-won deals, and those in negotiation that sales wins that day, each become a Tryton party +
   project with its tasks, a PSA project and the CRM fields (``mutations.provision.provision_engagement``,
   the call the GraphQL mutation makes). Customers with NetSuite history keep it there;
2. **time** — on each new time-and-materials project the staff log a few days in the PSA sandbox and a
   manager approves them (the sandbox's admin route: what people do), then one worker round posts them as
   timesheet lines (``TimeEntryPoller`` + the batch posting handler, as ``p2c worker`` does);
3. **billing** — Tryton's own invoice run on those projects, the invoices dated and posted (what the
   entity's accountant does in Tryton), then the Tryton billing poller → invoice and account fields in the
   CRM and ``invoice.status_changed`` events for subscribers.

Run at start-up after the demo's backfill (``open_runtime``), only when every system is an in-process
sandbox and some entity books in Tryton. The sandboxes are fresh at every start, so the Tryton database and
the store must be too — ``p2c serve --tryton-entity`` restores Tryton's post-build snapshot and starts
from a fresh store file. Failing here never stops the demo: the reason is logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx

from canonical.errors import GatewayError
from canonical.principal import Principal
from gateway.correlation import new_correlation_id
from gateway.logs import get_logger

if TYPE_CHECKING:
    from gateway.runtime import Runtime
    from mutations.deps import FlowDeps

log = get_logger("gateway.tryton_demo")

PRINCIPAL = Principal.system("tryton-demo")
DAYS_OF_TIME = 4  # working days logged per person on each new time-and-materials project
HOURS_A_DAY = 6.5
WON_TODAY = "Negotiation/Review"  # the new customers' deals the sales team closes on the cut-over day
INVOICE_DATE = "invoice_date"


@dataclass
class DayOne:
    """What the cut-over day did (logged; the test reads it)."""

    entity: str
    provisioned: dict[str, str] = field(default_factory=dict)  # opportunity → Tryton project id
    refused: dict[str, str] = field(default_factory=dict)  # opportunity → reason code
    entries: list[int] = field(default_factory=list)  # PSA time entries logged and approved
    posted: int = 0  # work items the posting round finished (time entries)
    invoices: list[int] = field(default_factory=list)  # Tryton invoices raised and posted
    written_back: int = 0  # CRM write-back items the billing round finished


def flow_deps(runtime: Runtime) -> FlowDeps:
    from gateway.worker import _as
    from mutations.deps import FlowDeps
    from subgraphs.crm.client import CrmClient
    from subgraphs.erp.client import ErpClient
    from subgraphs.psa.client import PsaClient

    return FlowDeps(
        crm=_as(CrmClient, runtime.client("crm")),
        psa=_as(PsaClient, runtime.client("psa")),
        erp=_as(ErpClient, runtime.client("erp")),
        sessionmaker=runtime.sessionmaker,
        mapping=runtime.mapping,
        tryton=runtime.tryton,
        erp_by_entity=runtime.settings.erp_by_entity(),
    )


async def tryton_day_one(runtime: Runtime) -> list[DayOne]:
    """Run the cut-over day for every entity that books in Tryton; what each did. Never raises."""
    deps = flow_deps(runtime)
    done: list[DayOne] = []
    for entity in deps.tryton_entities():
        try:
            day = await _day_one(runtime, deps, entity)
        except GatewayError as exc:
            log.error("gateway.tryton_demo.failed", entity=entity, code=exc.code, error=exc.message)
            continue
        except Exception as exc:  # a start-up convenience must not take the demo down; the trace is logged
            log.error("gateway.tryton_demo.crashed", entity=entity, exc_info=True, error=type(exc).__name__)
            continue
        log.info(
            "gateway.tryton_demo.done",
            entity=entity,
            provisioned=len(day.provisioned),
            refused=len(day.refused),
            entries=len(day.entries),
            posted=day.posted,
            invoices=len(day.invoices),
            written_back=day.written_back,
        )
        done.append(day)
    return done


async def _day_one(runtime: Runtime, deps: FlowDeps, entity: str) -> DayOne:
    day = DayOne(entity)
    await _provision(deps, entity, day)
    psa_start = await _psa_now(runtime)
    time_and_materials = await _time_and_materials(deps, day)
    await _log_time(runtime, deps, time_and_materials, psa_start, day)
    day.posted = (await _worker(deps, psa_start).drain()).done
    day.invoices = await _invoice(deps, time_and_materials)
    day.written_back = (await _worker(deps, psa_start).drain()).done
    return day


async def _provision(deps: FlowDeps, entity: str, day: DayOne) -> None:
    """The entity's new customers — accounts NetSuite never knew (no ERP link after backfill) — go to
    Tryton: their closed-won deals, and the ones in negotiation that the sales team wins today, are
    provisioned one by one. Customers with NetSuite history keep it there: nothing is booked twice."""
    from mutations.identity import account_id_of
    from mutations.provision import provision_engagement
    from store.repositories import CrossReferenceRepo
    from subgraphs.crm.client import soql_literal

    accounts = await deps.crm.query_all(
        f"SELECT Id, P2C_Id__c FROM Account WHERE Legal_Entity__c = {soql_literal(entity)} ORDER BY Id"
    )
    canonical = {account_id_of(a): str(a["Id"]) for a in accounts}
    async with deps.sessionmaker() as session:
        on_netsuite = await CrossReferenceRepo(session).system_ids_for("erp", sorted(canonical))
    new_customers = {crm_id for cid, crm_id in canonical.items() if cid not in on_netsuite}
    deals = await deps.crm.query_all("SELECT Id, AccountId, StageName FROM Opportunity ORDER BY Id")
    for deal in deals:
        if str(deal.get("AccountId")) not in new_customers:
            continue
        if deal.get("StageName") == WON_TODAY:
            await deps.crm.update("Opportunity", str(deal["Id"]), {"StageName": "Closed Won"})
        elif deal.get("StageName") != "Closed Won":
            continue
        try:
            result = await provision_engagement(
                deps, str(deal["Id"]), principal=PRINCIPAL, correlation_id=new_correlation_id()
            )
        except GatewayError as exc:  # refused before anything was written
            day.refused[str(deal["Id"])] = exc.code
            continue
        if result.erp_job_id is not None and result.status != "EXCEPTION":
            day.provisioned[str(deal["Id"])] = str(result.erp_job_id)
        else:
            day.refused[str(deal["Id"])] = str(result.reason_code or result.status)


async def _time_and_materials(deps: FlowDeps, day: DayOne) -> list[dict[str, Any]]:
    """The new projects Tryton invoices by timesheet, with their window."""
    if deps.tryton is None or not day.provisioned:
        return []
    ids = sorted({int(p) for p in day.provisioned.values()})
    rows = await deps.tryton.read(
        "project.work",
        ids,
        ["project_invoice_method", "timesheet_start_date", "timesheet_end_date", "comment"],
    )
    return [r for r in rows if r.get("project_invoice_method") == "timesheet"]


async def _log_time(
    runtime: Runtime, deps: FlowDeps, projects: list[dict[str, Any]], psa_now: datetime, day: DayOne
) -> None:
    """Each assigned person logs ``DAYS_OF_TIME`` working days from the project's start; approved."""
    from mutations.identity import PROJECT
    from store.repositories import CrossReferenceRepo

    async with deps.sessionmaker() as session:
        xrefs = CrossReferenceRepo(session)
        by_tryton = await xrefs.resolve_many("tryton", PROJECT, [str(p["id"]) for p in projects])
        psa_of = await xrefs.system_ids_for("psa", sorted(set(by_tryton.values())))
    users = await _entity_users(deps)
    for project in projects:
        psa_project = psa_of.get(by_tryton.get(str(project["id"]), ""))
        if psa_project is None:
            continue
        assignments = await deps.psa.task_assignments(int(psa_project))
        if not assignments or not users:
            continue
        task = int(assignments[0]["task"]["id"])
        for spent in _working_days(project["timesheet_start_date"], psa_now.date()):
            for user in users[:2]:
                body = {
                    "project_id": int(psa_project),
                    "task_id": task,
                    "user_id": user,
                    "spent_date": spent.isoformat(),
                    "hours": HOURS_A_DAY,
                    "notes": "cut-over week",
                }
                entry = int((await deps.psa.create_time_entry(body))["id"])
                await _psa_admin(runtime, "POST", f"/__sandbox/psa/time_entries/{entry}/approve")
                day.entries.append(entry)


def _working_days(start: date, today: date) -> list[date]:
    found: list[date] = []
    day = start
    while len(found) < DAYS_OF_TIME and day <= today:
        if day.weekday() < 5:
            found.append(day)
        day += timedelta(days=1)
    return found


async def _entity_users(deps: FlowDeps) -> list[int]:
    """PSA users who are employees of the entity's Tryton company (matched by e-mail, as posting does)."""
    if deps.tryton is None:
        return []
    employees = await deps.tryton.employees()
    return [int(u["id"]) for u in await deps.psa.users() if str(u.get("email") or "").lower() in employees]


async def _invoice(deps: FlowDeps, projects: list[dict[str, Any]]) -> list[int]:
    """Tryton's invoice run on each project, every new invoice dated today and posted."""
    client = deps.tryton
    if client is None or not projects:
        return []
    due = [
        int(r["id"])
        for r in await client.read("project.work", [int(p["id"]) for p in projects], ["amount_to_invoice"])
        if r.get("amount_to_invoice")  # Tryton refuses the button on a project with nothing to invoice
    ]
    if not due:
        return []
    before = {int(r["id"]) for r in await client.search_read("account.invoice", [], ["id"])}
    await client.button("project.work", "invoice", due)
    new = sorted(
        int(r["id"])
        for r in await client.search_read("account.invoice", [], ["id"])
        if int(r["id"]) not in before
    )
    if new:
        await client.write("account.invoice", new, {INVOICE_DATE: deps.today()})
        await client.button("account.invoice", "post", new)
    return new


def _worker(deps: FlowDeps, start: datetime) -> Any:
    from gateway.worker import Poller, Worker, default_handlers
    from mutations.billing.tryton import TrytonInvoicePoller
    from mutations.time_posting import TimeEntryPoller

    pollers: list[Poller] = [
        TimeEntryPoller(deps, start=start - timedelta(minutes=1), lag=timedelta(0)),
        TrytonInvoicePoller(deps),
    ]
    return Worker(deps.sessionmaker, default_handlers(deps), pollers=pollers, batch=50, clock=deps.clock)


async def _psa_admin(runtime: Runtime, method: str, path: str) -> Any:
    sandbox = runtime.systems["psa"].sandbox
    if sandbox is None:
        raise LookupError("the PSA is not an in-process sandbox")
    transport = httpx.ASGITransport(app=sandbox)
    async with httpx.AsyncClient(transport=transport, base_url="http://psa.sandbox") as client:
        response = await client.request(method, path)
        response.raise_for_status()
        return response.json() if response.content else None


async def _psa_now(runtime: Runtime) -> datetime:
    now = (await _psa_admin(runtime, "GET", "/__sandbox/psa/clock"))["now"]
    return datetime.fromisoformat(str(now).replace("Z", "+00:00"))


__all__ = ["DayOne", "tryton_day_one"]
