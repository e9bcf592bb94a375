from __future__ import annotations

import contextlib
import random
from dataclasses import astuple

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical.errors import Conflict
from canonical.ids import canonical_id
from store.models import CrossReference
from store.repositories import CrossReferenceRepo
from store.repositories import xrefs as xrefs_module
from store.repositories.xrefs import LinkManyResult, XrefLink

ACME = canonical_id("crm", "Account", "001A")
GLOBEX = canonical_id("crm", "Account", "001B")


async def test_link_and_resolve_both_ways(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker.begin() as session:
        repo = CrossReferenceRepo(session)
        assert await repo.link(ACME, "Account", "crm", "001A", legal_entity="US01")
        assert await repo.link(ACME, "Account", "erp", "C-17")
        assert await repo.link(GLOBEX, "Account", "crm", "001B")
    async with sessionmaker() as session:
        repo = CrossReferenceRepo(session)
        assert await repo.canonical_id_for("erp", "Account", "C-17") == ACME
        assert await repo.canonical_id_for("erp", "Account", "C-99") is None
        assert await repo.canonical_id_for("erp", "Project", "C-17") is None
        assert await repo.system_ids_for("crm", [ACME, GLOBEX, "unknown"]) == {ACME: "001A", GLOBEX: "001B"}
        assert await repo.system_ids_for("erp", [ACME, GLOBEX]) == {ACME: "C-17"}
        assert await repo.resolve_many("crm", "Account", ["001B", "001A", "nope", "001A"]) == {
            "001A": ACME,
            "001B": GLOBEX,
        }
        assert await repo.resolve_many("crm", "Account", []) == {}
        assert await repo.links_of(ACME) == {"crm": "001A", "erp": "C-17"}


async def test_relinking_the_same_pair_is_a_no_op(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker.begin() as session:
        repo = CrossReferenceRepo(session)
        assert await repo.link(ACME, "Account", "erp", "C-17")
        assert not await repo.link(ACME, "Account", "erp", "C-17")


async def test_linking_a_taken_id_to_another_record_conflicts(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker.begin() as session:
        await CrossReferenceRepo(session).link(ACME, "Account", "erp", "C-17")
    async with sessionmaker() as session:
        repo = CrossReferenceRepo(session)
        with pytest.raises(Conflict, match="C-17 is already linked"):
            await repo.link(GLOBEX, "Account", "erp", "C-17")
        with pytest.raises(Conflict, match="already linked to erp id C-17"):
            await repo.link(ACME, "Account", "erp", "C-18")
        assert await repo.system_ids_for("erp", [ACME, GLOBEX]) == {ACME: "C-17"}


# -- link_many ---------------------------------------------------------------------------------------------


async def test_link_many_creates_in_bulk_and_a_second_call_is_a_no_op(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    links = [
        XrefLink(ACME, "Account", "crm", "001A", legal_entity="US01"),
        XrefLink(ACME, "Account", "erp", "C-17"),
    ]
    links += [
        XrefLink(GLOBEX, "Account", "crm", "001B"),
        XrefLink(ACME, "Account", "erp", "C-17"),
    ]  # a repeat
    async with sessionmaker.begin() as session:
        result = await CrossReferenceRepo(session).link_many(links)
    assert (result.created, result.conflicts) == (3, [])
    async with sessionmaker.begin() as session:
        again = await CrossReferenceRepo(session).link_many(links)
    assert (again.created, again.conflicts) == (0, [])
    async with sessionmaker() as session:
        repo = CrossReferenceRepo(session)
        assert await repo.links_of(ACME) == {"crm": "001A", "erp": "C-17"}
        assert await repo.resolve_many("crm", "Account", ["001A", "001B"]) == {"001A": ACME, "001B": GLOBEX}
        row = (
            await session.execute(sa.select(CrossReference).where(CrossReference.system_id == "001A"))
        ).scalar_one()
        assert row.legal_entity == "US01"
    async with sessionmaker() as session:
        assert await CrossReferenceRepo(session).link_many([]) == LinkManyResult(0, [])


async def test_link_many_reports_what_link_would_raise_and_links_the_rest(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker.begin() as session:
        await CrossReferenceRepo(session).link(ACME, "Account", "erp", "C-17")
    links = [
        XrefLink(GLOBEX, "Account", "erp", "C-17"),  # the ERP id is taken
        XrefLink(ACME, "Account", "erp", "C-18"),  # ACME already has an ERP id
        XrefLink(GLOBEX, "Account", "crm", "001B"),  # fine
    ]
    async with sessionmaker.begin() as session:
        result = await CrossReferenceRepo(session).link_many(links)
    assert result.created == 1
    assert [(c.index, c.link) for c in result.conflicts] == [(0, links[0]), (1, links[1])]
    async with sessionmaker() as session:
        repo = CrossReferenceRepo(session)
        for conflict in result.conflicts:
            ln = conflict.link
            with pytest.raises(Conflict) as raised:
                await repo.link(ln.canonical_id, ln.entity_type, ln.system, ln.system_id)
            assert conflict.message == raised.value.message
        assert "C-17 is already linked to" in result.conflicts[0].message
        assert "already linked to erp id C-17" in result.conflicts[1].message
        assert await repo.system_ids_for("erp", [ACME, GLOBEX]) == {ACME: "C-17"}
        assert await repo.system_ids_for("crm", [GLOBEX]) == {GLOBEX: "001B"}


async def test_link_many_rows_compete_in_order_within_one_call(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    links = [
        XrefLink(ACME, "Account", "erp", "C-17"),
        XrefLink(GLOBEX, "Account", "erp", "C-17"),  # an earlier row took C-17
        XrefLink(GLOBEX, "Account", "erp", "C-18"),  # GLOBEX is still free: linked
        XrefLink(ACME, "Account", "erp", "C-19"),  # ACME has C-17 from the first row
    ]
    async with sessionmaker.begin() as session:
        result = await CrossReferenceRepo(session).link_many(links)
    assert result.created == 2
    assert [c.index for c in result.conflicts] == [1, 3]
    assert result.conflicts[0].message == f"erp Account C-17 is already linked to {ACME}, not {GLOBEX}"
    assert result.conflicts[1].message == f"{ACME} is already linked to erp id C-17, not C-19"


def _scenario(rng: random.Random, n: int) -> tuple[list[XrefLink], list[XrefLink]]:
    """Links drawn from a few ids, so that rows collide with the store and with each other."""

    def draw() -> XrefLink:
        return XrefLink(
            f"c{rng.randrange(8)}",
            rng.choice(["Account", "Project"]),
            rng.choice(["crm", "erp"]),
            f"s{rng.randrange(8)}",
        )

    return [draw() for _ in range(6)], [draw() for _ in range(n)]


def _namespaced(ns: str, ln: XrefLink) -> XrefLink:
    return XrefLink(f"{ns}{ln.canonical_id}", ln.entity_type, ln.system, f"{ns}{ln.system_id}")


@pytest.mark.parametrize("seed", range(6))
async def test_link_many_equals_link_called_per_row(
    sessionmaker: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """Random collisions, small chunks (several statements per call): the same outcome row by row."""
    monkeypatch.setattr(xrefs_module, "LINK_CHUNK", 3)
    monkeypatch.setattr(xrefs_module, "IN_CHUNK", 4)
    monkeypatch.setattr(xrefs_module, "ARRAY_CHUNK", 4)
    existing, links = _scenario(random.Random(seed), 40)
    async with sessionmaker.begin() as session:
        repo = CrossReferenceRepo(session)
        for ns in ("one:", "bulk:"):
            for ln in existing:
                with contextlib.suppress(Conflict):
                    await repo.link(*astuple(_namespaced(ns, ln))[:4])

    expected: list[str | None] = []
    created = 0
    async with sessionmaker.begin() as session:
        repo = CrossReferenceRepo(session)
        for ln in links:
            try:
                created += await repo.link(*astuple(_namespaced("one:", ln))[:4])
                expected.append(None)
            except Conflict as exc:
                expected.append(exc.message.replace("one:", ""))
    async with sessionmaker.begin() as session:
        result = await CrossReferenceRepo(session).link_many([_namespaced("bulk:", ln) for ln in links])

    got: list[str | None] = [None] * len(links)
    for conflict in result.conflicts:
        got[conflict.index] = conflict.message.replace("bulk:", "")
    assert got == expected
    assert result.created == created
    async with sessionmaker() as session:
        rows = await session.execute(
            sa.select(
                CrossReference.canonical_id,
                CrossReference.entity_type,
                CrossReference.system,
                CrossReference.system_id,
            )
        )
        stored: dict[str, set[tuple[str, ...]]] = {"one:": set(), "bulk:": set()}
        for cid, entity_type, system, sid in rows:
            for ns, found in stored.items():
                if cid.startswith(ns):
                    found.add((cid.removeprefix(ns), entity_type, system, sid.removeprefix(ns)))
    assert stored["bulk:"] == stored["one:"]
