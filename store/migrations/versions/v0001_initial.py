"""Initial schema: every table of the store.

Hand-reviewed autogenerate output. Types are spelled out here (not imported from store.models) so
the revision keeps meaning what it meant when the models move on.

Revision ID: 0001
Revises:
Create Date: 2026-11-27 09:59:05.124634
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# timezone-aware; store.models.UTCDateTime normalises to UTC on both dialects
TIMESTAMP = sa.DateTime(timezone=True)
# BIGINT on PostgreSQL; SQLite only autoincrements an INTEGER PRIMARY KEY
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('audit_entries',
    sa.Column('id', BIG_ID, autoincrement=True, nullable=False),
    sa.Column('principal', sa.String(length=255), nullable=False),
    sa.Column('roles', sa.JSON(), nullable=False),
    sa.Column('operation', sa.String(length=128), nullable=False),
    sa.Column('input', sa.JSON(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('correlation_id', sa.String(length=64), nullable=True),
    sa.Column('at', TIMESTAMP, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_entries'))
    )
    op.create_index(op.f('ix_audit_entries_at'), 'audit_entries', ['at'], unique=False)
    op.create_index(op.f('ix_audit_entries_correlation_id'), 'audit_entries', ['correlation_id'], unique=False)
    op.create_index(op.f('ix_audit_entries_operation_at'), 'audit_entries', ['operation', 'at'], unique=False)
    op.create_index(op.f('ix_audit_entries_principal_at'), 'audit_entries', ['principal', 'at'], unique=False)

    op.create_table('cross_references',
    sa.Column('id', BIG_ID, autoincrement=True, nullable=False),
    sa.Column('canonical_id', sa.String(length=36), nullable=False),
    sa.Column('entity_type', sa.String(length=64), nullable=False),
    sa.Column('system', sa.String(length=16), nullable=False),
    sa.Column('system_id', sa.String(length=128), nullable=False),
    sa.Column('legal_entity', sa.String(length=64), nullable=True),
    sa.Column('created_at', TIMESTAMP, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cross_references')),
    sa.UniqueConstraint('canonical_id', 'system', name=op.f('uq_cross_references_canonical_id_system')),
    sa.UniqueConstraint('system', 'entity_type', 'system_id', name=op.f('uq_cross_references_system_entity_type_system_id'))
    )
    op.create_table('idempotency_records',
    sa.Column('id', BIG_ID, autoincrement=True, nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('principal', sa.String(length=255), nullable=False),
    sa.Column('operation', sa.String(length=128), nullable=False),
    sa.Column('fingerprint', sa.String(length=128), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('response', sa.JSON(), nullable=True),
    sa.Column('http_status', sa.Integer(), nullable=True),
    sa.Column('created_at', TIMESTAMP, nullable=False),
    sa.Column('expires_at', TIMESTAMP, nullable=False),
    sa.CheckConstraint("status IN ('IN_PROGRESS', 'COMPLETED')", name=op.f('ck_idempotency_records_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_idempotency_records')),
    sa.UniqueConstraint('principal', 'operation', 'key', name=op.f('uq_idempotency_records_principal_operation_key'))
    )
    op.create_index(op.f('ix_idempotency_records_expires_at'), 'idempotency_records', ['expires_at'], unique=False)

    op.create_table('inbox_events',
    sa.Column('id', BIG_ID, autoincrement=True, nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('source_event_id', sa.String(length=255), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('received_at', TIMESTAMP, nullable=False),
    sa.Column('processed_at', TIMESTAMP, nullable=True),
    sa.CheckConstraint("status IN ('RECEIVED', 'PROCESSED', 'FAILED', 'IGNORED')", name=op.f('ck_inbox_events_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbox_events')),
    sa.UniqueConstraint('source', 'source_event_id', name=op.f('uq_inbox_events_source_source_event_id'))
    )
    op.create_index(op.f('ix_inbox_events_status_received_at'), 'inbox_events', ['status', 'received_at'], unique=False)

    op.create_table('integration_runs',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('flow', sa.String(length=64), nullable=False),
    sa.Column('subject', sa.String(length=128), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('legal_entity', sa.String(length=64), nullable=True),
    sa.Column('correlation_id', sa.String(length=64), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('input', sa.JSON(), nullable=True),
    sa.Column('started_at', TIMESTAMP, nullable=False),
    sa.Column('finished_at', TIMESTAMP, nullable=True),
    sa.CheckConstraint("status IN ('PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED')", name=op.f('ck_integration_runs_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_integration_runs'))
    )
    op.create_index(op.f('ix_integration_runs_correlation_id'), 'integration_runs', ['correlation_id'], unique=False)
    op.create_index(op.f('ix_integration_runs_flow_subject'), 'integration_runs', ['flow', 'subject'], unique=False)

    op.create_table('mapping_versions',
    sa.Column('id', BIG_ID, autoincrement=True, nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('fingerprint', sa.String(length=128), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('loaded_at', TIMESTAMP, nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mapping_versions')),
    sa.UniqueConstraint('fingerprint', name=op.f('uq_mapping_versions_fingerprint'))
    )
    op.create_table('outbox_events',
    sa.Column('id', BIG_ID, autoincrement=True, nullable=False),
    sa.Column('topic', sa.String(length=128), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('legal_entity', sa.String(length=64), nullable=True),
    sa.Column('created_at', TIMESTAMP, nullable=False),
    sa.Column('published_at', TIMESTAMP, nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox_events')),
    sqlite_autoincrement=True
    )
    op.create_index(op.f('ix_outbox_events_topic_id'), 'outbox_events', ['topic', 'id'], unique=False)
    op.create_index('ix_outbox_events_unpublished', 'outbox_events', ['id'], unique=False, postgresql_where=sa.text('published_at IS NULL'), sqlite_where=sa.text('published_at IS NULL'))

    op.create_table('sync_cursors',
    sa.Column('id', BIG_ID, autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('value', sa.String(length=255), nullable=False),
    sa.Column('updated_at', TIMESTAMP, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sync_cursors')),
    sa.UniqueConstraint('name', name=op.f('uq_sync_cursors_name'))
    )
    op.create_table('work_items',
    sa.Column('id', BIG_ID, autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('dedupe_key', sa.String(length=255), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.JSON(), nullable=True),
    sa.Column('available_at', TIMESTAMP, nullable=False),
    sa.Column('claimed_by', sa.String(length=128), nullable=True),
    sa.Column('lease_expires_at', TIMESTAMP, nullable=True),
    sa.Column('legal_entity', sa.String(length=64), nullable=True),
    sa.Column('created_at', TIMESTAMP, nullable=False),
    sa.Column('updated_at', TIMESTAMP, nullable=False),
    sa.CheckConstraint("status IN ('QUEUED', 'CLAIMED', 'DONE', 'FAILED')", name=op.f('ck_work_items_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_work_items')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_work_items_dedupe_key'))
    )
    op.create_index(op.f('ix_work_items_kind_status_available_at'), 'work_items', ['kind', 'status', 'available_at'], unique=False)
    op.create_index(op.f('ix_work_items_status_lease_expires_at'), 'work_items', ['status', 'lease_expires_at'], unique=False)

    op.create_table('integration_exceptions',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('flow', sa.String(length=64), nullable=False),
    sa.Column('reason_code', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('step', sa.String(length=255), nullable=True),
    sa.Column('run_id', sa.String(length=36), nullable=True),
    sa.Column('subject', sa.String(length=128), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=True),
    sa.Column('upstream_error', sa.JSON(), nullable=True),
    sa.Column('correlation_id', sa.String(length=64), nullable=True),
    sa.Column('legal_entity', sa.String(length=64), nullable=True),
    sa.Column('occurrences', sa.Integer(), nullable=False),
    sa.Column('created_at', TIMESTAMP, nullable=False),
    sa.Column('updated_at', TIMESTAMP, nullable=False),
    sa.Column('resolved_at', TIMESTAMP, nullable=True),
    sa.Column('resolution_note', sa.Text(), nullable=True),
    sa.Column('dismissed_by', sa.String(length=255), nullable=True),
    sa.CheckConstraint("status IN ('OPEN', 'REPLAYING', 'RESOLVED', 'DISMISSED')", name=op.f('ck_integration_exceptions_status')),
    sa.ForeignKeyConstraint(['run_id'], ['integration_runs.id'], name=op.f('fk_integration_exceptions_run_id_integration_runs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_integration_exceptions'))
    )
    op.create_index(op.f('ix_integration_exceptions_flow_subject'), 'integration_exceptions', ['flow', 'subject'], unique=False)
    op.create_index(op.f('ix_integration_exceptions_run_id'), 'integration_exceptions', ['run_id'], unique=False)
    op.create_index(op.f('ix_integration_exceptions_legal_entity_status'), 'integration_exceptions', ['legal_entity', 'status'], unique=False)
    op.create_index(op.f('ix_integration_exceptions_status_created_at'), 'integration_exceptions', ['status', 'created_at'], unique=False)

    op.create_table('integration_steps',
    sa.Column('id', BIG_ID, autoincrement=True, nullable=False),
    sa.Column('run_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('error', sa.JSON(), nullable=True),
    sa.Column('started_at', TIMESTAMP, nullable=True),
    sa.Column('finished_at', TIMESTAMP, nullable=True),
    sa.CheckConstraint("status IN ('PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED')", name=op.f('ck_integration_steps_status')),
    sa.ForeignKeyConstraint(['run_id'], ['integration_runs.id'], name=op.f('fk_integration_steps_run_id_integration_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_integration_steps')),
    sa.UniqueConstraint('key', name=op.f('uq_integration_steps_key'))
    )
    op.create_index(op.f('ix_integration_steps_run_id'), 'integration_steps', ['run_id'], unique=False)


def downgrade() -> None:
    op.drop_table('integration_steps')
    op.drop_table('integration_exceptions')
    op.drop_table('work_items')
    op.drop_table('sync_cursors')
    op.drop_table('outbox_events')
    op.drop_table('mapping_versions')
    op.drop_table('integration_runs')
    op.drop_table('inbox_events')
    op.drop_table('idempotency_records')
    op.drop_table('cross_references')
    op.drop_table('audit_entries')
