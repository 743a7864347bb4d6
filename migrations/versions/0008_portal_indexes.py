"""Index client records by mobile number and messages by thread in id order

Revision ID: 0008_portal_indexes
Revises: 0007_daily_stats
Create Date: 2026-12-05 12:00:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0008_portal_indexes'
down_revision = '0007_daily_stats'
branch_labels = None
depends_on = None


def upgrade():
    # Built concurrently on PostgreSQL, so sends and callbacks keep writing to the tables meanwhile.
    with op.get_context().autocommit_block():
        op.create_index(
            'ix_clients_mobile_number', 'clients', ['mobile_number'], unique=False, postgresql_concurrently=True
        )
        op.create_index(
            'ix_messages_client_id_id', 'messages', ['client_id', 'id'], unique=False, postgresql_concurrently=True
        )


def downgrade():
    with op.get_context().autocommit_block():
        op.drop_index('ix_messages_client_id_id', table_name='messages', postgresql_concurrently=True)
        op.drop_index('ix_clients_mobile_number', table_name='clients', postgresql_concurrently=True)
