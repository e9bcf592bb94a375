"""Contract, tasks, milestones, expenses, payments, credit memos and posting status — values against the
demo firm's raw data, request counts bounded by the query's shape, the naive (unbatched) mode, scoping."""

# ruff: noqa: E501  (GraphQL documents read best on one line)
from __future__ import annotations

from decimal import Decimal
from typing import Any

from canonical.ids import canonical_id
from canonical.principal import Principal
from resolvers.context import build_context
from subgraphs.demo import LABOUR, generate_firm

FIRM = generate_firm(7, 200)
US_ONLY = Principal("us", roles=frozenset({"finance"}), legal_entities=frozenset({"US01"}))
SUITEQL = "POST /services/rest/query/v1/suiteql"
PROJECTS = {canonical_id("erp", "job", str(p.erp_job_id)): p for p in FIRM.projects}


def _money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01')):f}"


async def _counted(admins: dict[str, Any], run: Any) -> tuple[Any, dict[str, dict[str, int]]]:
    for admin in admins.values():
        await admin.reset_counters()
    result = await run()
    assert result.errors is None, result.errors
    return result, {name: (await a.counters())["by_endpoint"] for name, a in admins.items()}


DELIVERY = """query($n: Int!) { projects(first: $n) { edges { node { id code billingMethod
  tasks { name status erpId } milestones { name amount { amount } status erpId }
  contract { id legalEntity billingMethod value { amount currency } billingSchedule { method inArrears events { name date amount { amount } } } rateCard { labourCategory rate { amount } } }
  expenses { spentDate amount { amount } category psaId }
  invoices { number amountPaid { amount } payments { erpId amount { amount } applications { invoiceId amount { amount } } } creditMemos { erpId amount { amount } invoiceId } } } } } }"""


async def test_delivery_fields_match_the_demo_firm(execute: Any) -> None:
    result = await execute(DELIVERY, n=40)
    assert result.errors is None, result.errors
    nodes = [e["node"] for e in result.data["projects"]["edges"]]
    invoices = {i.number: i for i in FIRM.invoices}
    checked_payments = 0
    for node in nodes:
        p = PROJECTS[node["id"]]
        assert [(t["name"], t["erpId"]) for t in node["tasks"]] == [
            (t.name, str(t.erp_task_id)) for t in p.tasks
        ]
        assert [(m["name"], m["amount"]["amount"], m["erpId"]) for m in node["milestones"]] == [
            (m.name, _money(m.amount), str(m.erp_id)) for m in p.milestones
        ]
        contract = node["contract"]
        assert contract["id"] == node["id"]  # a day-one contract is addressed by its project's id
        assert contract["billingMethod"] == p.billing_method
        assert contract["value"] == {"amount": _money(p.budget_amount), "currency": p.currency}
        schedule = contract["billingSchedule"]
        if p.billing_method == "TIME_AND_MATERIALS":
            assert schedule == {"method": "TIME_AND_MATERIALS", "inArrears": True, "events": []}
            assert {(r["labourCategory"], r["rate"]["amount"]) for r in contract["rateCard"]} == {
                (c, _money(bill)) for c, (bill, _cost) in LABOUR.items()
            }
        else:
            assert schedule["method"] == p.billing_method
            assert [(e["name"], e["date"]) for e in schedule["events"]] == [
                (m.name, m.due_date.isoformat()) for m in p.milestones
            ]
            assert contract["rateCard"] == []
        expected = sorted(
            (x for x in FIRM.expenses if x.project_code == p.code and x.spent_date <= FIRM.as_of),
            key=lambda x: (x.spent_date, x.psa_id),
        )
        assert [(x["psaId"], x["amount"]["amount"], x["category"]) for x in node["expenses"]] == [
            (str(x.psa_id), _money(x.total_cost), x.category) for x in expected
        ]
        for inv in node["invoices"]:
            raw = invoices[inv["number"]]
            assert [(x["erpId"], x["amount"]["amount"]) for x in inv["payments"]] == [
                (str(x.erp_id), _money(x.amount)) for x in raw.payments
            ]
            assert [(x["erpId"], x["amount"]["amount"]) for x in inv["creditMemos"]] == [
                (str(i), _money(a)) for i, a in raw.credit_memos
            ]
            checked_payments += len(inv["payments"])
    assert checked_payments > 5


