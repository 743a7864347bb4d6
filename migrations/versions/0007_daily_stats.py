"""Add daily SMS stats, closed days and an index of unsettled deliveries

Revision ID: 0007_daily_stats
Revises: 0006_api
Create Date: 2026-12-04 20:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007_daily_stats'
down_revision = '0006_api'
branch_labels = None
depends_on = None

UNSETTLED = "status IN ('queued', 'sending', 'accepted', 'sent')"


def upgrade():
    op.create_table('sms_daily_stats',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('clinic_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.DateTime(), nullable=True),
    sa.Column('outcome', sa.String(length=10), nullable=False),
    sa.Column('category', sa.String(length=20), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['clinic_id'], ['clinics.id'], name=op.f('fk_sms_daily_stats_clinic_id_clinics')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sms_daily_stats')),
    sa.UniqueConstraint('clinic_id', 'day', 'outcome', 'category', name=op.f('uq_sms_daily_stats_clinic_id_day_outcome_category'))
    )
    with op.batch_alter_table('sms_daily_stats', schema=None) as batch_op:
        batch_op.create_index('ix_sms_daily_stats_day', ['day'], unique=False)

    op.create_table('sms_closed_days',
    sa.Column('day', sa.DateTime(), nullable=False),
    sa.Column('closed_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('day', name=op.f('pk_sms_closed_days'))
    )
    op.create_index(
        'ix_deliveries_unsettled', 'deliveries', ['status', 'id'], unique=False,
        postgresql_where=sa.text(UNSETTLED), sqlite_where=sa.text(UNSETTLED),
    )


def downgrade():
    op.drop_index('ix_deliveries_unsettled', table_name='deliveries')
    op.drop_table('sms_closed_days')
    with op.batch_alter_table('sms_daily_stats', schema=None) as batch_op:
        batch_op.drop_index('ix_sms_daily_stats_day')

    op.drop_table('sms_daily_stats')
