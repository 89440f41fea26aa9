"""index deliveries.event_id

Handling an event reads its deliveries, and deleting an old outbox event makes
PostgreSQL look up the deliveries that reference it (ON DELETE SET NULL): without
an index each is a scan of the whole deliveries table.

Revision ID: 0003
Revises: 0002_delivery_skipped
Create Date: 2026-12-01 12:00:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002_delivery_skipped'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deliveries_event_id'), ['event_id'], unique=False)


def downgrade():
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deliveries_event_id'))
