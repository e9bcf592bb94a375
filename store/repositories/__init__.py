"""Repositories: they own the store's SQL. Each takes the caller's ``AsyncSession`` (never opens its own)
and an optional ``clock``; the caller's unit of work decides what commits together."""

from __future__ import annotations

from store.repositories.audit import AuditRepo
from store.repositories.cursors import CursorRepo, MappingVersionRepo
from store.repositories.events import InboxRepo, OutboxRepo
from store.repositories.exceptions import ExceptionRepo
from store.repositories.idempotency import IdempotencyOutcome, IdempotencyRepo, fingerprint
from store.repositories.queue import QueueStats, WorkQueueRepo, backoff
from store.repositories.runs import RunRepo
from store.repositories.xrefs import CrossReferenceRepo

__all__ = [
    "AuditRepo",
    "CrossReferenceRepo",
    "CursorRepo",
    "ExceptionRepo",
    "IdempotencyOutcome",
    "IdempotencyRepo",
    "InboxRepo",
    "MappingVersionRepo",
    "OutboxRepo",
    "QueueStats",
    "RunRepo",
    "WorkQueueRepo",
    "backoff",
    "fingerprint",
]
