"""Engagements (CRM won deals ↔ ERP jobs) and hours (PSA approved time ↔ ERP time bills): pure, no I/O.

How records are tied, strongest first:

- **Deal → job.** The opportunity's ``ERP_Project_Id__c`` (the gateway writes it when it provisions); else
  the ERP job whose ``externalId`` is the provisioned project's canonical id (a provisioning whose CRM
  write-back has not happened); else, for day-one jobs that predate the gateway and carry no reference to
  any deal, the job under the account's ERP customer whose name is the deal's name followed by
  `` (<project code>)`` — how the firm named its jobs before the gateway (``subgraphs.demo``). A won deal
  with none of these is ``WON_NOT_PROVISIONED``, unless it closed before the gateway went live (the first
  successful backfill) and was never handed to it: then it is counted ``untracked``, the firm's history.
- **Entry → time bill.** A gateway posting carries the external id ``psa:<entry>:v<version>``; only a bill
  still ``approved`` is live (a reversal re-marks the old version ``rejected``). A day-one bill carries no
  reference to the PSA entry (the ERP sandbox stores employee, job, date, hours and the entry's notes as
  memo); it is tied by (ERP job of the entry's project — the store's link, else the project code —, ERP
  employee with the PSA user's email, date) and compared by the summed hours of that key, so two entries
  of one person on one job and day still reconcile. Time is reconciled by the PSA's spent date: a gateway
  bill moved out of a closed period into this one (its memo says so) belongs to its entry's own period,
  and is read there by external id.
"""

from __future__ import annotations

import re
from collections import defaultdict
from decimal import Decimal
from typing import Any

from canonical.ids import canonical_id
from mutations.identity import account_id_of, project_id_of, provisioned_project_canonical_id
from mutations.reconciliation.model import (
    ENGAGEMENTS,
    HOURS,
    HOURS_DIFFER,
    NOT_POSTED,
    POSTED_NOT_APPROVED,
    PROVISIONED_NOT_WON,
    WON_NOT_PROVISIONED,
    CheckSummary,
    Mismatch,
)
from mutations.reconciliation.read import Record, Snapshot
from subgraphs.erp.wire import decimal, ref_id, text

GATEWAY_BILL = re.compile(r"^psa:(\d+):v(\d+)$")
MOVED_MARK = "its own period is closed"


class Scope:
    """Who is who across the snapshot: accounts, their ERP customers, jobs and their legal entities."""

    def __init__(self, snap: Snapshot, legal_entity: str | None) -> None:
        self.snap = snap
        self.legal_entity = legal_entity
        self.accounts = {str(a["Id"]): a for a in snap.accounts}
        self.customer_of: dict[str, str] = {}
        for crm_id, account in self.accounts.items():
            customer = snap.store.erp_customer_of.get(account_id_of(account))
            copied = account.get("ERP_Customer_Id__c")
            if customer is None and snap.owns(copied):  # the CRM's copy, if it names this ERP's customer
                customer = str(copied)
            if customer:
                self.customer_of[crm_id] = str(customer)
        self.account_of_customer = {c: a for a, c in self.customer_of.items()}
        self.jobs = {str(j["id"]): j for j in snap.jobs}

    def job_entity(self, job_id: str | None) -> str | None:
        job = self.jobs.get(job_id or "")
        if job is None:
            return None
        sub = ref_id(job, "subsidiary") or ""
        return self.snap.reference.legal_entities.get(sub)

    def wants(self, entity: str | None) -> bool:
        """A record of ``entity`` is checked: the entity asked for (any when None), booked in this ERP."""
        return (self.legal_entity is None or entity == self.legal_entity) and self.snap.books(entity)

    def reason(self, *subjects: str | None) -> str | None:
        for subject in subjects:
            if subject and subject in self.snap.store.exceptions:
                return self.snap.store.exceptions[subject]
        return None


def _won(opp: Record) -> bool:
    return opp.get("IsWon") in (True, 1, "true") or opp.get("StageName") == "Closed Won"


