"""Integration steps carry the correlation id of the attempt that last claimed them.

A replay resumes a run under the replay's own correlation id (the run's column moves to it), so the id of
the attempt that did a step was lost. Each step now keeps the id of its last attempt, and a search by
correlation id finds a run through its run or through any of its steps: one id finds everything.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 05:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("integration_steps") as batch:
        batch.add_column(sa.Column("correlation_id", sa.String(length=64), nullable=True))
    op.create_index(
        op.f("ix_integration_steps_correlation_id"), "integration_steps", ["correlation_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_integration_steps_correlation_id"), table_name="integration_steps")
    with op.batch_alter_table("integration_steps") as batch:
        batch.drop_column("correlation_id")
