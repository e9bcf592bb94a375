"""The Tryton connector against a real trytond over HTTP: session, typed values, refusals, paging."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from canonical.errors import UpstreamAuthFailed
from subgraphs.erp_tryton.errors import TrytonRejected
from subgraphs.erp_tryton.mapping import parse_reference, reference, reference_domain
from subgraphs.erp_tryton.wire import decode, encode
from tests.subgraphs.erp_tryton.tryton_support import Server


async def _project(server: Server, name: str, end: date) -> tuple[int, int, int]:
    """A T&M project with one task → (project id, task's timesheet work id, a party id)."""
    async with server.client() as client:
        (party,) = await client.create(
            "party.party", [{"name": f"{name} GmbH", "addresses": [["create", [{"street": "1 Ring"}]]]}]
        )
        products = await client.products()
        (project,) = await client.create("project.work", [{
            "name": name, "type": "project", "party": party, "project_invoice_method": "timesheet",
            "product": products["CONSULT-JR"]["id"], "list_price": Decimal("160.00"),
            "timesheet_available": True, "timesheet_end_date": end,
        }])
        (row,) = await client.read("project.work", [project], ["timesheet_works"])
        return project, int(row["timesheet_works"][0]), party


@given(
    st.one_of(
        st.dates(),
        st.decimals(allow_nan=False, allow_infinity=False, places=2),
        st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)).map(
            lambda d: timedelta(seconds=round(d.total_seconds()))
        ),
        st.text(max_size=20),
        st.integers(),
    )
)
def test_typed_values_round_trip(value: object) -> None:
    assert decode(encode({"v": [value]})) == {"v": [value]}


async def test_typed_values_reach_tryton_and_come_back(tryton: Server) -> None:
    project, work, _ = await _project(tryton, "Typed values", date(2026, 12, 31))
    employee = next(iter((await tryton.client().employees()).values()))
    async with tryton.client() as client:
        (line,) = await client.create("timesheet.line", [{
            "work": work, "employee": employee, "date": date(2026, 11, 3),
            "duration": timedelta(hours=2, minutes=30), "description": "psa:1:v1",
        }])
        (row,) = await client.read("timesheet.line", [line], ["date", "duration", "description"])
        (totals,) = await client.read("project.work", [project], ["amount_to_invoice"])
    assert row["date"] == date(2026, 11, 3)
    assert row["duration"] == timedelta(hours=2, minutes=30)
    assert totals["amount_to_invoice"] == Decimal("400.00")  # 2.5 h × 160.00


async def test_refusals_carry_reason_codes(tryton: Server) -> None:
    project, work, _ = await _project(tryton, "Refusals", date(2026, 11, 30))
    employee = next(iter((await tryton.client().employees()).values()))
    async with tryton.client() as client:
        with pytest.raises(TrytonRejected) as after:
            await client.create("timesheet.line", [{
                "work": work, "employee": employee, "date": date(2026, 12, 2), "duration": timedelta(hours=1),
            }])
        (line,) = await client.create("timesheet.line", [{
            "work": work, "employee": employee, "date": date(2026, 11, 2), "duration": timedelta(hours=1),
        }])
        await client.button("project.work", "invoice", [project])
        with pytest.raises(TrytonRejected) as billed:
            await client.write("timesheet.line", [line], {"duration": timedelta(hours=3)})
        with pytest.raises(TrytonRejected) as nothing:
            await client.button("project.work", "invoice", [project])
    assert after.value.reason == "AFTER_END_DATE"
    assert after.value.as_extensions()["code"] == "UPSTREAM_REJECTED"
    assert billed.value.reason == "ALREADY_BILLED"
    assert "invoiced" in billed.value.message
    assert nothing.value.reason == "NOTHING_TO_INVOICE"


async def test_unknown_method_and_model_are_clear_errors(tryton: Server) -> None:
    async with tryton.client() as client:
        with pytest.raises(TrytonRejected) as method:
            await client.model("party.party", "frobnicate", [1])
        with pytest.raises(TrytonRejected) as model:
            await client.read("no.such.model", [1], ["id"])
    assert (method.value.reason, method.value.status) == ("UNKNOWN_METHOD", 403)
    assert model.value.reason == "UNKNOWN_METHOD"
    assert "no model or field 'no.such.model'" in model.value.message