async def test_credit_memo_is_found_on_its_invoice(execute: Any) -> None:
    raw = next(i for i in FIRM.invoices if i.credit_memos)
    project = FIRM.project(raw.project_code)
    query = """query($id: ID!) { project(id: $id) { invoices { number creditMemos { erpId amount { amount } invoiceId } } } }"""
    result = await execute(query, id=canonical_id("erp", "job", str(project.erp_job_id)))
    assert result.errors is None, result.errors
    found = next(i for i in result.data["project"]["invoices"] if i["number"] == raw.number)
    memo_id, amount = raw.credit_memos[0]
    assert found["creditMemos"] == [
        {
            "erpId": str(memo_id),
            "amount": {"amount": _money(amount)},
            "invoiceId": canonical_id("erp", "invoice", str(raw.erp_id)),
        }
    ]


BOUNDED = """query($n: Int!) { projects(first: $n) { totalCount edges { node { tasks { name } milestones { name status } contract { id value { amount } billingMethod billingSchedule { events { name } } rateCard { labourCategory } } expenses { amount { amount } } invoices { number total { amount } payments { erpId applications { amount { amount } } } creditMemos { erpId } } } } } }"""


async def test_requests_are_bounded_by_the_query_shape(execute: Any, admins: dict[str, Any]) -> None:
    await execute("{ projects(first: 1) { totalCount } }")  # token and reference data, cached per client
    _r, small = await _counted(admins, lambda: execute(BOUNDED, n=5))
    _r, large = await _counted(admins, lambda: execute(BOUNDED, n=50))
    upstream_small = {k: v for k, v in small.items() if v}
    upstream_large = {k: v for k, v in large.items() if v}
    print(f"upstream requests: 5 projects → {upstream_small}, 50 projects → {upstream_large}")
    assert upstream_small == upstream_large  # sublists included: no GET per schedule or payment
    assert set(large["erp"]) == {SUITEQL}
    assert large["erp"][SUITEQL] <= 9


