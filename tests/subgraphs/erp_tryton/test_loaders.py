"""Loaders over a real trytond: one search_read per batch, results in key order, None for unknown ids."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from aiodataloader import DataLoader

from canonical.enums import BillingMethod, InvoiceStatus
from subgraphs.erp_tryton.loaders import invoices_by_party_loader, parties_loader, projects_loader
from tests.subgraphs.erp_tryton.tryton_support import Server


async def test_parties_and_projects_load_in_one_call_per_batch(tryton: Server) -> None:
    async with tryton.client() as client:
        parties = await client.create("party.party", [
            {"name": f"Loader {n}", "code": f"acct-{n}", "addresses": [["create", [{"street": f"{n} Rd"}]]]}
            for n in range(3)
        ])
        product = (await client.products())["CONSULT-SR"]["id"]
        (project,) = await client.create("project.work", [{
            "name": "P2C-ABCD1234 Rollout", "type": "project", "party": parties[0], "product": product,
            "project_invoice_method": "effort", "list_price": Decimal("200"),
            "effort_duration": timedelta(hours=10), "comment": "p2c:proj-1",
            "timesheet_available": True, "timesheet_end_date": date(2027, 1, 31),
        }])
        accounts = DataLoader(parties_loader(client, legal_entity="EU01", currency="EUR"))
        before = client.calls
        loaded = await accounts.load_many([str(parties[2]), "999999", str(parties[0])])
        assert client.calls == before + 1
        projects = DataLoader(projects_loader(client, legal_entity="EU01"))
        (found,) = await projects.load_many([str(project)])

    assert [a.id if a else None for a in loaded] == ["acct-2", None, "acct-0"]
    assert loaded[0] is not None and loaded[0].billing_address is not None
    assert loaded[0].billing_address.street == "2 Rd" and loaded[0].erp_id == str(parties[2])
    assert found is not None
    assert (found.id, found.code, found.name) == ("proj-1", "P2C-ABCD1234", "Rollout")
    assert found.account_id == "acct-0"
    assert found.billing_method is BillingMethod.FIXED_FEE and found.budget is not None
    assert found.budget.amount == Decimal("2000.00") and found.end_date == date(2027, 1, 31)


async def test_invoices_by_party_leave_drafts_out(tryton: Server) -> None:
    async with tryton.client() as client:
        (party,) = await client.create("party.party", [{"name": "Invoiced",
                                                        "addresses": [["create", [{"street": "x"}]]]}])
        product = (await client.products())["PM"]["id"]
        (project,) = await client.create("project.work", [{
            "name": "Billed", "type": "project", "party": party, "product": product,
            "project_invoice_method": "timesheet", "list_price": Decimal("100"), "timesheet_available": True,
        }])
        (work,) = (await client.read("project.work", [project], ["timesheet_works"]))[0]["timesheet_works"]
        employee = next(iter((await client.employees()).values()))
        await client.create("timesheet.line", [{"work": work, "employee": employee, "date": date(2026, 11, 2),
                                                "duration": timedelta(hours=2)}])
        await client.button("project.work", "invoice", [project])
        loader = DataLoader(invoices_by_party_loader(client, legal_entity="EU01"))
        assert await loader.load(str(party)) == []  # still a draft
        (invoice,) = await client.search_read("account.invoice", [["party", "=", party]], ["id"])
        await client.write("account.invoice", [invoice["id"]], {"invoice_date": date(2026, 11, 30)})
        await client.button("account.invoice", "post", [invoice["id"]])
        (issued,) = await DataLoader(invoices_by_party_loader(client, legal_entity="EU01")).load(str(party))

    assert issued.status is InvoiceStatus.OPEN and issued.total.amount == Decimal("200.00")
    assert issued.total.currency == "EUR" and issued.legal_entity == "EU01"
