"""What every repository shares: the session it is handed, a clock, and dialect-aware INSERTs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import utcnow

Clock = Callable[[], datetime]


class Repository:
    """Repositories own SQL, never transactions: the caller's session decides what commits together.

    ``clock`` returns an aware UTC datetime; tests pass a fixed one to travel in time.
    """

    def __init__(self, session: AsyncSession, *, clock: Clock = utcnow) -> None:
        self.session = session
        self.clock = clock

    @property
    def dialect(self) -> str:
        return self.session.get_bind().dialect.name

    def upsert_insert(self, table: Any) -> postgresql.Insert | sqlite.Insert:
        """An INSERT that supports ``on_conflict_do_nothing/do_update`` on the session's dialect."""
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)