async def test_lists_are_paged_and_counted_by_the_erp(execute: Any, admins: dict[str, Any]) -> None:
    query = """query($after: String) { projects(first: 10, after: $after, filter: {status: ACTIVE}) { totalCount pageInfo { hasNextPage endCursor } edges { node { id status } } } }"""
    await execute("{ projects(first: 1) { totalCount } }")
    active = [p for p in FIRM.projects if p.is_active]
    first, counts = await _counted(admins, lambda: execute(query))
    assert counts["erp"] == {SUITEQL: 1}  # page and total in one read
    page = first.data["projects"]
    assert page["totalCount"] == len(active) and page["pageInfo"]["hasNextPage"]
    ids, after = [], None
    while True:
        page = (await execute(query, after=after)).data["projects"]
        assert page["totalCount"] == len(active)
        ids += [e["node"]["id"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert ids == [canonical_id("erp", "job", str(p.erp_job_id)) for p in active]
    invoice = next(i for i in FIRM.invoices if i.payments)
    reps = [{"__typename": "Invoice", "id": canonical_id("erp", "invoice", str(invoice.erp_id))}]
    found = await execute(
        """query($r: [_Any!]!) { _entities(representations: $r) { ... on Invoice { number } } }""", r=reps
    )
    assert found.data["_entities"] == [{"number": invoice.number}]


async def test_naive_mode_costs_more_and_grows_with_rows(
    schema: Any, make_context: Any, admins: dict[str, Any]
) -> None:
    def run(n: int, batching: bool) -> Any:
        base = make_context()
        ctx = build_context(
            principal=base.principal,
            crm=base.crm,
            psa=base.psa,
            erp=base.erp,
            sessionmaker=base.sessionmaker,
            correlation_id="naive",
            as_of=base.as_of,
            batching=batching,
        )
        return lambda: schema.execute(BOUNDED, variable_values={"n": n}, context_value=ctx)

    await run(1, True)()

    def total(counts: dict[str, dict[str, int]]) -> int:
        return sum(v for system in counts.values() for v in system.values())

    batched = [total((await _counted(admins, run(n, True)))[1]) for n in (5, 20)]
    naive = [total((await _counted(admins, run(n, False)))[1]) for n in (5, 20)]
    assert naive[0] > batched[0] and naive[1] > batched[1]
    assert naive[1] > naive[0] + 15 * 3  # tasks, contract and invoices: at least one call per row each


async def test_scoping_holds_through_nested_fields(execute: Any) -> None:
    query = """{ projects(first: 100) { edges { node { legalEntity contract { legalEntity } invoices { legalEntity payments { id } } } } } }"""
    result = await execute(query, principal=US_ONLY)
    assert result.errors is None, result.errors
    nodes = [e["node"] for e in result.data["projects"]["edges"]]
    assert nodes
    assert {n["legalEntity"] for n in nodes} | {n["contract"]["legalEntity"] for n in nodes} == {"US01"}
    assert {i["legalEntity"] for n in nodes for i in n["invoices"]} <= {"US01"}
    eu = next(p for p in FIRM.projects if p.currency == "EUR")
    us = next(p for p in FIRM.projects if FIRM.accounts[p.account_index].legal_entity == "US01")
    reps = [
        {"__typename": t, "id": canonical_id("erp", "job", str(p.erp_job_id))}
        for t in ("Contract", "Project")
        for p in (eu, us)
    ]
    entities = """query($r: [_Any!]!) { _entities(representations: $r) { ... on Contract { id legalEntity } ... on Project { id code } } }"""
    found = (await execute(entities, principal=US_ONLY, r=reps)).data["_entities"]
    us_id = canonical_id("erp", "job", str(us.erp_job_id))
    assert found == [None, {"id": us_id, "legalEntity": "US01"}, None, {"id": us_id, "code": us.code}]


async def test_posting_status_reads_the_erp_and_the_exception_queue(execute: Any, make_context: Any) -> None:
    from store.repositories.exceptions import ExceptionRepo

    project = next(p for p in FIRM.projects if p.billing_method == "FIXED_FEE")
    pending = [e for e in FIRM.time_entries if e.project_code == project.code and e.erp_time_bill_id is None]
    posted, failed = pending[0], pending[1]
    posted_id = canonical_id("psa", "TimeEntry", str(posted.psa_id))
    failed_id = canonical_id("psa", "TimeEntry", str(failed.psa_id))
    ctx = make_context()
    employee = FIRM.employees[posted.employee_index]
    await ctx.erp.upsert(
        "timeBill",
        posted_id,
        {
            "employee": {"id": str(employee.erp_employee_id)},
            "customer": {"id": str(project.erp_job_id)},
            "tranDate": posted.spent_date.isoformat(),
            "hours": float(posted.hours),
            "isBillable": True,
        },
    )
    async with ctx.sessionmaker.begin() as session:
        await ExceptionRepo(session).open(
            flow="post_time", reason_code="PERIOD_CLOSED", subject=failed_id, payload={}
        )
    query = """query($id: ID!) { project(id: $id) { timeEntries { id postingStatus } } }"""
    result = await execute(query, id=canonical_id("erp", "job", str(project.erp_job_id)))
    assert result.errors is None, result.errors
    status = {e["id"]: e["postingStatus"] for e in result.data["project"]["timeEntries"]}
    assert status[posted_id] == "POSTED"
    assert status[failed_id] == "EXCEPTION"
