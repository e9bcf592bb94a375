"""Day one: tie together the records the three systems held before the gateway existed.

    report = await backfill(crm=crm, psa=psa, erp=erp, sessionmaker=sessionmaker)

1. **Read** everything in bulk, concurrently — CRM accounts (one SOQL query, paged by the server), ERP
   customers and jobs (SuiteQL, 1,000 rows a page), PSA clients and projects (2,000 a page). A
   10,000-account firm is a few dozen requests; nothing is fetched per record.
2. **Match** in memory (pure functions, no I/O):

   - account ↔ ERP customer, the first rule that finds anything decides:
     ``external_id`` (the customer's externalId is the account's canonical id — the gateway wrote it),
     ``erp_id_field`` (the CRM account's ``ERP_Customer_Id__c``), ``tax_id`` (``Tax_Id__c`` =
     ``vatregnumber``), ``account_number`` (``AccountNumber`` = ``accountnumber``). The weak rules (tax
     id, account number) only consider customers no strong rule claimed and that carry no external id.
     Several candidates at the deciding rule, or one customer claimed by several accounts, is
     ``MATCH_AMBIGUOUS``; no candidate at all is ``MATCH_MISSING``. Never a guess.
   - PSA client ↔ account: through the projects (the PSA project's client ↔ the ERP job's customer ↔
     its account), else by exact name; several → ``MATCH_AMBIGUOUS``, none → ``MATCH_MISSING``.
   - project: PSA project ↔ ERP job by project code (``entityid``). A PSA project without a job is
     ``MATCH_MISSING`` (its time could never be posted); several jobs → ``MATCH_AMBIGUOUS``. An ERP job
     without a PSA project is linked on the ERP side only (closed or never staffed) and counted.

3. **Write** cross-references and exceptions in transactions of ``batch_size`` actions; the links of a
   batch go through ``CrossReferenceRepo.link_many`` (bulk insert-ignore, conflicts returned — two calls
   per batch, so a project's PSA link is only written once its ERP link stood). The store's existing
   links are read first (bulk lookups, never a query per record): what is already linked the same way is
   skipped (a second run writes nothing), a link a person made by hand wins over a weak or failed match,
   and a match that contradicts an existing link is ``MATCH_AMBIGUOUS``, never an overwrite. An open
   exception for the same subject and reason is left alone (no duplicates); one whose subject now matches
   is resolved.

Failure and resumption: every read happens before the first write, so an upstream failure (ERP down)
raises its typed ``UpstreamError`` with no cross-reference written; the run is recorded ``FAILED`` with
the error. A store failure mid-write leaves the batches already committed — each batch is complete in
itself and every action is idempotent, so running backfill again resumes cleanly.

Exception subjects: an account's canonical id (step ``match_account``); ``psa:client:<id>`` (step
``match_client``) and ``psa:project:<id>`` (step ``match_project``) for PSA records that have no
canonical id until they match. All are flow ``backfill``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import defaultdict
from collections.abc import Awaitable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical.errors import UpstreamError
from canonical.ids import step_key
from mutations.identity import ACCOUNT, PROJECT, account_id_of, project_id_of
from store.repositories import CrossReferenceRepo, ExceptionRepo, RunRepo
from store.repositories.xrefs import XrefLink
from subgraphs.crm.client import CrmClient
from subgraphs.erp.client import ErpClient
from subgraphs.erp.wire import ref_id, text
from subgraphs.psa.client import PsaClient

FLOW = "backfill"
MATCH_MISSING = "MATCH_MISSING"
MATCH_AMBIGUOUS = "MATCH_AMBIGUOUS"
STEP_ACCOUNT = "match_account"
STEP_CLIENT = "match_client"
STEP_PROJECT = "match_project"

RULES = ("external_id", "erp_id_field", "tax_id", "account_number")

ACCOUNT_SOQL = (
    "SELECT Id, Name, AccountNumber, Tax_Id__c, ERP_Customer_Id__c, P2C_Id__c, Legal_Entity__c "
    "FROM Account ORDER BY Id"
)
CUSTOMER_SUITEQL = "SELECT id, externalid, entityid, accountnumber, vatregnumber FROM customer ORDER BY id"
JOB_SUITEQL = "SELECT id, externalid, entityid, parent FROM job ORDER BY id"
BATCH_SIZE = 1_000

Record = Mapping[str, Any]
T = TypeVar("T")


@dataclass
class BackfillReport:
    run_id: str
    accounts: int = 0
    matched: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RULES, 0))
    kept_existing: int = 0  # matched nothing (or weakly) but a link in the store already says which
    missing: int = 0
    ambiguous: int = 0
    erp_customers_unmatched: int = 0  # ERP customers no account claimed (ERP-only, or ambiguous)
    psa_clients_linked: int = 0
    projects_linked: int = 0  # PSA project ↔ ERP job
    projects_erp_only: int = 0
    project_exceptions: int = 0
    client_exceptions: int = 0
    link_conflicts: int = 0  # a link the store already holds differently (subject ``<system>:<type>:<id>``)
    xrefs_created: int = 0
    exceptions_opened: int = 0
    exceptions_resolved: int = 0
    exceptions_still_open: int = 0  # raised by an earlier run, same reason now: left as they were
    duration_s: float = 0.0
    phases_s: dict[str, float] = field(default_factory=dict)  # read, plan, links, exceptions

    @property
    def exceptions(self) -> int:
        """Every subject that needs a person after this run."""
        return (
            self.missing
            + self.ambiguous
            + self.client_exceptions
            + self.project_exceptions
            + self.link_conflicts
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exceptions": self.exceptions}


# -- matching (pure) -------------------------------------------------------------------------------------


@dataclass
class Match:
    """How one source record fared: ``target`` set when matched; ``candidates`` when ambiguous."""

    subject: str
    step: str
    target: str | None = None
    rule: str | None = None
    candidates: list[str] = field(default_factory=list)
    tried: list[dict[str, Any]] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None  # MATCH_MISSING | MATCH_AMBIGUOUS

    def payload(self) -> dict[str, Any]:
        return {**self.detail, "tried": self.tried, "candidates": self.candidates}


def _norm(value: object) -> str | None:
    """Identifiers compare without case, spaces, dots, dashes or slashes (``DE 123.456`` = ``de123456``)."""
    if value is None:
        return None
    cleaned = re.sub(r"[\s.\-/]", "", str(value)).upper()
    return cleaned or None


def _index(rows: Iterable[Record], key: str) -> dict[str, list[str]]:
    index: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        value = _norm(text(dict(row), key))
        if value is not None:
            index[value].append(str(row["id"]))
    return index


def match_accounts(accounts: Sequence[Record], customers: Sequence[Record]) -> dict[str, Match]:
    """``{account canonical id: Match}`` — each CRM account against the ERP customers (see module doc)."""
    by_id = {str(c["id"]): c for c in customers}
    by_external = _index(customers, "externalId")
    free = [c for c in customers if not text(dict(c), "externalId")]
    matches: dict[str, Match] = {}
    pending: list[tuple[Record, Match]] = []
    for account in accounts:
        cid = account_id_of(account)
        m = Match(
            cid,
            STEP_ACCOUNT,
            detail={
                "crm_id": account["Id"],
                "name": account.get("Name"),
                "legal_entity": account.get("Legal_Entity__c"),
            },
        )
        matches[cid] = m
        found = by_external.get(_norm(cid) or "", [])
        m.tried.append({"rule": "external_id", "value": cid, "candidates": found})
        if _decide(m, "external_id", found):
            continue
        erp_field = account.get("ERP_Customer_Id__c")
        if erp_field:
            customer = by_id.get(str(erp_field).strip())
            m.tried.append(
                {
                    "rule": "erp_id_field",
                    "value": str(erp_field),
                    "candidates": [] if customer is None else [str(customer["id"])],
                }
            )
            if customer is not None:
                owner = text(dict(customer), "externalId")
                if owner and owner != cid:
                    # The CRM says this customer, the ERP says it belongs to another canonical record.
                    m.detail["customer_external_id"] = owner
                    _decide(m, "erp_id_field", [str(customer["id"]), f"externalId:{owner}"])
                else:
                    _decide(m, "erp_id_field", [str(customer["id"])])
                continue
        pending.append((account, m))

    claimed = {m.target for m in matches.values() if m.target is not None}
    unclaimed = [c for c in free if str(c["id"]) not in claimed]
    by_tax = _index(unclaimed, "vatRegNumber")
    by_number = _index(unclaimed, "accountNumber")
    for account, m in pending:
        tax = _norm(account.get("Tax_Id__c"))
        if tax is not None:
            found = by_tax.get(tax, [])
            m.tried.append({"rule": "tax_id", "value": account.get("Tax_Id__c"), "candidates": found})
            if _decide(m, "tax_id", found):
                continue
        number = _norm(account.get("AccountNumber"))
        if number is not None:
            found = by_number.get(number, [])
            m.tried.append(
                {"rule": "account_number", "value": account.get("AccountNumber"), "candidates": found}
            )
            if _decide(m, "account_number", found):
                continue
        m.problem = MATCH_MISSING

    # One customer, several accounts: none of them gets it.
    claimants: dict[str, list[Match]] = defaultdict(list)
    for m in matches.values():
        if m.target is not None:
            claimants[m.target].append(m)
    for customer_id, ms in claimants.items():
        if len(ms) > 1:
            for m in ms:
                m.detail["claimed_by"] = sorted(o.subject for o in ms)
                m.candidates, m.target, m.problem = [customer_id], None, MATCH_AMBIGUOUS
    return matches


def _decide(m: Match, rule: str, found: list[str]) -> bool:
    """True when ``rule`` decided (one candidate → match, several → ambiguous)."""
    if not found:
        return False
    m.rule = rule
    if len(found) == 1:
        m.target = found[0]
    else:
        m.candidates, m.problem = sorted(found), MATCH_AMBIGUOUS
    return True


def match_clients(
    clients: Sequence[Record],
    psa_projects: Sequence[Record],
    jobs: Sequence[Record],
    accounts: Sequence[Record],
    customer_to_account: Mapping[str, str],
) -> dict[str, Match]:
    """``{psa client id: Match}`` with ``target`` an account canonical id."""
    job_customer = {_norm(text(dict(j), "entityId")): ref_id(dict(j), "parent") for j in jobs}
    via_projects: dict[str, set[str]] = defaultdict(set)
    for p in psa_projects:
        customer = job_customer.get(_norm(p.get("code")))
        account = customer_to_account.get(customer or "")
        if account is not None:
            via_projects[str(p["client"]["id"])].add(account)
    by_name: dict[str, list[str]] = defaultdict(list)
    for a in accounts:
        name = _name(a.get("Name"))
        if name:
            by_name[name].append(account_id_of(a))
    matches: dict[str, Match] = {}
    for c in clients:
        psa_id = str(c["id"])
        m = Match(f"psa:client:{psa_id}", STEP_CLIENT, detail={"psa_id": psa_id, "name": c.get("name")})
        matches[psa_id] = m
        found = sorted(via_projects.get(psa_id, ()))
        m.tried.append({"rule": "project", "candidates": found})
        if _decide(m, "project", found):
            continue
        found = by_name.get(_name(c.get("name")) or "", [])
        m.tried.append({"rule": "name", "value": c.get("name"), "candidates": found})
        if not _decide(m, "name", found):
            m.problem = MATCH_MISSING
    # One account, several PSA clients: an account has one id per system, so none of them gets it.
    claimants: dict[str, list[Match]] = defaultdict(list)
    for m in matches.values():
        if m.target is not None:
            claimants[m.target].append(m)
    for account, ms in claimants.items():
        if len(ms) > 1:
            for m in ms:
                m.detail["claimed_by"] = sorted(o.subject for o in ms)
                m.candidates, m.target, m.problem = [account], None, MATCH_AMBIGUOUS
    return matches


def _name(value: object) -> str | None:
    if not value:
        return None
    return " ".join(str(value).casefold().split()) or None


def match_projects(psa_projects: Sequence[Record], jobs: Sequence[Record]) -> dict[str, Match]:
    """``{psa project id: Match}`` with ``target`` an ERP job id."""
    by_code = _index(jobs, "entityId")
    matches: dict[str, Match] = {}
    for p in psa_projects:
        psa_id = str(p["id"])
        m = Match(
            f"psa:project:{psa_id}",
            STEP_PROJECT,
            detail={"psa_id": psa_id, "code": p.get("code"), "name": p.get("name")},
        )
        matches[psa_id] = m
        code = _norm(p.get("code"))
        found = by_code.get(code, []) if code else []
        m.tried.append({"rule": "project_code", "value": p.get("code"), "candidates": found})
        if not _decide(m, "project_code", found):
            m.problem = MATCH_MISSING
    claimants: dict[str, list[Match]] = defaultdict(list)
    for m in matches.values():
        if m.target is not None:
            claimants[m.target].append(m)
    for job, ms in claimants.items():
        if len(ms) > 1:
            for m in ms:
                m.detail["claimed_by"] = sorted(o.subject for o in ms)
                m.candidates, m.target, m.problem = [job], None, MATCH_AMBIGUOUS
    return matches


# -- the flow --------------------------------------------------------------------------------------------


@dataclass
class _Snapshot:
    accounts: list[Record]
    customers: list[Record]
    jobs: list[Record]
    clients: list[Record]
    projects: list[Record]

    def counts(self) -> dict[str, int]:
        # Not ``asdict``: it would deep-copy every record.
        return {
            "accounts": len(self.accounts),
            "customers": len(self.customers),
            "jobs": len(self.jobs),
            "clients": len(self.clients),
            "projects": len(self.projects),
        }


@dataclass(frozen=True)
class _Link:
    canonical_id: str
    entity_type: str
    system: str
    system_id: str
    subject: Match | None = None  # whose match a conflicting link turns ambiguous


async def backfill(
    *,
    crm: CrmClient,
    psa: PsaClient,
    erp: ErpClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    correlation_id: str | None = None,
    batch_size: int = BATCH_SIZE,
) -> BackfillReport:
    """Match what the three systems already hold, fill the cross-references, raise what needs a person.

    Raises the connector's ``UpstreamError`` when a system cannot be read (nothing linked then).
    """
    started = time.perf_counter()
    async with sessionmaker.begin() as session:
        runs = RunRepo(session)
        run = await runs.start(FLOW, input={"batch_size": batch_size}, correlation_id=correlation_id)
        read_key = step_key("p2c", FLOW, run.id, "read")
        await runs.step(run.id, "read", read_key)
        await runs.begin_step(read_key)
    report = BackfillReport(run_id=run.id)
    phase = time.perf_counter()
    try:
        snapshot = await _read(crm, psa, erp)
    except UpstreamError as exc:
        async with sessionmaker.begin() as session:
            runs = RunRepo(session)
            await runs.step_failed(
                read_key, {"code": exc.code, **exc.as_extensions(), "message": exc.message}
            )
            await runs.finish(run.id, "FAILED")
        raise
    async with sessionmaker.begin() as session:
        await RunRepo(session).step_succeeded(read_key, snapshot.counts())

    phase = _lap(report, "read", phase)
    links, problems, solved = await _plan(snapshot, sessionmaker, report)
    phase = _lap(report, "plan", phase)
    await _write(links, problems, solved, sessionmaker, report, run.id, correlation_id, batch_size)

    report.duration_s = round(time.perf_counter() - started, 3)
    async with sessionmaker.begin() as session:
        runs = RunRepo(session)
        write_key = step_key("p2c", FLOW, run.id, "report")
        await runs.step(run.id, "report", write_key)
        await runs.step_succeeded(write_key, report.as_dict())
        await runs.finish(run.id, "SUCCEEDED")
    return report


def _lap(report: BackfillReport, name: str, since: float) -> float:
    now = time.perf_counter()
    report.phases_s[name] = round(now - since, 3)
    return now


async def _read(crm: CrmClient, psa: PsaClient, erp: ErpClient) -> _Snapshot:
    async def projects() -> list[Record]:
        return [p async for page in psa.projects() for p in page]

    accounts, customers, jobs, clients, psa_projects = await _all(
        crm.query_all(ACCOUNT_SOQL),
        erp.suiteql(CUSTOMER_SUITEQL),
        erp.suiteql(JOB_SUITEQL),
        psa.clients(),
        projects(),
    )
    return _Snapshot(
        list(accounts), list(customers), list(jobs), [dict(c) for c in clients], list(psa_projects)
    )


async def _all(*calls: Awaitable[Sequence[Record]]) -> list[Sequence[Record]]:
    """Run the reads concurrently; the first failure cancels the rest and is raised as it is."""
    tasks = [asyncio.ensure_future(c) for c in calls]
    try:
        done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            exc = task.exception()
            if exc is not None:
                raise exc
        return [t.result() for t in tasks]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _plan(
    snap: _Snapshot, sessionmaker: async_sessionmaker[AsyncSession], report: BackfillReport
) -> tuple[list[_Link], list[Match], list[Match]]:
    """What to link, what to raise and which subjects are now fine — against the store's existing links."""
    account_matches = match_accounts(snap.accounts, snap.customers)
    project_matches = match_projects(snap.projects, snap.jobs)
    crm_of = {account_id_of(a): str(a["Id"]) for a in snap.accounts}
    jobs_by_id = {str(j["id"]): j for j in snap.jobs}

    account_ids = list(crm_of)
    project_ids = [project_id_of(j) for j in snap.jobs]
    async with sessionmaker() as session:
        xrefs = CrossReferenceRepo(session)
        existing = {  # system_ids_for goes IN_CHUNK ids a query: a few dozen queries for 10,000 accounts
            system: await xrefs.system_ids_for(system, account_ids + project_ids)
            for system in ("crm", "erp", "psa")
        }

    links: list[_Link] = []
    problems: list[Match] = []
    solved: list[Match] = []
    report.accounts = len(snap.accounts)
    customer_to_account: dict[str, str] = {}
    for cid, m in account_matches.items():
        links.append(_Link(cid, ACCOUNT, "crm", crm_of[cid]))
        linked = existing["erp"].get(cid)
        if m.target is None and linked is not None:
            # A person (or the gateway) already decided: the store's link stands over a failed match.
            m.problem, m.target, m.rule = None, linked, None
            report.kept_existing += 1
        elif m.target is not None and linked is not None and linked != m.target:
            m.detail["already_linked_to"] = linked
            m.candidates = sorted({m.target, linked})
            m.target, m.problem = None, MATCH_AMBIGUOUS
        if m.target is not None:
            if m.rule is not None:
                report.matched[m.rule] += 1
            links.append(_Link(cid, ACCOUNT, "erp", m.target, m))
            customer_to_account[m.target] = cid
            solved.append(m)
        else:
            problems.append(m)
            report.missing += m.problem == MATCH_MISSING
            report.ambiguous += m.problem == MATCH_AMBIGUOUS
    report.erp_customers_unmatched = len({str(c["id"]) for c in snap.customers} - set(customer_to_account))

    client_matches = match_clients(snap.clients, snap.projects, snap.jobs, snap.accounts, customer_to_account)
    for psa_id, m in client_matches.items():
        if m.target is not None:
            links.append(_Link(m.target, ACCOUNT, "psa", psa_id, m))
            report.psa_clients_linked += 1
            solved.append(m)
        else:
            problems.append(m)
            report.client_exceptions += 1

    matched_jobs: set[str] = set()
    for psa_id, m in project_matches.items():
        if m.target is not None:
            pid = project_id_of(jobs_by_id[m.target])
            links.append(_Link(pid, PROJECT, "erp", m.target, m))
            links.append(_Link(pid, PROJECT, "psa", psa_id, m))
            matched_jobs.add(m.target)
            report.projects_linked += 1
            solved.append(m)
        else:
            problems.append(m)
            report.project_exceptions += 1
    for job_id, job in jobs_by_id.items():
        if job_id not in matched_jobs:
            links.append(_Link(project_id_of(job), PROJECT, "erp", job_id))
            report.projects_erp_only += 1

    new_links = [ln for ln in links if existing[ln.system].get(ln.canonical_id) != ln.system_id]
    return new_links, problems, solved


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


