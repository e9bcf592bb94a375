"""The exception queue: every failed write, for a person to fix and replay, or dismiss with a reason.

An exception is keyed by what failed (flow + subject + step): when the same thing fails again — typically
a replay that still does not go through — the open exception is updated and its ``occurrences`` counted,
rather than a second one piling up.

    OPEN ──replay──▶ REPLAYING ──ok──▶ RESOLVED
      ▲                  │
      └────fails again───┘            OPEN/REPLAYING ──dismiss──▶ DISMISSED
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from canonical.errors import Conflict, NotFound
from store.models import IntegrationException
from store.repositories._base import Repository

ACTIVE = ("OPEN", "REPLAYING")


class ExceptionRepo(Repository):
    async def open(
        self,
        *,
        flow: str,
        reason_code: str,
        payload: Any = None,
        upstream_error: Any = None,
        step: str | None = None,
        run_id: str | None = None,
        subject: str | None = None,
        correlation_id: str | None = None,
        legal_entity: str | None = None,
    ) -> IntegrationException:
        """Raise an exception, or re-open the active one for the same flow, subject and step."""
        now = self.clock()
        existing = None
        if subject is not None:
            query = (
                sa.select(IntegrationException)
                .where(
                    IntegrationException.flow == flow,
                    IntegrationException.subject == subject,
                    IntegrationException.step.is_(None)
                    if step is None
                    else IntegrationException.step == step,
                    IntegrationException.status.in_(ACTIVE),
                )
                .order_by(IntegrationException.created_at)
                .limit(1)
                .with_for_update()
            )
            existing = (await self.session.execute(query)).scalar_one_or_none()
        if existing is None:
            exception = IntegrationException(
                flow=flow,
                reason_code=reason_code,
                status="OPEN",
                step=step,
                run_id=run_id,
                subject=subject,
                payload=payload,
                upstream_error=upstream_error,
                correlation_id=correlation_id,
                legal_entity=legal_entity,
                occurrences=1,
                created_at=now,
                updated_at=now,
            )
            self.session.add(exception)
        else:
            exception = existing
            exception.status = "OPEN"
            exception.reason_code = reason_code
            exception.upstream_error = upstream_error
            exception.occurrences += 1
            exception.updated_at = now
            if payload is not None:
                exception.payload = payload
            if run_id is not None:
                exception.run_id = run_id
            if correlation_id is not None:
                exception.correlation_id = correlation_id
        await self.session.flush()
        return exception

    async def get(self, exception_id: str) -> IntegrationException:
        exception = await self.session.get(IntegrationException, exception_id, populate_existing=True)
        if exception is None:
            raise NotFound("integration exception", exception_id)
        return exception

    async def list(
        self,
        *,
        status: str | Sequence[str] | None = None,
        flow: str | None = None,
        reason_code: str | None = None,
        legal_entity: str | None = None,
        subject: str | None = None,
        older_than: timedelta | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Sequence[IntegrationException]:
        """Oldest first (the ones waiting longest need a person most)."""
        query = sa.select(IntegrationException)
        if isinstance(status, str):
            query = query.where(IntegrationException.status == status)
        elif status is not None:
            query = query.where(IntegrationException.status.in_(list(status)))
        if flow is not None:
            query = query.where(IntegrationException.flow == flow)
        if reason_code is not None:
            query = query.where(IntegrationException.reason_code == reason_code)
        if legal_entity is not None:
            query = query.where(IntegrationException.legal_entity == legal_entity)
        if subject is not None:
            query = query.where(IntegrationException.subject == subject)
        if older_than is not None:
            query = query.where(IntegrationException.created_at <= self.clock() - older_than)
        query = query.order_by(IntegrationException.created_at, IntegrationException.id)
        return (await self.session.execute(query.limit(limit).offset(offset))).scalars().all()

    async def count_by_status(self) -> dict[str, int]:
        rows = await self.session.execute(
            sa.select(IntegrationException.status, sa.func.count()).group_by(IntegrationException.status)
        )
        return {status: int(count) for status, count in rows}

    async def update_payload(self, exception_id: str, payload: Any) -> IntegrationException:
        """Fix the payload before a replay."""
        exception = await self._active(exception_id, "edit")
        exception.payload = payload
        exception.updated_at = self.clock()
        await self.session.flush()
        return exception

    async def mark_replaying(self, exception_id: str) -> IntegrationException:
        exception = await self._active(exception_id, "replay")
        if exception.status == "REPLAYING":
            raise Conflict(f"exception {exception_id} is already being replayed", exceptionId=exception_id)
        exception.status = "REPLAYING"
        exception.updated_at = self.clock()
        await self.session.flush()
        return exception

    async def mark_resolved(self, exception_id: str, note: str | None = None) -> IntegrationException:
        exception = await self._active(exception_id, "resolve")
        now = self.clock()
        exception.status = "RESOLVED"
        exception.resolved_at = now
        exception.updated_at = now
        exception.resolution_note = note
        await self.session.flush()
        return exception

    async def dismiss(self, exception_id: str, *, by: str, note: str) -> IntegrationException:
        exception = await self._active(exception_id, "dismiss")
        now = self.clock()
        exception.status = "DISMISSED"
        exception.dismissed_by = by
        exception.resolution_note = note
        exception.resolved_at = now
        exception.updated_at = now
        await self.session.flush()
        return exception

    async def _active(self, exception_id: str, action: str) -> IntegrationException:
        exception = await self.get(exception_id)
        if exception.status not in ACTIVE:
            raise Conflict(
                f"cannot {action} exception {exception_id}: it is {exception.status}",
                exceptionId=exception_id,
                status=exception.status,
            )
        return exception
