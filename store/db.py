"""Engines and sessions for the store, identical on SQLite (aiosqlite) and PostgreSQL (asyncpg).

    engine = make_engine("sqlite+aiosqlite:///p2c-data/store.db")
    sessionmaker = make_sessionmaker(engine)
    async with sessionmaker.begin() as session:   # one unit of work
        await OutboxRepo(session).add("invoice.status", key=invoice_id, payload={...})

SQLite is tuned on every new connection (WAL, foreign keys, busy timeout) and runs real transactions:
pysqlite's legacy mode only starts a transaction before DML, which breaks SAVEPOINT and lets reads
escape the unit of work, so we take over ``BEGIN`` ourselves (the recipe from the SQLAlchemy docs).

Which ``BEGIN``: a deferred SQLite transaction that reads and then writes cannot upgrade its lock once
another connection has committed since its read (SQLITE_BUSY at once — the busy timeout does not apply),
so every unit of work begins ``BEGIN IMMEDIATE``: it takes the write (RESERVED) lock up front, waiting up
to the busy timeout for its turn, and then never fails on the upgrade. A unit of work is

* a session begun explicitly — ``sessionmaker.begin()`` or ``session.begin()``;
* a Core transaction — ``engine.begin()`` / ``engine.connect()`` (migrations and other DDL).

A session used without ``begin()`` (``async with sessionmaker() as session``) is how the code base reads;
it autobegins a plain deferred ``BEGIN``: under WAL it reads its snapshot while a writer works and never
queues behind one. ``IMMEDIATE`` there would serialise every reader behind every writer (and behind each
other), so a read session left open across an upstream call would stall all writes. Anything that writes
uses ``begin()`` (or would, on SQLite, risk the failed upgrade described above). A Core connection can
ask for a deferred transaction with ``execution_options(sqlite_begin="DEFERRED")``.
PostgreSQL is untouched: row locks and MVCC need no such help.
"""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, SessionTransaction, SessionTransactionOrigin

from canonical.errors import ConfigurationError
from store.errors import StoreUnavailable

SUPPORTED_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")
SQLITE_BUSY_TIMEOUT_MS = 5_000
#: Connection execution option choosing how a SQLite transaction begins: "IMMEDIATE" (the default for Core
#: connections), "DEFERRED", or "SESSION" (a store session's connection: the session emits it, see below).
SQLITE_BEGIN = "sqlite_begin"


def mask_url(url: str | URL) -> str:
    """The URL as text with any password replaced by ``***`` — safe for logs and error messages."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        # Unparsable: mask anything between "://user:" and "@" by hand.
        head, sep, rest = url.partition("://")
        if sep and "@" in rest:
            creds, _, host = rest.rpartition("@")
            user = creds.split(":", 1)[0]
            return f"{head}://{user}:***@{host}" if ":" in creds else url
        return url


def parse_url(url: str) -> URL:
    """Parse and check a store URL, raising ``ConfigurationError`` naming it (password masked)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ConfigurationError(
            f"store database URL {mask_url(url)!r} cannot be parsed; expected e.g. "
            "'sqlite+aiosqlite:///p2c-data/store.db' or 'postgresql+asyncpg://user@host:5432/db'",
            setting="database_url",
        ) from exc
    if parsed.drivername not in SUPPORTED_DRIVERS:
        raise ConfigurationError(
            f"store database URL {mask_url(parsed)!r} uses driver {parsed.drivername!r}; "
            f"supported drivers: {', '.join(SUPPORTED_DRIVERS)}",
            setting="database_url",
        )
    if parsed.drivername.startswith("postgresql") and not parsed.database:
        raise ConfigurationError(
            f"store database URL {mask_url(parsed)!r} names no database", setting="database_url"
        )
    return parsed


def make_engine(url: str, *, echo: bool = False, **engine_kwargs: Any) -> AsyncEngine:
    """An ``AsyncEngine`` for ``url``; ``engine_kwargs`` go to ``create_async_engine`` (e.g. poolclass)."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_async_engine(parsed, echo=echo, **engine_kwargs)
        _tune_sqlite(engine)
        return engine
    options: dict[str, Any] = {
        "pool_size": 10,
        "max_overflow": 10,
        "pool_pre_ping": True,  # survive PG restarts and idle connections cut by a proxy
        "pool_recycle": 1_800,
    }
    if "poolclass" in engine_kwargs:
        options = {}
    options.update(engine_kwargs)
    return create_async_engine(parsed, echo=echo, **options)


def _tune_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, see module docstring
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        mode = connection.get_execution_options().get(SQLITE_BEGIN, "IMMEDIATE")
        if mode == "SESSION":
            return  # StoreSession's after_begin emits it, knowing whether the session was begun explicitly
        connection.exec_driver_sql("BEGIN" if mode == "DEFERRED" else "BEGIN IMMEDIATE")


class StoreSession(Session):
    """The store's sessions: on SQLite a unit of work (``begin()``) is ``BEGIN IMMEDIATE``, a read is not."""


@event.listens_for(StoreSession, "after_begin")
def _begin_sqlite_session(
    session: Session, transaction: SessionTransaction, connection: sa.Connection
) -> None:
    # Runs right after the session's connection began, before its first statement. Only for the root
    # transaction of a connection the session opened itself (marked SESSION by make_sessionmaker).
    if transaction.parent is not None or connection.get_execution_options().get(SQLITE_BEGIN) != "SESSION":
        return
    explicit = transaction.origin is SessionTransactionOrigin.BEGIN
    connection.exec_driver_sql("BEGIN IMMEDIATE" if explicit else "BEGIN")


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions whose objects stay readable after commit (results are returned to GraphQL after it).

    On SQLite, ``sessionmaker.begin()`` holds the write lock from its first statement (``BEGIN IMMEDIATE``)
    and a plain ``sessionmaker()`` reads in a deferred transaction; see the module docstring.
    """
    bind = engine
    if engine.dialect.name == "sqlite":
        bind = engine.execution_options(**{SQLITE_BEGIN: "SESSION"})
    return async_sessionmaker(bind, expire_on_commit=False, sync_session_class=StoreSession)


async def check_connection(engine: AsyncEngine) -> None:
    """Round-trip ``SELECT 1``; raise ``StoreUnavailable`` naming the database when it cannot be reached."""
    # Checked up front: aiosqlite leaves its worker thread behind when opening the file fails.
    missing = _missing_sqlite_directory(engine.url)
    if missing is not None:
        raise StoreUnavailable(mask_url(engine.url), reason=f"directory {missing} does not exist")
    try:
        async with engine.connect() as connection:
            await connection.execution_options(**{SQLITE_BEGIN: "DEFERRED"})
            await connection.execute(sa.text("SELECT 1"))
    except Exception as exc:  # driver errors differ per dialect (OSError, asyncpg, sqlite3)
        raise StoreUnavailable(mask_url(engine.url), reason=f"{type(exc).__name__}: {exc}") from exc


def _missing_sqlite_directory(url: URL) -> str | None:
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    directory = os.path.dirname(os.path.abspath(database))
    return None if os.path.isdir(directory) else directory
