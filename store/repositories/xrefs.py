"""Cross-references: which id a canonical record has in each system."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import InstrumentedAttribute

from canonical.errors import Conflict
from store.models import CrossReference
from store.repositories._base import Repository

#: Rows per multi-row INSERT in ``link_many``: 6 columns each, so 6,000 bound parameters — well under
#: SQLite's limit (32,766 since 3.32) and asyncpg's (32,767).
LINK_CHUNK = 1_000
#: Ids per lookup: SQLite ``IN (...)`` takes one bound parameter each; PostgreSQL's one array parameter.
IN_CHUNK = 5_000
ARRAY_CHUNK = 50_000

T = TypeVar("T")
SelectT = TypeVar("SelectT", bound="sa.Select[*tuple[Any, ...]]")


@dataclass(frozen=True)
class XrefLink:
    """One link ``link_many`` should make: ``system_id`` in ``system`` is ``canonical_id``."""

    canonical_id: str
    entity_type: str
    system: str
    system_id: str
    legal_entity: str | None = None


@dataclass(frozen=True)
class XrefConflict:
    """A link ``link_many`` did not make: ``links[index]``, and the message ``link()`` would raise."""

    index: int
    link: XrefLink
    message: str


@dataclass
class LinkManyResult:
    created: int = 0
    conflicts: list[XrefConflict] = field(default_factory=list)


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

    async def link_many(self, links: Sequence[XrefLink]) -> LinkManyResult:
        """``link()`` for every row, in order, in a few statements; conflicts are returned, not raised.

        The outcome equals calling ``link()`` per row and catching ``Conflict``: a pair already linked the
        same way (in the store, or by an earlier row) is a no-op; a row whose system id or canonical id is
        already linked to something else — in the store or by an earlier row — is a conflict carrying the
        message ``link()`` would raise. How: the rows' ids are looked up in bulk, then each row, in order,
        is judged against the store plus the rows before it that will be inserted; the new ones go in with
        ``INSERT … ON CONFLICT DO NOTHING``. A row a concurrent writer beats to an id is judged again against
        the store (a conflict if it is beaten twice). A few statements per ``IN_CHUNK``/``LINK_CHUNK`` rows,
        never one per row.
        """
        result = LinkManyResult()
        failed: dict[int, str] = {}
        pending = list(range(len(links)))
        beaten: set[int] = set()
        while pending:
            # What the store holds, and — as the rows are walked — what the rows to insert will add.
            owner_of, linked_to = await self._linked(links[i] for i in pending)
            insert: list[int] = []
            for i in pending:
                ln = links[i]
                system_key = (ln.system, ln.entity_type, ln.system_id)
                canonical_key = (ln.canonical_id, ln.system)
                owner, linked = owner_of.get(system_key), linked_to.get(canonical_key)
                if owner is None and linked is None:
                    insert.append(i)
                    owner_of[system_key], linked_to[canonical_key] = ln.canonical_id, ln.system_id
                    continue
                message = _conflict_message(ln, owner, linked)
                if message is not None:
                    failed[i] = message
            inserted = await self._insert_ignore([links[i] for i in insert])
            result.created += len(inserted)
            lost = [i for i in insert if (links[i].canonical_id, links[i].system) not in inserted]
            for i in beaten.intersection(lost):
                ln = links[i]
                failed[i] = (
                    f"{ln.system} {ln.entity_type} {ln.system_id} or {ln.canonical_id} "
                    "is being linked concurrently"
                )
            beaten.update(lost)
            pending = [i for i in lost if i not in failed]
        result.conflicts = [XrefConflict(i, links[i], failed[i]) for i in sorted(failed)]
        return result

    async def _linked(
        self, links: Iterable[XrefLink]
    ) -> tuple[dict[tuple[str, str, str], str], dict[tuple[str, str], str]]:
        """What the store holds for these rows' ids: ``{(system, type, system id): canonical id}`` and
        ``{(canonical id, system): system id}``."""
        system_ids: dict[tuple[str, str], set[str]] = defaultdict(set)
        canonical_ids: dict[str, set[str]] = defaultdict(set)
        for ln in links:
            system_ids[(ln.system, ln.entity_type)].add(ln.system_id)
            canonical_ids[ln.system].add(ln.canonical_id)
        by_system_id: dict[tuple[str, str, str], str] = {}
        for (system, entity_type), ids in system_ids.items():
            for sid, cid in (await self.resolve_many(system, entity_type, sorted(ids))).items():
                by_system_id[(system, entity_type, sid)] = cid
        by_canonical: dict[tuple[str, str], str] = {}
        for system, cids in canonical_ids.items():
            for cid, sid in (await self.system_ids_for(system, sorted(cids))).items():
                by_canonical[(cid, system)] = sid
        return by_system_id, by_canonical

    async def _insert_ignore(self, links: Sequence[XrefLink]) -> set[tuple[str, str]]:
        """Insert, skipping rows that collide; ``{(canonical id, system)}`` of the rows inserted."""
        inserted: set[tuple[str, str]] = set()
        if not links:
            return inserted
        table = CrossReference.__table__
        statement = (
            self.upsert_insert(table).on_conflict_do_nothing().returning(table.c.canonical_id, table.c.system)
        )
        connection = await self.session.connection()
        now = self.clock()
        for chunk in _chunks(links, LINK_CHUNK):
            rows: list[dict[str, Any]] = [
                {
                    "canonical_id": ln.canonical_id,
                    "entity_type": ln.entity_type,
                    "system": ln.system,
                    "system_id": ln.system_id,
                    "legal_entity": ln.legal_entity,
                    "created_at": now,
                }
                for ln in chunk
            ]
            # Core executemany: SQLAlchemy sends it as one multi-row INSERT ("insertmanyvalues", RETURNING
            # only the rows inserted) from a cached compilation; ``.values(rows)`` would recompile per call.
            result = await connection.execute(statement, rows)
            inserted.update((row[0], row[1]) for row in result)
        return inserted

    async def canonical_id_for(self, system: str, entity_type: str, system_id: str) -> str | None:
        query = sa.select(CrossReference.canonical_id).where(
            CrossReference.system == system,
            CrossReference.entity_type == entity_type,
            CrossReference.system_id == system_id,
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def resolve_many(self, system: str, entity_type: str, system_ids: Iterable[str]) -> dict[str, str]:
        """``{system_id: canonical_id}`` for the ids that are linked; unknown ids are absent."""
        found: dict[str, str] = {}
        for chunk in self._id_chunks(system_ids):
            query = self._matching(
                sa.select(CrossReference.system_id, CrossReference.canonical_id).where(
                    CrossReference.system == system, CrossReference.entity_type == entity_type
                ),
                CrossReference.system_id,
                chunk,
            )
            found.update((row.system_id, row.canonical_id) for row in await self.session.execute(query))
        return found

    async def system_ids_for(self, system: str, canonical_ids: Sequence[str]) -> dict[str, str]:
        """``{canonical_id: system_id}`` in ``system`` for many canonical ids at once (one query per
        ``IN_CHUNK`` ids on SQLite, per ``ARRAY_CHUNK`` on PostgreSQL)."""
        found: dict[str, str] = {}
        for chunk in self._id_chunks(canonical_ids):
            query = self._matching(
                sa.select(CrossReference.canonical_id, CrossReference.system_id).where(
                    CrossReference.system == system
                ),
                CrossReference.canonical_id,
                chunk,
            )
            found.update((row.canonical_id, row.system_id) for row in await self.session.execute(query))
        return found

    def _id_chunks(self, ids: Iterable[str]) -> Iterator[Sequence[str]]:
        size = ARRAY_CHUNK if self.dialect == "postgresql" else IN_CHUNK
        return _chunks(list(dict.fromkeys(ids)), size)

    def _matching(self, query: SelectT, column: InstrumentedAttribute[str], ids: Sequence[str]) -> SelectT:
        """``query`` narrowed to rows whose ``column`` is one of ``ids``.

        SQLite: ``IN (?, ?, ...)``. PostgreSQL: a join to ``unnest(:ids)`` — one array parameter, and a
        plan that stays an index or hash join. ``IN ($1 … $n)`` there turns slow once asyncpg's prepared
        statement goes to a generic plan (from the sixth run on): the list is then a linear filter over
        every row of the system, which made a second backfill of 10,000 accounts take ~40 s.
        """
        if self.dialect != "postgresql":
            return query.where(column.in_(ids))
        wanted = (
            sa.func.unnest(sa.bindparam("ids", list(ids), type_=postgresql.ARRAY(sa.String)))
            .table_valued("id")
            .render_derived(name="wanted")
        )
        return query.join(wanted, column == wanted.c.id)

    async def links_of(self, canonical_id: str) -> dict[str, str]:
        """``{system: system_id}`` for one canonical record."""
        query = sa.select(CrossReference.system, CrossReference.system_id).where(
            CrossReference.canonical_id == canonical_id
        )
        return {row.system: row.system_id for row in await self.session.execute(query)}


def _conflict_message(link: XrefLink, owner: str | None, linked: str | None) -> str | None:
    """What ``link()`` raises for ``link`` when the store already holds ``owner`` (the canonical id its
    system id is linked to) and ``linked`` (the id its canonical id has in that system); None: a no-op."""
    if owner is not None and owner != link.canonical_id:
        return (
            f"{link.system} {link.entity_type} {link.system_id} is already linked to {owner}, "
            f"not {link.canonical_id}"
        )
    if linked != link.system_id:
        return f"{link.canonical_id} is already linked to {link.system} id {linked}, not {link.system_id}"
    return None


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
