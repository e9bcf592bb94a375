"""The gateway's own durable state: SQLAlchemy 2 async over SQLite (embedded) or PostgreSQL (production).

    engine = make_engine(url); upgrade_to_head(url); sessionmaker = make_sessionmaker(engine)
    async with sessionmaker.begin() as session:
        await CrossReferenceRepo(session).link(cid, "Account", "erp", "1234")

Modules: ``db`` (engines, sessions), ``models`` (tables), ``migrate`` (Alembic, programmatic),
``repositories`` (all SQL), ``errors``.
"""

from __future__ import annotations

from store.db import check_connection, make_engine, make_sessionmaker, mask_url
from store.errors import StoreUnavailable
from store.migrate import current_revision, head_revision, is_at_head, upgrade_to_head, upgrade_to_head_async

__all__ = [
    "StoreUnavailable",
    "check_connection",
    "current_revision",
    "head_revision",
    "is_at_head",
    "make_engine",
    "make_sessionmaker",
    "mask_url",
    "upgrade_to_head",
    "upgrade_to_head_async",
]