def check_engagements(scope: Scope) -> tuple[CheckSummary, list[Mismatch]]:
    summary = CheckSummary(ENGAGEMENTS, "crm", "erp", unit="deals")
    found: list[Mismatch] = []
    by_external = {str(j["externalid"]): j for j in scope.jobs.values() if j.get("externalid")}
    day_one: dict[str, list[Record]] = defaultdict(list)
    for candidate in scope.jobs.values():
        if not candidate.get("externalid") and ref_id(candidate, "parent"):
            day_one[str(ref_id(candidate, "parent"))].append(candidate)
    live_since = scope.snap.store.live_since
    for opp in scope.snap.opportunities:
        account = scope.accounts.get(str(opp.get("AccountId")))
        if account is None:
            continue  # another legal entity's deal (the account read is filtered by entity)
        entity = account.get("Legal_Entity__c")
        if not scope.wants(entity):
            continue  # an entity another ERP books
        crm_id = str(opp["Id"])
        job = _job_of(opp, scope.customer_of.get(str(account["Id"])), scope.jobs, by_external, day_one)
        won = _won(opp)
        amount = decimal(opp, "Amount") or Decimal(0)
        if won:
            summary.source_records += 1
            summary.source_total += 1
        if job is not None:
            summary.target_records += 1
            summary.target_total += 1
        if won and job is None:
            linked = opp.get("ERP_Project_Id__c")
            handed = linked or opp.get("Provisioning_Status__c") or crm_id in scope.snap.store.exceptions
            close = text(opp, "CloseDate") or ""
            if not handed and live_since is not None and close < live_since.isoformat():
                summary.untracked += 1
                continue
            if linked and not scope.snap.owns(str(linked)):
                summary.untracked += 1  # provisioned in the ERP that booked the entity before this one
                continue
            found.append(
                Mismatch(
                    WON_NOT_PROVISIONED,
                    provisioned_project_canonical_id(crm_id),
                    entity,
                    crm_id=crm_id,
                    erp_id=str(linked) if linked else None,
                    expected="Closed Won",
                    actual=None,
                    currency=opp.get("CurrencyIsoCode"),
                    reason=scope.reason(crm_id),
                    detail=(
                        f"{opp.get('Name')} ({amount}) closed won on {close}: "
                        + (f"ERP job {linked} no longer exists" if linked else "no ERP job")
                    ),
                )
            )
        elif job is not None and not won:
            found.append(
                Mismatch(
                    PROVISIONED_NOT_WON,
                    project_id_of(job),
                    entity,
                    crm_id=crm_id,
                    erp_id=str(job["id"]),
                    expected=str(opp.get("StageName")),
                    actual=str(job.get("entityid") or job["id"]),
                    reason=scope.reason(crm_id),
                    detail=f"ERP job {job.get('entityid')} exists for a deal at stage {opp.get('StageName')}",
                )
            )
    summary.mismatches = len(found)
    return summary, found


def _job_of(
    opp: Record,
    customer: str | None,
    jobs: dict[str, Record],
    by_external: dict[str, Record],
    day_one: dict[str, list[Record]],
) -> Record | None:
    linked = opp.get("ERP_Project_Id__c")
    if linked and str(linked) in jobs:
        return jobs[str(linked)]
    provisioned = by_external.get(provisioned_project_canonical_id(str(opp["Id"])))
    if provisioned is not None:
        return provisioned
    if customer is None or not opp.get("Name"):
        return None
    prefix = f"{opp['Name']} ("
    named = [j for j in day_one.get(customer, []) if str(j.get("companyname") or "").startswith(prefix)]
    return named[0] if len(named) == 1 else None


def _hours(record: Record) -> Decimal:
    return (decimal(record, "hours") or Decimal(0)).quantize(Decimal("0.01"))


