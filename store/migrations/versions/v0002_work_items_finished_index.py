"""Work items: an index for what finished when (``syncStatus`` throughput, pruning finished items).

``SyncStatsRepo.throughput`` counts the items of some kinds that became DONE or FAILED within the last
minutes, and ``WorkQueueRepo.prune_done`` deletes DONE items past their retention: both filter on
(kind, status, updated_at). Without this index both read every finished item of the kind — after a
month-end spike, tens of thousands per call.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07 04:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_work_items_kind_status_updated_at"),
        "work_items",
        ["kind", "status", "updated_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_work_items_kind_status_updated_at"), table_name="work_items")
