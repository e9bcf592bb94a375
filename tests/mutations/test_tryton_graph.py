"""Account health in the graph for an account booked in Tryton: the same query, receivables from Tryton."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal

import pytest

from mutations.identity import account_canonical_id
from mutations.provision import provision_engagement
from resolvers.context import build_context
from resolvers.schema import build_schema
from store.repositories import CrossReferenceRepo
from tests.mutations.conftest import ADMIN, Flow
from tests.subgraphs.erp_tryton.tryton_support import Server, tryton_server

TM = "006000000000032AAA"  # account 10, EU01
HEALTH = """
query($id: ID!) { account(id: $id) { id name health {
  billedToDate { amount currency } paidToDate { amount } openReceivables { amount } overdue { amount } } } }
"""


@pytest.fixture(scope="module")
def tryton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with tryton_server(tmp_path_factory.mktemp("tryton")) as server:
        yield server


async def test_health_of_a_tryton_account_comes_from_tryton(flow: Flow, tryton: Server) -> None:
    tryton.reset()
    async with tryton.client() as client:
        deps = dataclasses.replace(flow.deps, tryton=client, erp_by_entity={"EU01": "tryton"})
        await deps.crm.update("Opportunity", TM, {"StageName": "Closed Won"})
        result = await provision_engagement(deps, TM, principal=ADMIN, correlation_id="c-graph")
        assert result.status == "PROVISIONED", result
        project = int(str(result.erp_job_id))
        (row,) = await client.read("project.work", [project], ["timesheet_works", "timesheet_start_date",
                                                               "list_price"])
        employee = next(iter((await client.employees()).values()))
        await client.create("timesheet.line", [{"work": row["timesheet_works"][0], "employee": employee,
                                                "date": row["timesheet_start_date"],
                                                "duration": timedelta(hours=2)}])
        await client.button("project.work", "invoice", [project])
        (invoice,) = await client.search_read("account.invoice", [], ["id"])
        await client.write("account.invoice", [invoice["id"]], {"invoice_date": date(2026, 11, 30)})
        await client.button("account.invoice", "post", [invoice["id"]])
        total = (2 * row["list_price"]).quantize(Decimal("0.01"))

        context = build_context(
            principal=ADMIN, crm=deps.crm, psa=deps.psa, erp=deps.erp, sessionmaker=deps.sessionmaker,
            as_of=date(2026, 12, 27), tryton=client, erp_by_entity=deps.erp_by_entity,
        )
        crm_account = flow.firm.accounts[10].crm_id
        account_id = account_canonical_id(crm_account)
        async with deps.sessionmaker.begin() as session:  # what backfill links on day one
            if not (await CrossReferenceRepo(session).system_ids_for("crm", [account_id])):
                await CrossReferenceRepo(session).link(account_id, "Account", "crm", crm_account)
        calls = client.calls
        answer = await build_schema().execute(
            HEALTH, variable_values={"id": account_id}, context_value=context
        )

    assert answer.errors is None, answer.errors
    health = answer.data["account"]["health"]
    assert health["billedToDate"] == {"amount": str(total), "currency": "EUR"}
    assert Decimal(health["openReceivables"]["amount"]) == total
    assert Decimal(health["paidToDate"]["amount"]) == 0
    assert Decimal(health["overdue"]["amount"]) == 0  # NET30 from 30 Nov: due 30 Dec
    assert client.calls == calls + 1  # one Tryton read for the account's receivables