async def _write(
    links: list[_Link],
    problems: list[Match],
    solved: list[Match],
    sessionmaker: async_sessionmaker[AsyncSession],
    report: BackfillReport,
    run_id: str,
    correlation_id: str | None,
    batch_size: int,
) -> None:
    phase = time.perf_counter()
    async with sessionmaker() as session:
        active = await _active_exceptions(ExceptionRepo(session))

    # Links first: a conflicting link turns its match into a problem before exceptions are written.
    for batch in _chunks(links, batch_size):
        async with sessionmaker.begin() as session:
            xrefs = CrossReferenceRepo(session)
            for wave in _waves(batch):
                # A match whose earlier link conflicted (this batch or an earlier one) links nothing more.
                todo = [ln for ln in wave if ln.subject is None or ln.subject.problem is None]
                outcome = await xrefs.link_many(
                    [XrefLink(ln.canonical_id, ln.entity_type, ln.system, ln.system_id) for ln in todo]
                )
                report.xrefs_created += outcome.created
                for conflict in outcome.conflicts:
                    _conflicted(todo[conflict.index], conflict.message, problems, report)

    phase = _lap(report, "links", phase)
    actions: list[tuple[str, Match]] = [("raise", m) for m in problems]
    actions += [("resolve", m) for m in solved if m.problem is None and (m.subject, m.step) in active]
    for batch_actions in _chunks(actions, batch_size):
        async with sessionmaker.begin() as session:
            exceptions = ExceptionRepo(session)
            for action, m in batch_actions:
                current = active.get((m.subject, m.step))
                if action == "resolve" and current is not None:
                    await exceptions.mark_resolved(
                        current[0], note=f"matched by {m.rule} in backfill run {run_id}"
                    )
                    report.exceptions_resolved += 1
                elif action == "raise" and m.problem is not None:
                    if current is not None and current[1] == m.problem:
                        report.exceptions_still_open += 1
                        continue
                    await exceptions.open(
                        flow=FLOW,
                        reason_code=m.problem,
                        payload=m.payload(),
                        step=m.step,
                        run_id=run_id,
                        subject=m.subject,
                        correlation_id=correlation_id,
                        legal_entity=m.detail.get("legal_entity"),
                    )
                    report.exceptions_opened += 1
    _lap(report, "exceptions", phase)


