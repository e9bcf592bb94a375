from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from store.db import make_engine
from store.migrate import (
    alembic_config,
    current_revision,
    head_revision,
    is_at_head,
    upgrade_to_head,
    upgrade_to_head_async,
)
from store.models import Base

TABLES = {
    "audit_entries",
    "cross_references",
    "idempotency_records",
    "inbox_events",
    "integration_exceptions",
    "integration_runs",
    "integration_steps",
    "mapping_versions",
    "outbox_events",
    "sync_cursors",
    "work_items",
}


def _diffs(connection: sa.Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def _tables(connection: sa.Connection) -> set[str]:
    return set(sa.inspect(connection).get_table_names())


def test_there_is_one_head() -> None:
    assert head_revision() == "0003"


async def test_empty_database_migrates_to_head_matching_the_models(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url, poolclass=sa.NullPool)
    try:
        assert await current_revision(engine) is None
        assert not await is_at_head(engine)

        await upgrade_to_head_async(empty_database_url)

        assert await current_revision(engine) == head_revision()
        assert await is_at_head(engine)
        async with engine.connect() as connection:
            assert await connection.run_sync(_tables) == TABLES | {"alembic_version"}
            assert await connection.run_sync(_diffs) == []
    finally:
        await engine.dispose()


async def test_upgrade_is_idempotent_and_callable_synchronously_from_a_running_loop(
    empty_database_url: str,
) -> None:
    upgrade_to_head(empty_database_url)  # we are inside the test's event loop here
    upgrade_to_head(empty_database_url)
    engine = make_engine(empty_database_url, poolclass=sa.NullPool)
    try:
        assert await is_at_head(engine)
    finally:
        await engine.dispose()


def test_downgrade_to_base_removes_every_table_and_upgrade_restores_them(empty_database_url: str) -> None:
    upgrade_to_head(empty_database_url)
    # Drive the CLI path of env.py (no shared connection): it opens its own async engine.
    config = alembic_config(empty_database_url)
    command.downgrade(config, "base")
    command.upgrade(config, "head")
    command.downgrade(config, "base")

    async def tables_left() -> set[str]:
        async_engine = make_engine(empty_database_url, poolclass=sa.NullPool)
        try:
            async with async_engine.connect() as connection:
                return await connection.run_sync(_tables)
        finally:
            await async_engine.dispose()

    assert asyncio.run(tables_left()) == {"alembic_version"}
