"""Add hourly SMS stats summed across clinics, rollup marks and an index of idempotency keys by age

Revision ID: 0009_fleet_stats
Revises: 0008_portal_indexes
Create Date: 2026-12-04 21:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009_fleet_stats'
down_revision = '0008_portal_indexes'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('sms_fleet_hourly_stats',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('hour', sa.DateTime(), nullable=True),
    sa.Column('outcome', sa.String(length=10), nullable=False),
    sa.Column('category', sa.String(length=20), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sms_fleet_hourly_stats')),
    sa.UniqueConstraint('hour', 'outcome', 'category', name=op.f('uq_sms_fleet_hourly_stats_hour_outcome_category'))
    )
    op.create_table('sms_rollup_marks',
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('until', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_sms_rollup_marks'))
    )
    op.create_index('ix_idempotency_keys_created_at', 'idempotency_keys', ['created_at'], unique=False)


def downgrade():
    op.drop_index('ix_idempotency_keys_created_at', table_name='idempotency_keys')
    op.drop_table('sms_rollup_marks')
    op.drop_table('sms_fleet_hourly_stats')
