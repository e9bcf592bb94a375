"""The PSA time read model against the sandbox: a full load equal to the canonical figures, incremental
refreshes that replace an edited or unapproved entry's contribution, TTL and single flight."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import date
from decimal import Decimal

import httpx

from canonical import analytics
from canonical.money import Money
from subgraphs.psa.aggregates import TimeAggregates, TimeTotals
from subgraphs.psa.client import PsaClient
from subgraphs.psa.mapping import PsaIds, time_entry_to_canonical
from subgraphs.psa.wire import WireTimeEntry

from .conftest import MakeClient


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _all(psa: PsaClient) -> list[WireTimeEntry]:
    return [e async for page in psa.time_entries() for e in page]


def _revenue(totals: list[TimeTotals]) -> Decimal:
    return sum((t.revenue for t in totals if t.revenue is not None), Decimal(0))


async def test_full_load_equals_the_canonical_figures(make_client: MakeClient) -> None:
    psa = make_client(per_page=100)  # several pages, read in parallel
    model = TimeAggregates(ttl_s=60)
    by_client = await model.by_client(psa)
    entries = await _all(psa)
    grouped: dict[int, list[WireTimeEntry]] = defaultdict(list)
    for wire in entries:
        grouped[wire["client"]["id"]].append(wire)
    assert set(by_client) == set(grouped)
    ids = PsaIds()
    for client_id, wires in grouped.items():
        currency = wires[0]["client"]["currency"]
        canonical = [time_entry_to_canonical(w, ids) for w in wires]
        (totals,) = by_client[client_id]
        assert totals.entries == len(wires)
        assert Money(totals.revenue or Decimal(0), currency) == analytics.time_revenue(canonical, currency)
        assert Money(totals.cost or Decimal(0), currency) == analytics.time_cost(canonical, currency)
    assert model.stats["full_loads"] == 1


async def test_as_of_leaves_out_later_time(make_client: MakeClient) -> None:
    psa = make_client()
    model = TimeAggregates(ttl_s=60)
    entries = await _all(psa)
    day = sorted(e["spent_date"] for e in entries)[len(entries) // 2]
    upto = await model.by_client(psa, date.fromisoformat(day))
    assert sum(t.entries for ts in upto.values() for t in ts) == sum(e["spent_date"] <= day for e in entries)
    months = await model.by_project_month(psa)
    assert sum(t.entries for ts in months.values() for t in ts) == len(entries)


async def test_incremental_refresh_replaces_edited_and_unapproved_entries(
    make_client: MakeClient, raw: httpx.AsyncClient
) -> None:
    psa = make_client()
    clock = Clock()
    model = TimeAggregates(ttl_s=5, clock=clock)
    before = await model.by_client(psa)
    entries = await _all(psa)
    open_entry = next(e for e in entries if not e["is_locked"] and e["billable"] and e["billable_rate"])
    approved = next(
        e
        for e in entries
        if e["is_closed"] and not e["is_billed"] and e["billable"] and e["billable_rate"]
        if e["client"]["id"] != open_entry["client"]["id"]
    )
    # an edit, and an unapproval followed by an edit of the reopened entry
    await psa.update_time_entry(open_entry["id"], {"hours": open_entry["hours"] + 2})
    reopened = await raw.post(f"/__sandbox/psa/time_entries/{approved['id']}/reopen")
    assert reopened.status_code == 200 and reopened.json()["is_closed"] is False
    await psa.update_time_entry(approved["id"], {"hours": approved["hours"] + 1})

    clock.now += 4.9  # within the TTL: no read, the old figures
    assert await model.by_client(psa) is before
    sent = psa.stats["requests"]
    clock.now += 0.2
    after = await model.by_client(psa)
    assert psa.stats["requests"] == sent + 1  # one updated_since page
    assert model.stats == {"full_loads": 1, "incremental_reads": 1, "requests": 2, "changed": 2}

    for entry, extra in ((open_entry, 2), (approved, 1)):
        client = entry["client"]["id"]
        rate = Decimal(repr(entry["billable_rate"]))
        got = _revenue(after[client]) - _revenue(before[client])
        assert got == rate * Decimal(extra)
        assert after[client][0].entries == before[client][0].entries  # replaced, not added
        assert after[client][0].hours - before[client][0].hours == Decimal(extra)
    # a third refresh sees only the newest entry again (updated_since is inclusive) and changes nothing
    clock.now += 5
    assert await model.by_client(psa) is after


async def test_concurrent_readers_share_one_refresh(make_client: MakeClient) -> None:
    psa = make_client(per_page=500)
    model = TimeAggregates(ttl_s=5, clock=Clock())
    results = await asyncio.gather(*(model.by_client(psa) for _ in range(20)))
    assert all(r is results[0] for r in results)
    pages = -(-len(await _all(psa)) // 500)
    assert model.stats["full_loads"] == 1 and model.stats["requests"] == pages


async def test_invalidate_forces_an_incremental_read(make_client: MakeClient) -> None:
    psa = make_client()
    model = TimeAggregates(ttl_s=3600, clock=Clock())
    await model.by_client(psa)
    model.invalidate()
    await model.by_client(psa)
    assert model.stats["full_loads"] == 1 and model.stats["incremental_reads"] == 1


async def test_deleted_entries_leave_on_the_periodic_reload(make_client: MakeClient) -> None:
    psa = make_client()
    clock = Clock()
    model = TimeAggregates(ttl_s=5, reload_s=60, clock=clock)
    before = await model.by_client(psa)
    victim = next(e for e in await _all(psa) if not e["is_locked"])
    await psa.delete_time_entry(victim["id"])
    client = victim["client"]["id"]
    clock.now += 10  # incremental: Harvest reports no deletions
    assert (await model.by_client(psa))[client][0].entries == before[client][0].entries
    clock.now += 60  # full reload
    assert (await model.by_client(psa))[client][0].entries == before[client][0].entries - 1
    assert model.stats["full_loads"] == 2
