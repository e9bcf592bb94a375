"""The process's read cache: TTL expiry, single flight, cross-references kept, invalidation; health served
through it equal to health without it; and GraphQL validation results cached across requests."""

# ruff: noqa: E501  (GraphQL documents read best on one line)
from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from strawberry.extensions.validation_cache import _get_validate_cache

from canonical.ids import canonical_id
from resolvers.cache import MISSING, ReadCache, TtlCache
from tests.resolvers.test_health import HEALTH, SAMPLE

from .conftest import FIRM, US_ONLY, MakeContext


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- TtlCache -------------------------------------------------------------------------------------------------
async def test_values_expire_after_the_ttl() -> None:
    clock, asked = Clock(), []

    async def fetch(keys: list[str]) -> list[str]:
        asked.append(keys)
        return [k.upper() for k in keys]

    cache: TtlCache[str, str] = TtlCache(ttl_s=5, clock=clock)
    assert await cache.get_many(["a", "b"], fetch) == ["A", "B"]
    clock.now += 4.9
    assert await cache.get_many(["b", "a", "c"], fetch) == ["B", "A", "C"]
    assert asked == [["a", "b"], ["c"]]
    clock.now += 0.2  # a and b are 5.1 s old, c 0.2 s
    await cache.get_many(["a", "b", "c"], fetch)
    assert asked[-1] == ["a", "b"]


async def test_concurrent_misses_share_one_read() -> None:
    gate, calls = asyncio.Event(), []

    async def fetch(keys: list[int]) -> list[int]:
        calls.append(list(keys))
        await gate.wait()
        return [k * 10 for k in keys]

    cache: TtlCache[int, int] = TtlCache(ttl_s=5)
    readers = [asyncio.ensure_future(cache.get_many([1, 2], fetch)) for _ in range(10)]
    late = asyncio.ensure_future(cache.get_many([2, 3], fetch))
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*readers) == [[10, 20]] * 10
    assert await late == [20, 30]
    assert calls == [[1, 2], [3]]


async def test_a_cancelled_reader_does_not_fail_the_others() -> None:
    gate = asyncio.Event()

    async def fetch(keys: list[int]) -> list[int]:
        await gate.wait()
        return keys

    cache: TtlCache[int, int] = TtlCache(ttl_s=5)
    first = asyncio.ensure_future(cache.get_many([1], fetch))
    second = asyncio.ensure_future(cache.get_many([1], fetch))
    await asyncio.sleep(0)
    first.cancel()
    gate.set()
    assert await second == [1]


