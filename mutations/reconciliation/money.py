"""Invoices (ERP ↔ CRM ``Invoice__c`` and ``Account.Billed_To_Date__c``) and receivables (ERP amount
remaining ↔ ``Account.Open_Receivables__c``): pure, no I/O.

The ERP owns both; the CRM holds what the gateway's billing write-back (``mutations.billing``) copied there.
So the gateway is answerable for an ERP invoice once its billing poller has seen it (the store keeps the
last state seen, step ``erp:invoice:<id>:last``): one it has not seen yet is ``NOT_YET_SYNCED`` (counted),
one it has seen but the CRM lacks is ``MISSING_IN_CRM``. A CRM billing field never written (null) while the
ERP has something to say is ``NOT_YET_SYNCED`` too; a written one that disagrees is a mismatch.

The account figures are point-in-time, not per period: billed to date and open receivables as of
``as_of`` (invoices dated up to it, drafts and voids left out, credit memos subtracted from billed), in the
CRM account's currency — the same formulas (``canonical.analytics``) the write-back computes them with.

Reasons: an open exception whose subject is the invoice's canonical id; ``PENDING_SYNC`` when the ERP's
invoice differs from the state the poller last saw (the next round writes it back).
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from mutations.identity import account_id_of
from mutations.reconciliation.model import (
    AMOUNT_DIFFERS,
    INVOICES,
    MISSING_IN_CRM,
    MISSING_IN_ERP,
    PENDING_SYNC,
    RECEIVABLES,
    RECEIVABLES_DIFFER,
    CheckSummary,
    Mismatch,
)
from mutations.reconciliation.read import Record
from mutations.reconciliation.work import Scope
from subgraphs.erp.mapping import record_id
from subgraphs.erp.wire import decimal, ref_id, text

CENT = Decimal("0.01")


def _amount(record: Record, name: str) -> Decimal | None:
    value = decimal(record, name)
    return None if value is None else value.quantize(CENT)


def check_invoices(scope: Scope) -> tuple[CheckSummary, list[Mismatch], dict[str, str]]:
    """The summary, the mismatches, and ``{customer: why}`` of customers with a pending ERP change."""
    snap = scope.snap
    summary = CheckSummary(INVOICES, "erp", "crm")
    found: list[Mismatch] = []
    pending: dict[str, str] = {}
    by_p2c = {str(r["P2C_Id__c"]): r for r in snap.crm_invoices if r.get("P2C_Id__c")}
    by_erp = {str(r["ERP_Invoice_Id__c"]): r for r in snap.crm_invoices if r.get("ERP_Invoice_Id__c")}
    matched: set[str] = set()
    per_customer: dict[str, Mismatch] = {}
    for inv in snap.erp_invoices:
        erp_id = str(inv["id"])
        cid = record_id(inv, "invoice")
        customer = ref_id(inv, "entity") or ""
        account = scope.account_of_customer.get(customer)
        currency = snap.reference.currency_code(ref_id(inv, "currency")) or "USD"
        entity = snap.reference.legal_entities.get(ref_id(inv, "subsidiary") or "")
        if not scope.wants(entity):
            continue  # an entity another ERP books (read when no entity was asked for)
        expected = _amount(inv, "foreigntotal") or Decimal(0)
        summary.source_records += 1
        summary.add_total("source", expected, currency)
        seen = erp_id in snap.store.invoice_seen
        changed = seen and snap.store.invoice_seen[erp_id] != snap.fingerprint(inv)
        reason = scope.reason(cid) or (PENDING_SYNC if changed else None)
        if changed:
            pending[customer] = f"invoice {text(inv, 'tranid')} changed in the ERP since the last write-back"
        crm = by_p2c.get(cid) or by_erp.get(erp_id)
        if crm is None:
            if not seen:
                summary.not_yet_synced += 1
                continue
            found.append(
                Mismatch(
                    MISSING_IN_CRM, cid, entity, crm_id=account, erp_id=erp_id, expected=expected,
                    currency=currency, reason=reason,
                    detail=f"ERP invoice {text(inv, 'tranid')} of {text(inv, 'trandate')} has no Invoice__c",
                )
            )  # fmt: skip
            continue
        matched.add(str(crm["Id"]))
        actual = _amount(crm, "Amount__c")
        summary.target_records += 1
        summary.add_total("target", actual or Decimal(0), str(crm.get("CurrencyIsoCode") or currency))
        if actual != expected:
            mismatch = Mismatch(
                AMOUNT_DIFFERS, cid, entity, crm_id=str(crm["Id"]), erp_id=erp_id, expected=expected,
                actual=actual, currency=currency, reason=reason,
                detail=f"invoice {text(inv, 'tranid')}: ERP total vs CRM Invoice__c.Amount__c",
            )  # fmt: skip
            found.append(mismatch)
            per_customer.setdefault(customer, mismatch)
    for crm in snap.crm_invoices:
        entity = crm.get("Legal_Entity__c")
        if str(crm["Id"]) in matched or not scope.wants(entity):
            continue
        if snap.foreign_invoice(crm):
            summary.untracked += 1  # the ERP that booked the entity before this one issued it
            continue
        summary.target_records += 1
        summary.add_total("target", _amount(crm, "Amount__c") or Decimal(0), str(crm.get("CurrencyIsoCode")))
        found.append(
            Mismatch(
                MISSING_IN_ERP, crm.get("P2C_Id__c"), entity, crm_id=str(crm["Id"]),
                erp_id=crm.get("ERP_Invoice_Id__c"), actual=_amount(crm, "Amount__c"),
                currency=crm.get("CurrencyIsoCode"), reason=scope.reason(crm.get("P2C_Id__c")),
                detail=f"CRM Invoice__c {crm.get('Name')} has no ERP invoice in the period",
            )
        )  # fmt: skip
    found.extend(_billed_to_date(scope, summary, per_customer, pending))
    summary.mismatches = len(found)
    return summary, found, pending


def erp_figures(scope: Scope) -> dict[tuple[str, str], tuple[Decimal, Decimal]]:
    """``{(customer, currency): (billed to date, open receivables)}`` from the grouped totals."""
    figures: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
    for row in scope.snap.totals:
        currency = scope.snap.reference.currency_code(ref_id(row, "currency")) or "USD"
        slot = figures[(str(ref_id(row, "entity")), currency)]
        total = decimal(row, "total") or Decimal(0)
        if text(row, "type") == "CustCred":
            slot[0] -= abs(total)
        else:
            slot[0] += total
            slot[1] += decimal(row, "remaining") or Decimal(0)
    return {k: (v[0].quantize(CENT), v[1].quantize(CENT)) for k, v in figures.items()}


def _accounts(scope: Scope) -> list[tuple[Record, str, str]]:
    """``(CRM account, ERP customer, currency)`` of the linked accounts in scope."""
    out = []
    for crm_id, account in scope.accounts.items():
        customer = scope.customer_of.get(crm_id)
        if customer is not None and scope.wants(account.get("Legal_Entity__c")):
            out.append((account, customer, str(account.get("CurrencyIsoCode") or "USD")))
    return out


def _billed_to_date(
    scope: Scope, summary: CheckSummary, per_customer: dict[str, Mismatch], pending: dict[str, str]
) -> list[Mismatch]:
    found: list[Mismatch] = []
    figures = erp_figures(scope)
    for account, customer, currency in _accounts(scope):
        erp_billed = figures.get((customer, currency), (Decimal(0), Decimal(0)))[0]
        crm_billed = _amount(account, "Billed_To_Date__c")
        if crm_billed is None:
            summary.not_yet_synced += erp_billed != 0
            continue
        if crm_billed == erp_billed:
            continue
        note = f"account billed to date: ERP {erp_billed} vs CRM {crm_billed} {currency}"
        if customer in per_customer:
            per_customer[customer].detail += f"; {note}"
            continue
        found.append(
            Mismatch(
                AMOUNT_DIFFERS, account_id_of(account), account.get("Legal_Entity__c"),
                crm_id=str(account["Id"]), erp_id=customer, expected=erp_billed, actual=crm_billed,
                currency=currency, reason=PENDING_SYNC if customer in pending else None,
                detail=f"Account.Billed_To_Date__c of {account.get('Name')}: {note}",
            )
        )  # fmt: skip
    return found


def check_receivables(scope: Scope, pending: dict[str, str]) -> tuple[CheckSummary, list[Mismatch]]:
    summary = CheckSummary(RECEIVABLES, "erp", "crm")
    found: list[Mismatch] = []
    figures = erp_figures(scope)
    for account, customer, currency in _accounts(scope):
        erp_open = figures.get((customer, currency), (Decimal(0), Decimal(0)))[1]
        crm_open = _amount(account, "Open_Receivables__c")
        summary.source_records += 1
        summary.add_total("source", erp_open, currency)
        if crm_open is None:
            summary.not_yet_synced += erp_open != 0
            continue
        summary.target_records += 1
        summary.add_total("target", crm_open, currency)
        if crm_open != erp_open:
            found.append(
                Mismatch(
                    RECEIVABLES_DIFFER, account_id_of(account),
                    account.get("Legal_Entity__c"), crm_id=str(account["Id"]), erp_id=customer,
                    expected=erp_open, actual=crm_open, currency=currency,
                    reason=PENDING_SYNC if customer in pending else None,
                    detail=pending.get(customer)
                    or f"Account.Open_Receivables__c of {account.get('Name')} vs the ERP's amount remaining",
                )
            )  # fmt: skip
    summary.mismatches = len(found)
    return summary, found
