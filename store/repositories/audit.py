"""The audit trail: who did what, when, with which input and result. Append-only by construction —
this repository has no update or delete."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from store.models import AuditEntry
from store.repositories._base import Repository


class AuditRepo(Repository):
    async def append(
        self,
        *,
        principal: str,
        operation: str,
        status: str,
        roles: Sequence[str] = (),
        input: Any = None,
        result: Any = None,
        correlation_id: str | None = None,
    ) -> AuditEntry:
        entry = AuditEntry(
            principal=principal,
            roles=list(roles),
            operation=operation,
            input=input,
            result=result,
            status=status,
            correlation_id=correlation_id,
            at=self.clock(),
        )
        self.session.add(entry)
        await self.session.flush()
        return entry

    async def query(
        self,
        *,
        operation: str | None = None,
        principal: str | None = None,
        correlation_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> Sequence[AuditEntry]:
        """Newest first; ``since`` inclusive, ``until`` exclusive."""
        query = sa.select(AuditEntry)
        if operation is not None:
            query = query.where(AuditEntry.operation == operation)
        if principal is not None:
            query = query.where(AuditEntry.principal == principal)
        if correlation_id is not None:
            query = query.where(AuditEntry.correlation_id == correlation_id)
        if since is not None:
            query = query.where(AuditEntry.at >= since)
        if until is not None:
            query = query.where(AuditEntry.at < until)
        query = query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit)
        return (await self.session.execute(query)).scalars().all()
