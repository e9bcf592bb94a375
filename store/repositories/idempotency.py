"""Idempotency keys on mutations (IETF Idempotency-Key draft, Stripe semantics).

    outcome = await IdempotencyRepo(session).begin(key, principal, "provisionEngagement", fp)
    if outcome.replay:
        return outcome.response                      # stored result, nothing runs again
    ...                                              # do the work
    await repo.complete(key, principal, "provisionEngagement", response, http_status=200)

Commit ``begin`` on its own before doing the work, so a concurrent request with the same key sees the
record IN_PROGRESS and gets ``Conflict``. When the input fails validation call ``release``: nothing is
kept, and the client may fix the input and retry with the same key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import sqlalchemy as sa

from canonical.errors import Conflict, IdempotencyKeyReused, NotFound
from store.models import IdempotencyRecord
from store.repositories._base import Repository

DEFAULT_TTL = timedelta(hours=24)


def fingerprint(payload: Any) -> str:
    """A stable digest of a request input: key order and whitespace do not matter."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class IdempotencyOutcome:
    kind: Literal["NEW", "REPLAY"]
    response: Any = None
    http_status: int | None = None

    @property
    def replay(self) -> bool:
        return self.kind == "REPLAY"


NEW = IdempotencyOutcome("NEW")


class IdempotencyRepo(Repository):
    async def begin(
        self,
        key: str,
        principal: str,
        operation: str,
        fingerprint: str,
        *,
        ttl: timedelta = DEFAULT_TTL,
    ) -> IdempotencyOutcome:
        """Claim ``key`` for this request: NEW (go ahead) or REPLAY (stored response).

        Raises ``IdempotencyKeyReused`` when the key came with a different input, ``Conflict`` while the
        first request with the key is still running. An expired record counts as absent.
        """
        now = self.clock()
        insert = (
            self.upsert_insert(IdempotencyRecord)
            .values(
                key=key,
                principal=principal,
                operation=operation,
                fingerprint=fingerprint,
                status="IN_PROGRESS",
                created_at=now,
                expires_at=now + ttl,
            )
            .on_conflict_do_nothing(index_elements=["principal", "operation", "key"])
            .returning(IdempotencyRecord.id)
        )
        if (await self.session.execute(insert)).scalar_one_or_none() is not None:
            return NEW
        record = await self._get(key, principal, operation, for_update=True)
        if record is None:  # purged between our insert and select: try once more
            return await self.begin(key, principal, operation, fingerprint, ttl=ttl)
        if record.expires_at <= now:
            record.fingerprint = fingerprint
            record.status = "IN_PROGRESS"
            record.response = None
            record.http_status = None
            record.created_at = now
            record.expires_at = now + ttl
            await self.session.flush()
            return NEW
        if record.fingerprint != fingerprint:
            raise IdempotencyKeyReused(key, operation)
        if record.status == "IN_PROGRESS":
            raise Conflict(
                f"a request with idempotency key {key!r} for {operation} is still in progress",
                operation=operation,
            )
        return IdempotencyOutcome("REPLAY", response=record.response, http_status=record.http_status)

    async def complete(
        self, key: str, principal: str, operation: str, response: Any, *, http_status: int = 200
    ) -> None:
        """Store the response that every later request with this key gets back."""
        result = await self.session.execute(
            sa.update(IdempotencyRecord)
            .where(*self._identity(key, principal, operation))
            .values(status="COMPLETED", response=response, http_status=http_status)
        )
        if _rowcount(result) == 0:
            raise NotFound("idempotency record", key)

    async def release(self, key: str, principal: str, operation: str) -> None:
        """Forget ``key`` (the request failed validation or before any side effect): a retry is NEW."""
        await self.session.execute(
            sa.delete(IdempotencyRecord).where(*self._identity(key, principal, operation))
        )

    async def purge_expired(self) -> int:
        result = await self.session.execute(
            sa.delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= self.clock())
        )
        return _rowcount(result)

    async def get(self, key: str, principal: str, operation: str) -> IdempotencyRecord | None:
        return await self._get(key, principal, operation, for_update=False)

    async def _get(
        self, key: str, principal: str, operation: str, *, for_update: bool
    ) -> IdempotencyRecord | None:
        query = (
            sa.select(IdempotencyRecord)
            .where(*self._identity(key, principal, operation))
            .execution_options(populate_existing=True)
        )
        if for_update:
            query = query.with_for_update()
        return (await self.session.execute(query)).scalar_one_or_none()

    @staticmethod
    def _identity(key: str, principal: str, operation: str) -> tuple[sa.ColumnElement[bool], ...]:
        return (
            IdempotencyRecord.key == key,
            IdempotencyRecord.principal == principal,
            IdempotencyRecord.operation == operation,
        )


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
