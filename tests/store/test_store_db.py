from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from canonical.errors import ConfigurationError
from store.db import check_connection, make_engine, mask_url
from store.errors import StoreUnavailable
from store.models import AuditEntry
from store.repositories import AuditRepo


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("mysql+pymysql://app:s3cret@db/p2c", "driver 'mysql+pymysql'"),
        ("postgresql://app:s3cret@db/p2c", "driver 'postgresql'"),
        ("not a url", "cannot be parsed"),
        ("postgresql+asyncpg://app:s3cret@db", "names no database"),
    ],
)
def test_bad_url_is_a_configuration_error_naming_the_url_without_password(url: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        make_engine(url)
    assert fragment in caught.value.message
    assert "s3cret" not in caught.value.message
    assert caught.value.code == "CONFIGURATION_ERROR"
    if "@" in url:
        assert "app:***@db" in caught.value.message


def test_mask_url_hides_password_even_when_unparsable() -> None:
    assert mask_url("postgresql+asyncpg://u:pw@h:5432/d") == "postgresql+asyncpg://u:***@h:5432/d"
    assert mask_url("weird://u:pw@h:bad-port/d") == "weird://u:***@h:bad-port/d"


async def test_unreachable_postgres_raises_store_unavailable_naming_the_database() -> None:
    engine = make_engine("postgresql+asyncpg://app:s3cret@127.0.0.1:1/ledger", poolclass=sa.NullPool)
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await check_connection(engine)
    finally:
        await engine.dispose()
    assert caught.value.code == "STORE_UNAVAILABLE"
    assert "127.0.0.1:1/ledger" in caught.value.message
    assert "s3cret" not in caught.value.message


async def test_unreachable_sqlite_directory_raises_store_unavailable(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/missing-dir/store.db")
    try:
        with pytest.raises(StoreUnavailable, match="missing-dir"):
            await check_connection(engine)
    finally:
        await engine.dispose()


async def test_check_connection_passes_on_a_live_database(engine: AsyncEngine) -> None:
    await check_connection(engine)


async def test_sqlite_connections_are_tuned(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/tuned.db")
    try:
        async with engine.connect() as connection:
            pragmas = {
                name: (await connection.exec_driver_sql(f"PRAGMA {name}")).scalar()
                for name in ("foreign_keys", "journal_mode", "busy_timeout")
            }
    finally:
        await engine.dispose()
    assert pragmas == {"foreign_keys": 1, "journal_mode": "wal", "busy_timeout": 5000}


async def test_sqlite_savepoints_work(tmp_path: Path) -> None:
    """The BEGIN takeover makes nested transactions real on SQLite, as they are on PostgreSQL."""
    from store.db import make_sessionmaker
    from store.migrate import upgrade_to_head_async

    url = f"sqlite+aiosqlite:///{tmp_path}/sp.db"
    await upgrade_to_head_async(url)
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine).begin() as session:
            await AuditRepo(session).append(principal="kept", operation="op", status="OK")
            nested = await session.begin_nested()
            await AuditRepo(session).append(principal="dropped", operation="op", status="OK")
            await nested.rollback()
        async with make_sessionmaker(engine)() as session:
            principals = (await session.execute(sa.select(AuditEntry.principal))).scalars().all()
    finally:
        await engine.dispose()
    assert principals == ["kept"]


async def test_timestamps_come_back_aware_utc(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    plus_two = timezone(timedelta(hours=2))
    at = datetime(2026, 1, 31, 23, 30, tzinfo=plus_two)
    async with sessionmaker.begin() as session:
        entry = await AuditRepo(session, clock=lambda: at).append(principal="p", operation="op", status="OK")
        entry_id = entry.id
    async with sessionmaker() as session:
        stored = await session.get(AuditEntry, entry_id, populate_existing=True)
        assert stored is not None
        assert stored.at == at
        assert stored.at.tzinfo == UTC
        assert stored.at.hour == 21


async def test_naive_datetimes_are_refused(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session:
        repo = AuditRepo(session, clock=lambda: datetime(2026, 1, 1))  # naive on purpose
        with pytest.raises(sa.exc.StatementError, match="naive datetime"):
            await repo.append(principal="p", operation="op", status="OK")


def test_p2c_environment_is_cleared_for_every_test() -> None:
    import os

    assert [name for name in os.environ if name.startswith("P2C_")] == []
