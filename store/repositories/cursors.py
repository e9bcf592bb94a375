"""Sync cursors (where each poller got to) and the mapping versions the gateway has loaded."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from store.models import MappingVersion, SyncCursor
from store.repositories._base import Repository


class CursorRepo(Repository):
    async def get(self, name: str) -> str | None:
        query = sa.select(SyncCursor.value).where(SyncCursor.name == name)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def set(self, name: str, value: str) -> None:
        """Move the cursor in the caller's transaction: it advances only if the work it covers commits."""
        now = self.clock()
        insert = self.upsert_insert(SyncCursor).values(name=name, value=value, updated_at=now)
        await self.session.execute(
            insert.on_conflict_do_update(index_elements=["name"], set_={"value": value, "updated_at": now})
        )


class MappingVersionRepo(Repository):
    async def record(
        self, version: str, fingerprint: str, content: str, *, activate: bool = True
    ) -> MappingVersion:
        """Remember a loaded mapping (once per fingerprint) and, by default, make it the active one."""
        insert = (
            self.upsert_insert(MappingVersion)
            .values(
                version=version,
                fingerprint=fingerprint,
                content=content,
                loaded_at=self.clock(),
                active=False,
            )
            .on_conflict_do_nothing(index_elements=["fingerprint"])
        )
        await self.session.execute(insert)
        if activate:
            await self.session.execute(
                sa.update(MappingVersion)
                .values(active=MappingVersion.fingerprint == fingerprint)
                .where(sa.or_(MappingVersion.active.is_(True), MappingVersion.fingerprint == fingerprint))
                .execution_options(synchronize_session=False)
            )
        query = (
            sa.select(MappingVersion)
            .where(MappingVersion.fingerprint == fingerprint)
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(query)).scalar_one()

    async def active(self) -> MappingVersion | None:
        query = sa.select(MappingVersion).where(MappingVersion.active.is_(True)).limit(1)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def history(self, limit: int = 50) -> Sequence[MappingVersion]:
        query = sa.select(MappingVersion).order_by(MappingVersion.loaded_at.desc(), MappingVersion.id.desc())
        return (await self.session.execute(query.limit(limit))).scalars().all()
