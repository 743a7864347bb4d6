"""Spread each clinic's hourly SMS stats over stripes, so concurrent callbacks update different rows

Revision ID: 0010_stat_stripes
Revises: 0009_fleet_stats
Create Date: 2026-12-04 23:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010_stat_stripes'
down_revision = '0009_fleet_stats'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('sms_hourly_stats', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stripe', sa.SmallInteger(), server_default='0', nullable=False))
        batch_op.drop_constraint('uq_sms_hourly_stats_clinic_id_hour_outcome_category', type_='unique')
        batch_op.create_unique_constraint(
            batch_op.f('uq_sms_hourly_stats_clinic_id_hour_outcome_category_stripe'),
            ['clinic_id', 'hour', 'outcome', 'category', 'stripe'],
        )


GROUP = (
    "s.clinic_id = sms_hourly_stats.clinic_id AND s.hour = sms_hourly_stats.hour"
    " AND s.outcome = sms_hourly_stats.outcome AND s.category = sms_hourly_stats.category"
)


def downgrade():
    # Each hour, outcome and category keeps its oldest row, which takes the sum of its stripes.
    op.execute(
        f"UPDATE sms_hourly_stats SET count = (SELECT sum(s.count) FROM sms_hourly_stats s WHERE {GROUP})"
        f" WHERE id = (SELECT min(s.id) FROM sms_hourly_stats s WHERE {GROUP})"
    )
    op.execute(f"DELETE FROM sms_hourly_stats WHERE id <> (SELECT min(s.id) FROM sms_hourly_stats s WHERE {GROUP})")
    with op.batch_alter_table('sms_hourly_stats', schema=None) as batch_op:
        batch_op.drop_constraint('uq_sms_hourly_stats_clinic_id_hour_outcome_category_stripe', type_='unique')
        batch_op.create_unique_constraint(
            batch_op.f('uq_sms_hourly_stats_clinic_id_hour_outcome_category'),
            ['clinic_id', 'hour', 'outcome', 'category'],
        )
        batch_op.drop_column('stripe')
