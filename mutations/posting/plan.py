"""Deciding what one entry version does to the ERP, from its head (what is live there now).

    approved, nothing live           → post        psa:<id>:v<n>
    approved, v<m> live, same content → nothing (the head moves to v<n>; e.g. only ``is_billed`` changed)
    approved, v<m> live, changed     → reverse v<m>, then post v<n>          (a correction)
    approved, v<m> live but billed   → ALREADY_BILLED, the ERP untouched
    not approved, v<m> live          → reverse v<m>                          (unapproved / rejected)
    version ≤ the head's version     → nothing (an older change arriving late)

A reversal re-upserts the old version's own record by its external id with ``approvalStatus: rejected``,
``isBillable: false`` and a memo naming why and by which version: the record stays (auditable, the
original hours and rate visible), it stops counting in approved totals and is never billed. NetSuite
refuses zero or negative hours on a time bill, which rules out a negative counter-entry. A head is
``{"version", "live" (external id or None), "body" (what was sent), "fingerprint"}``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from mutations.posting.enrich import Enriched
from mutations.posting.model import POST_TIME, Failure, Plan, PostItem, Write, external_id
from mutations.posting.validate import Posting, already_billed, billed
from subgraphs.erp.wire import Record

#: fields that identify a version rather than describe the work: left out of the content fingerprint
VERSION_FIELDS = frozenset({"externalId", "custcol_p2c_version", "custbody_p2c_version"})


def _number(value: Decimal) -> float:
    return float(value)


def _money(value: Decimal) -> float:
    return float(value.quantize(Decimal("0.01")))


def body_for(ready: Enriched, posting: Posting) -> dict[str, Any]:
    item = ready.item
    entry = item.entry
    notes = str(entry.get("notes") or "")
    if posting.moved:
        notes = (
            f"{notes} [spent {ready.spent_date.isoformat()}; posted to {posting.period.name}: "
            "its own period is closed]"
        ).strip()
    common: dict[str, Any] = {
        "externalId": external_id(item.entry_id, item.version),
        "tranDate": posting.tran_date.isoformat(),
        "isBillable": bool(entry.get("billable", True)),
        "department": {"id": ready.line.department},
        "class": {"id": ready.line.class_},
        "subsidiary": {"id": ready.subsidiary},
        "memo": notes,
        "approvalStatus": "approved",
    }
    if posting.period.erp_id is not None:
        common["postingPeriod"] = {"id": posting.period.erp_id}
    if item.spec.kind != POST_TIME:
        category = str((entry.get("expense_category") or {}).get("name") or "")
        return {
            **common,
            "entity": {"id": ready.employee},
            "job": {"id": ready.job_id},
            "total": _money(ready.amount),
            "expense": {"items": [{"category": category, "amount": _money(ready.amount), "memo": notes}]},
            "custbody_p2c_entry": item.entry_id,
            "custbody_p2c_version": item.version,
            "custbody_p2c_spent_date": ready.spent_date.isoformat(),
            "custbody_p2c_cost_center": ready.line.cost_center,
            "custbody_p2c_currency": ready.currency,
        }
    body = {
        **common,
        "employee": {"id": ready.employee},
        "customer": {"id": ready.job_id},
        "hours": _number(ready.hours),
        "item": {"id": ready.erp_item},
        "custcol_p2c_entry": item.entry_id,
        "custcol_p2c_version": item.version,
        "custcol_p2c_spent_date": ready.spent_date.isoformat(),
        "custcol_p2c_labour_category": ready.labour_category,
        "custcol_p2c_cost_center": ready.line.cost_center,
        "custcol_p2c_currency": ready.currency,
    }
    if ready.bill_rate is not None:
        body["rate"] = _number(ready.bill_rate)
    if ready.cost_rate is not None:
        body["custcol_p2c_cost_rate"] = _number(ready.cost_rate)
    if ready.erp_task is not None:
        body["projectTask"] = {"id": str(ready.erp_task.get("id"))}
    return body


def fingerprint(body: Mapping[str, Any]) -> str:
    content = {k: v for k, v in body.items() if k not in VERSION_FIELDS}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def reversal_body(head: Mapping[str, Any], why: str) -> dict[str, Any]:
    body = dict(head.get("body") or {})
    body.update(
        approvalStatus="rejected",
        isBillable=False,
        memo=f"REVERSED by the gateway: {why}. Was: {body.get('memo') or ''}".strip(),
    )
    prefix = "custcol" if "hours" in body else "custbody"
    body[f"{prefix}_p2c_reversed"] = True
    body[f"{prefix}_p2c_was_billable"] = bool((head.get("body") or {}).get("isBillable", True))
    return body


def live(head: Mapping[str, Any] | None) -> str | None:
    return None if head is None else head.get("live")


def stale(item: PostItem, head: Mapping[str, Any] | None) -> bool:
    return head is not None and head.get("version") is not None and int(head["version"]) >= item.version


def reverse_write(item: PostItem, head: Mapping[str, Any], why: str) -> Write:
    old_version = int(head["version"])
    return Write(
        item.spec.reversal_key(item.entry_id, old_version),
        "reverse",
        item.spec.record,
        str(head["live"]),
        reversal_body(head, why),
    )


def plan_unapproved(item: PostItem, head: Mapping[str, Any] | None, erp_row: Record | None) -> Plan | Failure:
    """An entry no longer approved: reverse what is live (unless it is billed)."""
    eid = live(head)
    if head is None or eid is None:
        return Plan(item, head={**(head or {}), "version": item.version, "live": None}, outcome="SKIPPED")
    if billed(erp_row):
        return already_billed(str(item.entry["project"].get("code")), item.entry_id, eid, erp_row)
    why = f"PSA entry {item.entry_id} was unapproved (v{item.version})"
    return Plan(
        item,
        [reverse_write(item, head, why)],
        head={"version": item.version, "live": None, "reversed": eid},
        outcome="REVERSED",
    )


def plan_approved(
    ready: Enriched, posting: Posting, head: Mapping[str, Any] | None, erp_row: Record | None
) -> Plan | Failure:
    item = ready.item
    body = body_for(ready, posting)
    print_ = fingerprint(body)
    eid = live(head)
    if head is not None and eid is not None and head.get("fingerprint") == print_:
        return Plan(item, head={**head, "version": item.version}, outcome="UNCHANGED")
    if eid is not None and billed(erp_row):
        return already_billed(ready.project_code, item.entry_id, eid, erp_row)
    writes: list[Write] = []
    if head is not None and eid is not None:
        writes.append(reverse_write(item, head, f"superseded by PSA entry {item.entry_id} v{item.version}"))
    if item.spec.kind == POST_TIME and ready.hours <= 0:  # edited down to nothing: only the reversal
        return Plan(item, writes, head={"version": item.version, "live": None}, outcome="REVERSED")
    writes.append(Write(item.key, "post", item.spec.record, str(body["externalId"]), body))
    new_head = {"version": item.version, "live": body["externalId"], "body": body, "fingerprint": print_}
    return Plan(item, writes, head=new_head, outcome="CORRECTED" if eid is not None else "POSTED")
