"""Schema migrations, run programmatically (no alembic.ini; works from any cwd and when installed).

    upgrade_to_head("sqlite+aiosqlite:///p2c-data/store.db")       # CLI, start-up, tests
    await upgrade_to_head_async(url)                                # inside a running event loop
    await is_at_head(engine)                                        # readiness probe

On PostgreSQL the upgrade holds an advisory lock for its transaction, so N gateway processes starting
together migrate once and the others wait, then find the schema at head.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from store.db import make_engine, mask_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Any constant works; it only has to be the same in every process.
_MIGRATION_LOCK_KEY = 0x5032_4300


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


async def upgrade_to_head_async(url: str) -> None:
    """Migrate the database at ``url`` to the newest revision (a no-op when already there)."""
    engine = make_engine(url, poolclass=sa.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_upgrade, url)
            await connection.commit()
    finally:
        await engine.dispose()


def _upgrade(connection: Connection, url: str) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
    config = alembic_config(url)
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def upgrade_to_head(url: str) -> None:
    """Synchronous entry: from the CLI, or from code already inside a running event loop (then the
    migration runs on a private loop in a helper thread and this call blocks until it is done)."""
    if not _loop_running():
        asyncio.run(upgrade_to_head_async(url))
        return
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(upgrade_to_head_async(url))
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=run, name=f"p2c-migrate {mask_url(url)}")
    worker.start()
    worker.join()
    if failure:
        raise failure[0]


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at, or None for an empty (never migrated) database."""
    async with engine.connect() as connection:
        return await connection.run_sync(_current_revision)


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def is_at_head(engine: AsyncEngine) -> bool:
    return await current_revision(engine) == head_revision()