async def test_expired_session_logs_in_again_once(tryton: Server) -> None:
    async with tryton.client() as client:
        assert await client.ping()
        assert client.auth is not None
        client.auth.forget()  # as if the server had expired our session
        assert await client.ping()
        assert client.auth.logins == 2


async def test_wrong_password_is_an_auth_failure(tryton: Server) -> None:
    async with tryton.client(password=SecretStr("wrong")) as client:
        with pytest.raises(UpstreamAuthFailed) as failed:
            await client.ping()
    assert failed.value.code == "UPSTREAM_AUTH_FAILED"
    assert "admin" in failed.value.message


async def test_pages_walk_every_row_in_id_order(tryton: Server) -> None:
    async with tryton.client() as client:
        await client.create("party.party", [{"name": f"Paging {i}"} for i in range(7)])
        pages = [page async for page in client.pages("party.party", [["name", "like", "Paging %"]],
                                                          ["name"], page_size=3)]
    assert [len(p) for p in pages] == [3, 3, 1]
    ids = [r["id"] for p in pages for r in p]
    assert ids == sorted(ids)


async def test_a_reference_finds_its_work_whatever_the_tags_and_never_by_prefix(tryton: Server) -> None:
    """Project comments carry the canonical id and tags (the business line Tryton has no field for)."""
    comments = {
        "p_1": reference("p_1", business_line="Consulting"),
        "p_10": reference("p_10"),  # "p_1" is its prefix; "_" is a LIKE wildcard
        "pX1": reference("pX1", business_line="Cloud"),  # matches "p_1" if "_" were not escaped
    }
    async with tryton.client() as client:
        ids = await client.create("project.work", [{"name": k, "type": "task", "comment": c}
                                                   for k, c in comments.items()])
        found = {k: await client.search_read("project.work", [reference_domain(k)], ["comment"])
                 for k in comments}
    expected = {k: [i] for k, i in zip(comments, ids, strict=True)}
    assert {k: [r["id"] for r in rows] for k, rows in found.items()} == expected
    assert parse_reference(found["p_1"][0]["comment"]) == ("p_1", {"business_line": "Consulting"})
    assert parse_reference(found["p_10"][0]["comment"]) == ("p_10", {})
    assert parse_reference("someone else's note") == (None, {})


async def test_periods_and_reference_data(tryton: Server) -> None:
    async with tryton.client() as client:
        period = await client.period_for(date(2026, 11, 3))
        products = await client.products()
        employees = await client.employees()
    assert period is not None and (period.start, period.end, period.closed) == (
        date(2026, 11, 1), date(2026, 11, 30), False
    )
    assert {"CONSULT-SR", "CONSULT-JR", "PM"} <= set(products)
    assert employees and all("@" in email for email in employees)


async def test_posting_into_a_closed_period_is_period_closed(tryton: Server) -> None:
    project, work, party = await _project(tryton, "Closed period", date(2026, 12, 31))
    employee = next(iter((await tryton.client().employees()).values()))
    async with tryton.client() as client:
        await client.create("timesheet.line", [{
            "work": work, "employee": employee, "date": date(2026, 11, 2), "duration": timedelta(hours=1),
        }])
        await client.button("project.work", "invoice", [project])
        (invoice,) = await client.search_read("account.invoice", [["party", "=", party]], ["id"])
        march = [["start_date", "=", date(2025, 3, 1)]]
        (period,) = await client.search_read("account.period", march, ["id"])
        await client.button("account.period", "close", [period["id"]])
        await client.write("account.invoice", [invoice["id"]], {"invoice_date": date(2025, 3, 14)})
        with pytest.raises(TrytonRejected) as closed:
            await client.button("account.invoice", "post", [invoice["id"]])
    assert closed.value.reason == "PERIOD_CLOSED", closed.value.message
