from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical.errors import Conflict
from canonical.ids import canonical_id
from store.repositories import CrossReferenceRepo

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