def check_hours(scope: Scope) -> tuple[CheckSummary, list[Mismatch]]:
    snap = scope.snap
    summary = CheckSummary(HOURS, "psa", "erp", unit="hours")
    found: list[Mismatch] = []
    employee_by_email = {
        str(e.get("email") or "").lower(): i for i, e in snap.reference.employees.items() if e.get("email")
    }
    employee_of_user = {
        str(u["id"]): employee_by_email.get(str(u.get("email") or "").lower()) for u in snap.users
    }
    entries: dict[str, Record] = {}
    entity_of: dict[str, str | None] = {}
    job_of: dict[str, str | None] = {}
    job_by_code = {str(j["entityid"]): i for i, j in scope.jobs.items() if j.get("entityid")}
    for e in snap.entries:
        if str(e["project"]["id"]) in snap.store.elsewhere:
            continue  # a project another ERP books: its time is that ERP's to hold
        # The store's link (backfill, provisioning), else the project code (backfill's own rule).
        job = snap.store.erp_job_of_psa_project.get(str(e["project"]["id"])) or job_by_code.get(
            str(e["project"].get("code") or "")
        )
        entity = scope.job_entity(job)
        if scope.wants(entity):
            entries[str(e["id"])] = e
            entity_of[str(e["id"])], job_of[str(e["id"])] = entity, job
    gateway: dict[str, list[Record]] = defaultdict(list)
    day_one: dict[tuple[str | None, str | None, str], list[Record]] = defaultdict(list)
    seen: set[str] = set()
    for bill in [*snap.time_bills, *snap.extra_bills]:
        if str(bill["id"]) in seen or text(bill, "approvalstatus") != "approved":
            continue
        seen.add(str(bill["id"]))
        job = ref_id(bill, "customer")
        match = GATEWAY_BILL.match(text(bill, "externalid") or "")
        if match is not None:
            entry_id = match.group(1)
            if entry_id in entries:
                gateway[entry_id].append(bill)
            elif scope.wants(scope.job_entity(job)) and MOVED_MARK not in (text(bill, "memo") or ""):
                summary.target_records += 1
                summary.target_total += _hours(bill)
                found.append(_orphan(bill, entry_id, scope.job_entity(job), "not among the PSA's entries"))
            continue
        if scope.wants(scope.job_entity(job)):
            key = (job, ref_id(bill, "employee"), str(text(bill, "trandate"))[:10])
            day_one[key].append(bill)

    psa_keyed: dict[tuple[str | None, str | None, str], list[Record]] = defaultdict(list)
    unapproved_keyed: dict[tuple[str | None, str | None, str], list[Record]] = defaultdict(list)
    for entry_id, e in entries.items():
        approved = bool(e.get("is_closed"))
        if approved:
            summary.source_records += 1
            summary.source_total += _hours(e)
        bills = gateway.get(entry_id, [])
        for bill in bills:
            summary.target_records += 1
            summary.target_total += _hours(bill)
        key = (job_of[entry_id], employee_of_user.get(str(e["user"]["id"])), str(e["spent_date"])[:10])
        if bills and not approved:
            found.extend(
                _orphan(b, entry_id, entity_of[entry_id], "is not approved in the PSA", scope) for b in bills
            )
        elif bills:
            posted = sum((_hours(b) for b in bills), Decimal(0))
            if posted != _hours(e):
                found.append(_differ([e], bills, entity_of[entry_id], scope))
        elif approved:
            psa_keyed[key].append(e)
        else:
            unapproved_keyed[key].append(e)

    for key in sorted(set(psa_keyed) | set(day_one), key=str):
        psa_side, erp_side = psa_keyed.get(key, []), day_one.get(key, [])
        entity = scope.job_entity(key[0])
        for bill in erp_side:
            summary.target_records += 1
            summary.target_total += _hours(bill)
        if not erp_side:
            found.extend(_not_posted(e, entity_of[str(e["id"])], scope) for e in psa_side)
        elif not psa_side:
            others = unapproved_keyed.get(key, [])
            why = f"PSA entry {others[0]['id']} is not approved" if others else "no PSA entry on that day"
            found.extend(
                _orphan(b, str(others[0]["id"]) if others else None, entity, why, scope) for b in erp_side
            )
        elif sum((_hours(e) for e in psa_side), Decimal(0)) != sum((_hours(b) for b in erp_side), Decimal(0)):
            found.append(_differ(psa_side, erp_side, entity, scope))
    summary.mismatches = len(found)
    return summary, found


def _entry_id(entry_id: str | None) -> str | None:
    return None if entry_id is None else canonical_id("psa", "TimeEntry", int(entry_id))


def _not_posted(entry: Record, entity: str | None, scope: Scope) -> Mismatch:
    entry_id = str(entry["id"])
    head: dict[str, Any] = scope.snap.store.heads.get(entry_id) or {}
    code = entry["project"].get("code")
    detail = f"{_hours(entry)} h approved on {entry['spent_date']} ({code}): no ERP time bill"
    if head.get("live"):
        detail += f"; the posting ledger says {head['live']} was posted"
    return Mismatch(
        NOT_POSTED,
        _entry_id(entry_id),
        entity,
        psa_id=entry_id,
        erp_id=head.get("live"),
        expected=_hours(entry),
        actual=Decimal(0),
        reason=scope.reason(f"psa:time:{entry_id}"),
        detail=detail,
    )


def _orphan(
    bill: Record, entry_id: str | None, entity: str | None, why: str, scope: Scope | None = None
) -> Mismatch:
    return Mismatch(
        POSTED_NOT_APPROVED,
        _entry_id(entry_id),
        entity,
        psa_id=entry_id,
        erp_id=str(bill["id"]),
        expected=Decimal(0),
        actual=_hours(bill),
        reason=scope.reason(f"psa:time:{entry_id}") if scope is not None and entry_id else None,
        detail=f"ERP time bill {bill['id']} ({text(bill, 'externalid') or 'day one'}) of "
        f"{text(bill, 'trandate')}: PSA entry {entry_id or '—'} {why}",
    )


def _differ(entries: list[Record], bills: list[Record], entity: str | None, scope: Scope) -> Mismatch:
    psa_ids = ",".join(str(e["id"]) for e in entries)
    return Mismatch(
        HOURS_DIFFER,
        _entry_id(str(entries[0]["id"])) if len(entries) == 1 else None,
        entity,
        psa_id=psa_ids,
        erp_id=",".join(str(b["id"]) for b in bills),
        expected=sum((_hours(e) for e in entries), Decimal(0)),
        actual=sum((_hours(b) for b in bills), Decimal(0)),
        reason=scope.reason(*(f"psa:time:{e['id']}" for e in entries)),
        detail=f"approved in the PSA vs posted in the ERP on {entries[0]['spent_date']}",
    )
