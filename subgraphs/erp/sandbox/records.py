"""Record writes with NetSuite's business rules: required fields, references that must exist, posting
periods that must be open, closed projects, billed time, and payment/credit application to invoices.

Every write runs in one SQLite transaction, so a refusal leaves nothing half-written.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

from subgraphs.erp.sandbox.schema import TYPES, RecordType
from subgraphs.erp.sandbox.state import Body, SandboxError, Store, ref_id

APPLYING = ("customerPayment", "creditMemo")
CENT = 0.005


def invoice_status(total: float, paid: float) -> str:
    if total - paid <= CENT:
        return "paidInFull"
    return "partiallyPaid" if paid > CENT else "open"


class Records:
    def __init__(self, store: Store) -> None:
        self.store = store

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        db = self.store.db
        db.execute("BEGIN")
        try:
            yield
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # -- the three writes ------------------------------------------------------------------------------
    def create(self, type_: str, body: Body) -> int:
        spec = _spec(type_)
        external_id = _external_id(body)
        with self._transaction():
            if external_id is not None and self.store.get_by_eid(type_, external_id) is not None:
                raise SandboxError(
                    400,
                    "DUP_RCRD",
                    f"A {type_} record with externalId {external_id} exists.",
                    path="externalId",
                )
            prepared = self._prepare(spec, body, None)
            new_id = self.store.insert(type_, prepared, external_id=external_id)
            self._after_write(spec, new_id, external_id, prepared)
        return new_id

    def upsert(self, type_: str, external_id: str, body: Body) -> int:
        spec = _spec(type_)
        with self._transaction():
            existing = self.store.get_by_eid(type_, external_id)
            if existing is None:
                prepared = self._prepare(spec, body, None)
                new_id = self.store.insert(type_, prepared, external_id=external_id)
                self._after_write(spec, new_id, external_id, prepared)
                return new_id
            prepared = self._prepare(spec, body, existing.body)
            self._before_replace(spec, existing.body)
            self.store.replace(type_, existing.id, prepared, external_id)
            self._after_write(spec, existing.id, external_id, prepared)
            return existing.id

    def patch(self, type_: str, id_: int, body: Body) -> None:
        spec = _spec(type_)
        with self._transaction():
            existing = self.store.get(type_, id_)
            if existing is None:
                raise not_found(type_, id_)
            merged = {**existing.body, **{k: v for k, v in body.items() if k != "externalId"}}
            external_id = _external_id(body) or existing.external_id
            prepared = self._prepare(spec, merged, existing.body)
            self._before_replace(spec, existing.body)
            self.store.replace(type_, id_, prepared, external_id)
            self._after_write(spec, id_, external_id, prepared)

    # -- rules ---------------------------------------------------------------------------------------------
    def _prepare(self, spec: RecordType, body: Body, previous: Body | None) -> Body:
        body = copy.deepcopy({k: v for k, v in body.items() if k not in ("id", "links", "lastModifiedDate")})
        missing = [f for f in spec.required if body.get(f) in (None, "")]
        if missing:
            raise SandboxError(
                400, "USER_ERROR", f"Please enter value(s) for: {', '.join(missing)}", path=missing[0]
            )
        for field_name, targets in spec.refs.items():
            if body.get(field_name) is not None:
                self._check_ref(field_name, body[field_name], targets)
        if spec.name == "timeBill":
            self._time_bill_rules(body, previous)
        if spec.dated:
            self._check_period(body.get("tranDate"))
        if spec.name == "invoice":
            _invoice_amounts(body, previous)
        if spec.name in APPLYING:
            self._check_applications(spec, body)
        if spec.tran_type is not None and body.get("currency") is None:
            body["currency"] = self._default_currency(body)
        return body

    def _check_ref(self, field_name: str, value: object, targets: tuple[str, ...]) -> None:
        id_ = ref_id(value)
        if id_ is None or not any(self.store.exists(t, id_) for t in targets):
            shown = value.get("id") if isinstance(value, dict) else value
            raise SandboxError(
                400,
                "INVALID_FLD_VALUE",
                f"Invalid value for the field {field_name}: {shown} does not exist.",
                path=field_name,
            )

    def _check_period(self, tran_date: object) -> None:
        on = _iso_date(tran_date, "tranDate")
        period = self.store.period_for(on)
        if period is not None and period[2]:
            detail = self.store.rules.period_closed_detail.format(period=period[1], date=on)
            raise SandboxError(400, "USER_ERROR", detail, path="tranDate")

    def _time_bill_rules(self, body: Body, previous: Body | None) -> None:
        if previous is not None and previous.get("billed"):
            raise SandboxError(
                400,
                "USER_ERROR",
                "This time entry has been billed and can no longer be changed.",
                path="hours",
            )
        job = self.store.get("job", ref_id(body["customer"]) or 0)
        if job is not None and job.body.get("status") == "closed":
            detail = self.store.rules.job_closed_detail.format(job=job.body.get("entityId", job.id))
            raise SandboxError(400, "USER_ERROR", detail, path="customer")
        try:
            if float(body["hours"]) <= 0 or float(body["hours"]) > 24:
                raise ValueError
        except (TypeError, ValueError) as exc:
            raise SandboxError(
                400, "INVALID_FLD_VALUE", f"Invalid value for the field hours: {body['hours']}", path="hours"
            ) from exc
        body.setdefault("billed", False)
        body.setdefault("isBillable", True)
        body.setdefault("approvalStatus", "approved")

    def _default_currency(self, body: Body) -> Any:
        for field_name, type_ in (("job", "job"), ("entity", "customer"), ("customer", "customer")):
            record = self.store.get(type_, ref_id(body.get(field_name)) or 0)
            if record is not None and record.body.get("currency") is not None:
                return record.body["currency"]
        return {"id": "1"}

    # -- applications --------------------------------------------------------------------------------------
    def _items(self, body: Body) -> list[dict[str, Any]]:
        apply = body.get("apply") or {}
        items = apply.get("items", []) if isinstance(apply, dict) else []
        return [i for i in items if isinstance(i, dict) and i.get("apply", True)]

    def _check_applications(self, spec: RecordType, body: Body) -> None:
        for n, item in enumerate(self._items(body)):
            doc = ref_id(item.get("doc"))
            if doc is None or not self.store.exists("invoice", doc):
                raise SandboxError(
                    400,
                    "INVALID_FLD_VALUE",
                    f"Invalid value for the field doc: {item.get('doc')}",
                    path=f"apply.items[{n}].doc",
                )
        if spec.name == "creditMemo" and body.get("total") is None:
            body["total"] = round(sum(float(i.get("amount", 0)) for i in self._items(body)), 2)

    def _before_replace(self, spec: RecordType, previous: Body) -> None:
        if spec.name in APPLYING:
            for item in self._items(previous):
                self._apply(
                    ref_id(item["doc"]) or 0, -float(item.get("invoiceAmount", item.get("amount", 0)))
                )

    def _after_write(self, spec: RecordType, id_: int, external_id: str | None, body: Body) -> None:
        if spec.name not in APPLYING:
            return
        pay_currency = self.store.currency_code(ref_id(body.get("currency")))
        on = str(body["tranDate"])
        for n, item in enumerate(self._items(body)):
            doc = ref_id(item["doc"]) or 0
            invoice = self.store.get("invoice", doc)
            if invoice is None:
                continue
            inv_currency = self.store.currency_code(ref_id(invoice.body.get("currency")))
            rate = self.store.rate(pay_currency or "USD", inv_currency or "USD", on)
            if rate is None:
                raise SandboxError(
                    400,
                    "USER_ERROR",
                    f"No exchange rate from {pay_currency} to {inv_currency} on {on}.",
                    path=f"apply.items[{n}].amount",
                )
            item["invoiceAmount"] = round(float(item.get("amount", 0)) * rate, 2)
            self._apply(doc, item["invoiceAmount"], path=f"apply.items[{n}].amount")
        self.store.replace(spec.name, id_, body, external_id)

    def _apply(self, invoice_id: int, amount: float, *, path: str | None = None) -> None:
        invoice = self.store.get("invoice", invoice_id)
        if invoice is None:
            return
        total = float(invoice.body.get("total", 0))
        paid = round(float(invoice.body.get("amountPaid", 0)) + amount, 2)
        if paid - total > CENT:
            raise SandboxError(
                400,
                "USER_ERROR",
                f"The amount applied ({amount:.2f}) exceeds the amount due on invoice "
                f"{invoice.body.get('tranId', invoice_id)}.",
                path=path,
            )
        invoice.body.update(
            amountPaid=paid, amountRemaining=round(total - paid, 2), status=invoice_status(total, paid)
        )
        self.store.replace("invoice", invoice_id, invoice.body, invoice.external_id)


def _invoice_amounts(body: Body, previous: Body | None) -> None:
    if body.get("total") is None:
        items = (body.get("item") or {}).get("items", [])
        body["total"] = round(
            sum(float(i.get("amount", float(i.get("quantity", 1)) * float(i.get("rate", 0)))) for i in items),
            2,
        )
    paid = float((previous or {}).get("amountPaid", 0))
    total = float(body["total"])
    body.update(amountPaid=paid, amountRemaining=round(total - paid, 2), status=invoice_status(total, paid))
    if body.get("dueDate") is None:
        body["dueDate"] = body["tranDate"]


def _spec(type_: str) -> RecordType:
    spec = TYPES.get(type_)
    if spec is None:
        raise SandboxError(404, "INVALID_RCRD_TYPE", f"Record type '{type_}' does not exist.")
    return spec


def _external_id(body: Body) -> str | None:
    value = body.get("externalId")
    return None if value in (None, "") else str(value)


def _iso_date(value: object, path: str) -> str:
    try:
        return date.fromisoformat(str(value)).isoformat()
    except ValueError as exc:
        raise SandboxError(
            400, "INVALID_FLD_VALUE", f"Invalid value for the field {path}: {value}", path=path
        ) from exc


def not_found(type_: str, id_: object) -> SandboxError:
    return SandboxError(
        404,
        "NONEXISTENT_ID",
        f"The record instance does not exist. Provide a valid record instance ID ({type_} {id_}).",
        title="Record Not Found",
    )
