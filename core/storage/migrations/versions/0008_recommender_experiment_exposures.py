"""recommender experiment exposures: each user's first feed under an experiment

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 08:45:00.000000
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('experiment_exposures',
    sa.Column('experiment_id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=128), nullable=False),
    sa.Column('arm', sa.String(length=64), nullable=False),
    sa.Column('first_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('experiment_id', 'user_id', name=op.f('pk_experiment_exposures'))
    )


def downgrade() -> None:
    op.drop_table('experiment_exposures')
