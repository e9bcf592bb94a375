"""Fixtures for the whole suite.

Environment
    Every test starts with no ``P2C_*`` variables (autouse ``_clear_p2c_environment``), so a developer's
    shell never leaks into settings. ``P2C_TEST_DATABASE_URL`` is read once, at import, before that
    clearing: it turns the PostgreSQL half of the database fixtures on. Without it those tests are skipped
    (reason mentions P2C_TEST_DATABASE_URL); with it but the server unreachable they fail.

Databases — the parametrized fixtures run a test twice, ``[sqlite]`` and ``[postgres]``:

    async def test_links(sessionmaker):                       # repository tests: use this
        async with sessionmaker.begin() as session:
            await CrossReferenceRepo(session).link(...)

    ``sessionmaker``          an ``async_sessionmaker`` isolated per test. SQLite: a fresh migrated file in
                              ``tmp_path``. PostgreSQL: the shared test database (migrated once per
                              session) inside an outer transaction rolled back after the test;
                              ``session.commit()`` only releases a SAVEPOINT. One connection underneath,
                              so do not run two sessions *concurrently* from it.
    ``engine``                ``AsyncEngine`` on ``database_url``. On PostgreSQL commits through it are
                              real and shared — use it for read-only checks (dialect, revision).
    ``database_url``          URL of the migrated database behind the two above.
    ``scratch_database_url``  a migrated private database where commits are real and concurrency is
                              allowed (SQLite: a tmp file; PostgreSQL: ``CREATE DATABASE p2c_test_<hex>``,
                              dropped afterwards). For workers, concurrent claimers, subprocesses.
    ``empty_database_url``    like the scratch one but never migrated (migration tests).
    ``pg_scratch_url``        PostgreSQL only: an empty private database's URL (skipped without the
                              variable), e.g. to hand to a worker subprocess.
    ``postgres_url``          session-scoped: the shared test database, migrated to head.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from store.db import check_connection, make_engine, make_sessionmaker
from store.errors import StoreUnavailable
from store.migrate import upgrade_to_head
from tests.subgraphs.erp_tryton.tryton_support import Server, tryton_server

TEST_DATABASE_URL: str | None = os.environ.get("P2C_TEST_DATABASE_URL") or None
POSTGRES_SKIP_REASON = "P2C_TEST_DATABASE_URL not set: PostgreSQL tests skipped"
BACKENDS = ["sqlite", "postgres"]

T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from a synchronous fixture (which never runs inside the test's event loop)."""
    return asyncio.run(coro)


@pytest.fixture(autouse=True)
def _clear_p2c_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("P2C_"):
            monkeypatch.delenv(name)


_REQUIRE_POSTGRES = False


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-postgres",
        action="store_true",
        help="fail (instead of skip) PostgreSQL tests when P2C_TEST_DATABASE_URL is missing; CI sets it",
    )
    parser.addoption(
        "--require-browser",
        action="store_true",
        help="fail (instead of skip) the console's browser tests when Chromium or Playwright is missing; "
        "CI sets it (see tests/console/conftest.py)",
    )


def pytest_configure(config: pytest.Config) -> None:
    global _REQUIRE_POSTGRES
    _REQUIRE_POSTGRES = bool(config.getoption("--require-postgres"))


def _require_postgres() -> str:
    if TEST_DATABASE_URL is None:
        if _REQUIRE_POSTGRES:
            pytest.fail("--require-postgres given but P2C_TEST_DATABASE_URL is not set", pytrace=False)
        pytest.skip(POSTGRES_SKIP_REASON)  # only when P2C_TEST_DATABASE_URL is unset (a laptop)
    return TEST_DATABASE_URL


async def _check(url: str) -> None:
    engine = make_engine(url, poolclass=sa.NullPool)
    try:
        await check_connection(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = _require_postgres()
    try:
        _run(_check(url))
    except StoreUnavailable as exc:
        pytest.fail(f"P2C_TEST_DATABASE_URL is set but unusable: {exc}", pytrace=False)
    upgrade_to_head(url)
    return url


@contextmanager
def _scratch_postgres(postgres_url: str) -> Iterator[str]:
    """A new empty database beside the test database, dropped afterwards."""
    name = f"p2c_test_{uuid.uuid4().hex[:16]}"
    _run(_admin(postgres_url, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        _run(_admin(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def pg_scratch_url(postgres_url: str) -> Iterator[str]:
    with _scratch_postgres(postgres_url) as url:
        yield url


async def _admin(url: str, statement: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.execute(sa.text(statement))
    finally:
        await engine.dispose()


def _sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    url = _sqlite_url(tmp_path / "store.db")
    upgrade_to_head(url)
    return url


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_scratch_url")
        return url
    return _sqlite_url(tmp_path / "empty.db")


@pytest.fixture(params=BACKENDS)
def scratch_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_scratch_url")
    else:
        url = _sqlite_url(tmp_path / "scratch.db")
    upgrade_to_head(url)
    return url


@pytest.fixture(scope="module", params=BACKENDS)
def module_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated store of the module's own, on each backend: for modules that build state once and only
    read it (a PostgreSQL one is a database of its own, dropped after the module)."""
    if request.param == "postgres":
        with _scratch_postgres(request.getfixturevalue("postgres_url")) as url:
            upgrade_to_head(url)
            yield url
        return
    url = _sqlite_url(tmp_path_factory.mktemp("store") / "store.db")
    upgrade_to_head(url)
    yield url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def sessionmaker(engine: AsyncEngine) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    if engine.dialect.name != "postgresql":
        yield make_sessionmaker(engine)
        return
    # SQLAlchemy's "join a session into an external transaction" recipe: whatever the test commits is
    # a SAVEPOINT inside this outer transaction, and the rollback leaves the shared database untouched.
    async with engine.connect() as connection:
        outer = await connection.begin()
        try:
            yield async_sessionmaker(
                bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
            )
        finally:
            await outer.rollback()


@pytest.fixture(scope="module")
def tryton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real trytond on a free port over this module's own copy of the built demo database (the build
    is done once per run and kept as a snapshot: ``tests/subgraphs/erp_tryton/tryton_support.py``)."""
    with tryton_server(tmp_path_factory.mktemp("tryton")) as server:
        yield server
