"""Add hourly SMS stats and escalations

Revision ID: 0004_sms_stats
Revises: 0003
Create Date: 2026-12-04 17:51:47.985187

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004_sms_stats'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('sms_hourly_stats',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('clinic_id', sa.Integer(), nullable=False),
    sa.Column('hour', sa.DateTime(), nullable=True),
    sa.Column('outcome', sa.String(length=10), nullable=False),
    sa.Column('category', sa.String(length=20), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['clinic_id'], ['clinics.id'], name=op.f('fk_sms_hourly_stats_clinic_id_clinics')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sms_hourly_stats')),
    sa.UniqueConstraint('clinic_id', 'hour', 'outcome', 'category', name=op.f('uq_sms_hourly_stats_clinic_id_hour_outcome_category'))
    )
    with op.batch_alter_table('sms_hourly_stats', schema=None) as batch_op:
        batch_op.create_index('ix_sms_hourly_stats_hour', ['hour'], unique=False)

    op.create_table('escalations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('clinic_id', sa.Integer(), nullable=False),
    sa.Column('staff_id', sa.Integer(), nullable=False),
    sa.Column('figures', sa.Text(), nullable=False),
    sa.Column('note', sa.String(length=500), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['clinic_id'], ['clinics.id'], name=op.f('fk_escalations_clinic_id_clinics')),
    sa.ForeignKeyConstraint(['staff_id'], ['staff_users.id'], name=op.f('fk_escalations_staff_id_staff_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_escalations'))
    )
    with op.batch_alter_table('escalations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_escalations_clinic_id'), ['clinic_id'], unique=False)



def downgrade():
    with op.batch_alter_table('escalations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_escalations_clinic_id'))

    op.drop_table('escalations')
    with op.batch_alter_table('sms_hourly_stats', schema=None) as batch_op:
        batch_op.drop_index('ix_sms_hourly_stats_hour')

    op.drop_table('sms_hourly_stats')
