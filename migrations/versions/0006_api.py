"""Mark PIMS clients without a textable number and record their last PIMS update

Revision ID: 0006_api
Revises: 0005_pims_api_security
Create Date: 2026-12-05 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006_api'
down_revision = '0005_pims_api_security'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('textable', sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column('pims_updated_at', sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.drop_column('pims_updated_at')
        batch_op.drop_column('textable')
