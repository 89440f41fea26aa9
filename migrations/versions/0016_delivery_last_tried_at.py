"""deliveries.last_tried_at: when a send was last claimed, so the minute sweep can tell a retry
that Redis lost from one still under way

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 23:45:00

"""
from alembic import op
import sqlalchemy as sa
import deltacrown.timeutil


# revision identifiers, used by Alembic.
revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_tried_at', deltacrown.timeutil.UTCDateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_column('last_tried_at')