def _waves(batch: Sequence[_Link]) -> list[list[_Link]]:
    """The batch in ``link_many`` calls, in order, such that no call holds two links of one match: wave
    *k* holds each match's *k*-th link of the batch (and wave 0 every link no match asked for), so a
    match's later link is written only once its earlier ones stood. Backfill's only two-link match is a
    project's (ERP job, then PSA project): two calls per batch."""
    waves: list[list[_Link]] = []
    seen: dict[int, int] = defaultdict(int)
    for ln in batch:
        k = 0
        if ln.subject is not None:
            k = seen[id(ln.subject)]
            seen[id(ln.subject)] += 1
        if k == len(waves):
            waves.append([])
        waves[k].append(ln)
    return waves


def _conflicted(ln: _Link, message: str, problems: list[Match], report: BackfillReport) -> None:
    if ln.subject is None:
        problems.append(_link_conflict(ln, message))
        report.link_conflicts += 1
        return
    m = ln.subject
    m.detail["conflict"] = message
    m.candidates = sorted({*m.candidates, ln.system_id})
    m.problem = MATCH_AMBIGUOUS
    problems.append(m)
    _count_conflict(report, m)


def _link_conflict(ln: _Link, message: str) -> Match:
    """A link no match asked for (a CRM account's own id, an ERP-only job) that the store contradicts."""
    return Match(
        f"{ln.system}:{ln.entity_type}:{ln.system_id}",
        "link",
        candidates=[ln.canonical_id],
        detail={"conflict": message, "canonical_id": ln.canonical_id},
        problem=MATCH_AMBIGUOUS,
    )


def _count_conflict(report: BackfillReport, m: Match) -> None:
    if m.step == STEP_ACCOUNT:
        report.ambiguous += 1
        if m.rule in report.matched and report.matched[m.rule] > 0:
            report.matched[m.rule] -= 1
    elif m.step == STEP_CLIENT:
        report.client_exceptions += 1
        report.psa_clients_linked -= 1
    else:
        report.project_exceptions += 1
        report.projects_linked -= 1


async def _active_exceptions(repo: ExceptionRepo) -> dict[tuple[str, str], tuple[str, str]]:
    """``{(subject, step): (exception id, reason code)}`` of this flow's open or replaying exceptions."""
    found: dict[tuple[str, str], tuple[str, str]] = {}
    offset = 0
    while True:
        page = await repo.list(status=("OPEN", "REPLAYING"), flow=FLOW, limit=1_000, offset=offset)
        for e in page:
            if e.subject is not None and e.step is not None:
                found[(e.subject, e.step)] = (e.id, e.reason_code)
        if len(page) < 1_000:
            return found
        offset += len(page)
