"""Add PIMS ids, quiet hours, scheduled sends, idempotency keys and staff lockout

Revision ID: 0005_pims_api_security
Revises: 0004_sms_stats
Create Date: 2026-12-04 17:58:22.666404

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005_pims_api_security'
down_revision = '0004_sms_stats'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('idempotency_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('clinic_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('response_body', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['clinic_id'], ['clinics.id'], name=op.f('fk_idempotency_keys_clinic_id_clinics')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_idempotency_keys')),
    sa.UniqueConstraint('clinic_id', 'key', name=op.f('uq_idempotency_keys_clinic_id_key'))
    )
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_used_at', sa.DateTime(), nullable=True))

    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pims_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('pims_numbers', sa.Text(), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_clients_clinic_id_pims_id'), ['clinic_id', 'pims_id'])

    with op.batch_alter_table('clinics', schema=None) as batch_op:
        batch_op.add_column(sa.Column('timezone', sa.String(length=64), nullable=False, server_default='America/New_York'))
        batch_op.add_column(sa.Column('quiet_start_minute', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('quiet_end_minute', sa.Integer(), nullable=True))

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('send_at', sa.DateTime(), nullable=True))

    with op.batch_alter_table('staff_users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('is_clinic_admin', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('failed_logins', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('locked_until', sa.DateTime(), nullable=True))

def downgrade():
    with op.batch_alter_table('staff_users', schema=None) as batch_op:
        batch_op.drop_column('locked_until')
        batch_op.drop_column('failed_logins')
        batch_op.drop_column('is_clinic_admin')

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('send_at')

    with op.batch_alter_table('clinics', schema=None) as batch_op:
        batch_op.drop_column('quiet_end_minute')
        batch_op.drop_column('quiet_start_minute')
        batch_op.drop_column('timezone')

    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_clients_clinic_id_pims_id'), type_='unique')
        batch_op.drop_column('pims_numbers')
        batch_op.drop_column('pims_id')

    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_column('last_used_at')

    op.drop_table('idempotency_keys')
