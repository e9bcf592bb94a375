"""Cross-references: which id a canonical record has in each system."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import sqlalchemy as sa

from canonical.errors import Conflict
from store.models import CrossReference
from store.repositories._base import Repository


class CrossReferenceRepo(Repository):
    async def link(
        self,
        canonical_id: str,
        entity_type: str,
        system: str,
        system_id: str,
        *,
        legal_entity: str | None = None,
    ) -> bool:
        """Tie ``system_id`` to ``canonical_id``; True when new, False when already linked the same way.

        Raises ``Conflict`` when either side is already linked to something else.
        """
        insert = (
            self.upsert_insert(CrossReference)
            .values(
                canonical_id=canonical_id,
                entity_type=entity_type,
                system=system,
                system_id=system_id,
                legal_entity=legal_entity,
                created_at=self.clock(),
            )
            .on_conflict_do_nothing()
            .returning(CrossReference.id)
        )
        if (await self.session.execute(insert)).scalar_one_or_none() is not None:
            return True
        existing = await self.canonical_id_for(system, entity_type, system_id)
        if existing is not None and existing != canonical_id:
            raise Conflict(
                f"{system} {entity_type} {system_id} is already linked to {existing}, not {canonical_id}",
                system=system,
                systemId=system_id,
            )
        linked = (await self.system_ids_for(system, [canonical_id])).get(canonical_id)
        if linked != system_id:
            raise Conflict(
                f"{canonical_id} is already linked to {system} id {linked}, not {system_id}",
                system=system,
                canonicalId=canonical_id,
            )
        return False

    async def canonical_id_for(self, system: str, entity_type: str, system_id: str) -> str | None:
        query = sa.select(CrossReference.canonical_id).where(
            CrossReference.system == system,
            CrossReference.entity_type == entity_type,
            CrossReference.system_id == system_id,
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def resolve_many(self, system: str, entity_type: str, system_ids: Iterable[str]) -> dict[str, str]:
        """``{system_id: canonical_id}`` for the ids that are linked; unknown ids are absent."""
        ids = list(dict.fromkeys(system_ids))
        if not ids:
            return {}
        query = sa.select(CrossReference.system_id, CrossReference.canonical_id).where(
            CrossReference.system == system,
            CrossReference.entity_type == entity_type,
            CrossReference.system_id.in_(ids),
        )
        return {row.system_id: row.canonical_id for row in await self.session.execute(query)}

    async def system_ids_for(self, system: str, canonical_ids: Sequence[str]) -> dict[str, str]:
        """``{canonical_id: system_id}`` in ``system`` for many canonical ids at once (one query)."""
        ids = list(dict.fromkeys(canonical_ids))
        if not ids:
            return {}
        query = sa.select(CrossReference.canonical_id, CrossReference.system_id).where(
            CrossReference.system == system, CrossReference.canonical_id.in_(ids)
        )
        return {row.canonical_id: row.system_id for row in await self.session.execute(query)}

    async def links_of(self, canonical_id: str) -> dict[str, str]:
        """``{system: system_id}`` for one canonical record."""
        query = sa.select(CrossReference.system, CrossReference.system_id).where(
            CrossReference.canonical_id == canonical_id
        )
        return {row.system: row.system_id for row in await self.session.execute(query)}