async def test_errors_reach_every_reader_and_are_not_kept() -> None:
    calls = 0

    async def fetch(keys: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        if calls == 1:
            raise RuntimeError("vendor down")
        return keys

    cache: TtlCache[int, int] = TtlCache(ttl_s=5)
    results = await asyncio.gather(
        cache.get_many([1], fetch), cache.get_many([1], fetch), return_exceptions=True
    )
    assert [type(r) for r in results] == [RuntimeError, RuntimeError]
    assert await cache.get_many([1], fetch) == [1]
    assert calls == 2


async def test_found_kept_for_good_misses_asked_again() -> None:
    clock, asked = Clock(), []
    links = {"a": "A"}

    async def fetch(keys: list[str]) -> list[str | None]:
        asked.extend(keys)
        return [links.get(k) for k in keys]

    cache: TtlCache[str, str | None] = TtlCache(ttl_s=math.inf, none_ttl_s=5, clock=clock)
    assert await cache.get_many(["a", "b"], fetch) == ["A", None]
    links["b"] = "B"  # linked later (backfill, provisioning)
    clock.now += 4
    assert await cache.get_many(["a", "b"], fetch) == ["A", None]
    clock.now += 1e6
    assert await cache.get_many(["a", "b"], fetch) == ["A", "B"]
    assert asked == ["a", "b", "b"]


async def test_invalidation_drops_values_and_reads_in_flight() -> None:
    started, gate, version = asyncio.Event(), asyncio.Event(), 1

    async def fetch(keys: list[str]) -> list[int]:
        seen = version
        started.set()
        await gate.wait()
        return [seen for _ in keys]

    cache: TtlCache[str, int] = TtlCache(ttl_s=60)
    reading = asyncio.ensure_future(cache.get_many(["k"], fetch))
    await started.wait()
    version = 2
    cache.invalidate(lambda key: key == "k")  # the change arrives while the old value is being read
    gate.set()
    assert await reading == [1]  # its own reader gets it ...
    assert await cache.get_many(["k"], fetch) == [2]  # ... but it was not kept


async def test_a_miss_also_refreshes_served_keys_near_their_expiry() -> None:
    clock = Clock()
    asked: list[list[str]] = []

    async def fetch(keys: list[str]) -> list[str]:
        asked.append(list(keys))
        return [f"{k}@{clock.now:g}" for k in keys]

    cache: TtlCache[str, str] = TtlCache(ttl_s=10, refresh_ahead=10, clock=clock)
    await cache.get_many(["a", "b", "x"], fetch)  # all three expire at 110
    clock.now = 101
    assert cache.peek("a") == "a@100"  # served since its read: worth refreshing
    assert await cache.get_many(["x"], fetch) == ["x@100"]  # served too
    clock.now = 103  # not yet in the last half of their life: a miss reads only itself
    await cache.get_many(["c"], fetch)
    assert asked[-1] == ["c"]
    clock.now = 106  # a, b and x are in their last half (expire at 110 < 106 + 5); b was never served
    assert await cache.get_many(["d"], fetch) == ["d@106"]
    assert asked[-1] == ["d", "a", "x"]
    assert cache.peek("a") == "a@106" and cache.peek("b") == "b@100"
    clock.now = 112  # a now lives until 116; b was not refreshed (not asked for before 106)
    assert cache.peek("a") == "a@106"
    assert cache.peek("b") is MISSING and cache.peek("nothing") is MISSING
    assert len(asked) == 3  # peeking never reads
    # b, a and x (served at 106, 112 and 101) have expired since, c and d were never served: the next
    # miss brings back the ones still asked for, oldest first, and lets the others go
    clock.now = 117
    await cache.get_many(["e"], fetch)
    assert asked[-1] == ["e", "b", "a", "x"]
    assert cache.peek("a") == "a@117" and cache.peek("b") == "b@117" and cache.peek("c") is MISSING
    clock.now = 140  # a, b and x not asked for in two TTLs: a miss no longer brings them
    await cache.get_many(["f"], fetch)
    assert asked[-1] == ["f"]


def test_refresh_ahead_needs_one_finite_ttl() -> None:
    with pytest.raises(ValueError, match="refresh_ahead"):
        TtlCache[str, str](ttl_s=math.inf, refresh_ahead=10)
    with pytest.raises(ValueError, match="refresh_ahead"):
        TtlCache[str, str](ttl_s=5, none_ttl_s=1, refresh_ahead=10)


# -- through the graph -------------------------------------------------------------------------------------
async def _requests(admins: dict[str, Any]) -> dict[str, int]:
    return {name: (await admin.counters())["total"] for name, admin in admins.items()}


async def _reset(admins: dict[str, Any]) -> None:
    for admin in admins.values():
        await admin.reset_counters()


@pytest.mark.parametrize("acc", SAMPLE[:3] + SAMPLE[-1:], ids=lambda a: a.crm_id)
async def test_health_through_the_cache_equals_health_without(
    schema: Any, make_context: MakeContext, acc: Any
) -> None:
    variables = {"id": canonical_id("crm", "Account", acc.crm_id)}
    plain = await schema.execute(HEALTH, variable_values=variables, context_value=make_context())
    cache = ReadCache()
    cold = await schema.execute(HEALTH, variable_values=variables, context_value=make_context(cache=cache))
    warm = await schema.execute(HEALTH, variable_values=variables, context_value=make_context(cache=cache))
    assert plain.errors is None and cold.errors is None and warm.errors is None
    assert plain.data == cold.data == warm.data


async def test_a_warm_request_reads_only_what_is_not_cached(
    schema: Any, make_context: MakeContext, admins: dict[str, Any]
) -> None:
    cache = ReadCache()
    acc = SAMPLE[0]
    variables = {"id": canonical_id("crm", "Account", acc.crm_id)}

    async def run() -> dict[str, int]:
        await _reset(admins)
        result = await schema.execute(
            HEALTH, variable_values=variables, context_value=make_context(cache=cache)
        )
        assert result.errors is None
        return await _requests(admins)

    await run()
    xref_misses = cache.xrefs.misses
    warm = await run()
    # nothing: the account row, invoice totals, won value, time and links are cached
    assert warm == {"crm": 0, "psa": 0, "erp": 0}
    assert cache.xrefs.misses == xref_misses  # links found are never asked again

    cache.invalidate_account(erp_customer_id=str(acc.erp_customer_id), crm_account_id=acc.crm_id)
    after = await run()
    # totals, the account row and won value read again, links still cached
    assert after == {"crm": 2, "psa": 0, "erp": 1}
    assert cache.xrefs.misses == xref_misses


async def test_the_principal_still_filters_cached_values(schema: Any, make_context: MakeContext) -> None:
    cache = ReadCache()
    eu = next(a for a in FIRM.accounts if a.legal_entity != "US01" and a.erp_customer_id)
    variables = {"id": canonical_id("crm", "Account", eu.crm_id)}
    seen = await schema.execute(HEALTH, variable_values=variables, context_value=make_context(cache=cache))
    assert seen.errors is None and seen.data["account"] is not None
    hidden = await schema.execute(
        HEALTH, variable_values=variables, context_value=make_context(US_ONLY, cache=cache)
    )
    assert hidden.errors is None and hidden.data["account"] is None


async def test_validation_is_cached_across_requests(schema: Any, make_context: MakeContext) -> None:
    validate = _get_validate_cache(256)  # the LRU the schema's ValidationCache(maxsize=256) shares
    query = "query Probe { accounts(first: 1) { totalCount } }"
    assert (await schema.execute(query, context_value=make_context())).errors is None
    before = validate.cache_info()
    assert (await schema.execute(query, context_value=make_context())).errors is None
    after = validate.cache_info()
    assert after.hits == before.hits + 1 and after.misses == before.misses


ROWS = "query($first: Int!) { accounts(first: $first) { totalCount edges { node { id legalEntity } } } }"
LIST = "query($first: Int!) { accounts(first: $first) { totalCount edges { node { id legalEntity health { billedToDate { amount currency } marginPercent status } } } } }"


async def test_the_cached_account_list_is_filtered_per_principal(
    schema: Any, make_context: MakeContext, admins: dict[str, Any]
) -> None:
    cache = ReadCache()
    every = await schema.execute(
        LIST, variable_values={"first": 100}, context_value=make_context(cache=cache)
    )
    assert every.errors is None
    assert every.data["accounts"]["totalCount"] == sum(1 for a in FIRM.accounts if a.crm_id)
    assert {e["node"]["legalEntity"] for e in every.data["accounts"]["edges"]} > {"US01"}
    await _reset(admins)
    rows = await schema.execute(
        ROWS, variable_values={"first": 100}, context_value=make_context(US_ONLY, cache=cache)
    )
    # served from the list the first caller's request cached, filtered for this caller
    assert (await _requests(admins))["crm"] == 0
    us = await schema.execute(
        LIST, variable_values={"first": 100}, context_value=make_context(US_ONLY, cache=cache)
    )
    assert us.errors is None and rows.errors is None
    assert [e["node"]["id"] for e in rows.data["accounts"]["edges"]] == [
        e["node"]["id"] for e in us.data["accounts"]["edges"]
    ]
    assert us.data["accounts"]["totalCount"] == sum(1 for a in FIRM.accounts if a.legal_entity == "US01")
    assert {e["node"]["legalEntity"] for e in us.data["accounts"]["edges"]} == {"US01"}
    # and the same rows, with the same figures, as a request without any cache
    plain = await schema.execute(LIST, variable_values={"first": 100}, context_value=make_context(US_ONLY))
    assert plain.data == us.data


async def test_a_listed_account_is_then_read_by_id_from_the_cache(
    schema: Any, make_context: MakeContext, admins: dict[str, Any]
) -> None:
    cache = ReadCache()
    listed = await schema.execute(LIST, variable_values={"first": 5}, context_value=make_context(cache=cache))
    assert listed.errors is None
    first = listed.data["accounts"]["edges"][0]["node"]
    await _reset(admins)
    one = await schema.execute(
        HEALTH, variable_values={"id": first["id"]}, context_value=make_context(cache=cache)
    )
    assert one.errors is None and one.data["account"]["id"] == first["id"]
    assert (await _requests(admins))["crm"] == 0
    cache.invalidate_all()  # the account row and won value are asked again; links stay
    await _reset(admins)
    again = await schema.execute(
        HEALTH, variable_values={"id": first["id"]}, context_value=make_context(cache=cache)
    )
    assert again.data == one.data
    assert (await _requests(admins))["crm"] == 2
