"""Account health against figures computed straight from the demo firm the sandboxes seeded from, and the
upstream cost of the health query (it must not grow with the number of accounts)."""

# ruff: noqa: E501  (GraphQL documents read best on one line)
from __future__ import annotations

from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from canonical.ids import canonical_id
from subgraphs.demo import Account as DemoAccount
from subgraphs.demo import generate_firm

FIRM = generate_firm(7, 200)

HEALTH = """
query($id: ID!) { account(id: $id) { id name erpId psaId health {
  billedToDate { amount currency } paidToDate { amount } openReceivables { amount } overdue { amount }
  aging { current { amount } days1To30 { amount } days31To60 { amount } days61To90 { amount } over90 { amount } }
  backlog { amount } marginPercent dso status reasons } } }
"""
D2 = Decimal("0.01")


def _expected(acc: DemoAccount) -> dict[str, Any]:
    as_of = FIRM.as_of
    invoices = [i for i in FIRM.invoices if i.account_index == acc.index and i.tran_date <= as_of]
    credited = sum((a for i in invoices for _e, a in i.credit_memos), Decimal(0))
    billed = sum((i.total for i in invoices), Decimal(0)) - credited
    buckets = [Decimal(0)] * 5
    for i in invoices:
        days = (as_of - i.due_date).days
        k = 0 if days <= 0 else 1 if days <= 30 else 2 if days <= 60 else 3 if days <= 90 else 4
        buckets[k] += i.amount_remaining
    remaining = sum(buckets, Decimal(0))
    codes = {p.code for p in FIRM.projects if p.account_index == acc.index}
    entries = [e for e in FIRM.time_entries if e.project_code in codes and e.spent_date <= as_of]
    revenue = sum((e.hours * e.billable_rate for e in entries if e.billable), Decimal(0))
    cost = sum((e.hours * e.cost_rate for e in entries), Decimal(0))
    won = sum(
        (o.amount for o in FIRM.opportunities if o.account_crm_id == acc.crm_id and o.stage == "Closed Won"),
        Decimal(0),
    )
    window = sum((i.total for i in invoices if i.tran_date >= as_of - timedelta(days=89)), Decimal(0))
    return {
        "billed": billed.quantize(D2),
        "paid": sum((i.amount_paid for i in invoices), Decimal(0)).quantize(D2),
        "remaining": remaining.quantize(D2),
        "overdue": sum(buckets[1:], Decimal(0)).quantize(D2),
        "buckets": [b.quantize(D2) for b in buckets],
        "backlog": max(won - billed, Decimal(0)).quantize(D2),
        "margin": None if not revenue else ((revenue - cost) / revenue * 100).quantize(D2),
        "dso": None if not window else (remaining / window * 90).quantize(Decimal("0.1"), ROUND_HALF_UP),
    }


SAMPLE = [a for a in FIRM.accounts if a.erp_customer_id and a.crm_erp_id_field][:5] + [
    a for a in FIRM.accounts if a.erp_customer_id is None
][:1]


@pytest.mark.parametrize("acc", SAMPLE, ids=lambda a: a.crm_id)
async def test_health_matches_the_firm(execute: Any, acc: DemoAccount) -> None:
    result = await execute(HEALTH, id=canonical_id("crm", "Account", acc.crm_id))
    assert result.errors is None
    h = result.data["account"]["health"]
    want = _expected(acc)

    def amount(value: dict[str, str]) -> Decimal:
        return Decimal(value["amount"])

    assert amount(h["billedToDate"]) == want["billed"]
    assert h["billedToDate"]["currency"] == acc.currency
    assert amount(h["paidToDate"]) == want["paid"]
    assert amount(h["openReceivables"]) == want["remaining"]
    assert amount(h["overdue"]) == want["overdue"]
    aging = h["aging"]
    got = [amount(aging[k]) for k in ("current", "days1To30", "days31To60", "days61To90", "over90")]
    assert got == want["buckets"]
    assert amount(h["backlog"]) == want["backlog"]
    assert (Decimal(h["marginPercent"]) if h["marginPercent"] is not None else None) == want["margin"]
    assert (Decimal(h["dso"]) if h["dso"] is not None else None) == want["dso"]
    assert h["status"] in {"GREEN", "AMBER", "RED"}
    if want["overdue"] > 0:
        assert h["status"] in {"AMBER", "RED"} and any("past due" in r for r in h["reasons"])


PAGE = """
query($first: Int!, $after: String) { accounts(first: $first, after: $after) { pageInfo { endCursor hasNextPage }
  edges { node { id health { billedToDate { amount } overdue { amount } backlog { amount } marginPercent dso status } } } } }
"""
TWO_PAGES = """
query($after: String) {
  a: accounts(first: 100) { edges { node { health { billedToDate { amount } backlog { amount } marginPercent dso status } } } }
  b: accounts(first: 100, after: $after) { edges { node { health { billedToDate { amount } backlog { amount } marginPercent dso status } } } }
}
"""


async def _requests(admins: dict[str, Any]) -> int:
    return sum([(await a.counters())["total"] for a in admins.values()])


async def test_health_cost_does_not_grow_with_accounts(execute: Any, admins: dict[str, Any]) -> None:
    warm = await execute(PAGE, first=1)  # reference data and tokens, cached by the long-lived clients
    assert warm.errors is None
    for admin in admins.values():
        await admin.reset_counters()
    ten = await execute(PAGE, first=10)
    assert ten.errors is None and len(ten.data["accounts"]["edges"]) == 10
    cost_10 = await _requests(admins)
    cursor = (await execute(PAGE, first=100)).data["accounts"]["pageInfo"]["endCursor"]
    for admin in admins.values():
        await admin.reset_counters()
    all_ = await execute(TWO_PAGES, after=cursor)
    assert all_.errors is None
    assert len(all_.data["a"]["edges"]) + len(all_.data["b"]["edges"]) == 200
    cost_200 = await _requests(admins)
    print(f"upstream requests: 10 accounts → {cost_10}, 200 accounts → {cost_200}")
    assert cost_200 <= cost_10 <= 12
