"""review_skips: a task a moderator skipped goes behind their other choices

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 08:00:00.000000
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('review_skips',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('moderator', sa.String(length=128), nullable=False),
    sa.Column('skipped_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['task_id'], ['review_tasks.id'],
                            name=op.f('fk_review_skips_task_id_review_tasks'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_review_skips')),
    sa.UniqueConstraint('task_id', 'moderator', name=op.f('uq_review_skips_task_id'))
    )
    with op.batch_alter_table('review_skips', schema=None) as batch_op:
        batch_op.create_index('ix_review_skips_moderator', ['moderator', 'id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('review_skips', schema=None) as batch_op:
        batch_op.drop_index('ix_review_skips_moderator')

    op.drop_table('review_skips')
