"""deliveries.status may be 'skipped' (the recipient withdrew consent before the send)

Revision ID: 0002_delivery_skipped
Revises: 0001
Create Date: 2026-12-01 11:55:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0002_delivery_skipped'
down_revision = '0001'
branch_labels = None
depends_on = None


def _status_check(batch_op, statuses):
    batch_op.drop_constraint(op.f('ck_deliveries_status'), type_='check')
    batch_op.create_check_constraint(op.f('ck_deliveries_status'),
                                     "status IN (" + ", ".join(f"'{s}'" for s in statuses) + ")")


def upgrade():
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        _status_check(batch_op, ('pending', 'sent', 'failed', 'skipped'))


def downgrade():
    # A skipped delivery was never sent; before this revision that was recorded as failed.
    op.execute("UPDATE deliveries SET status = 'failed' WHERE status = 'skipped'")
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        _status_check(batch_op, ('pending', 'sent', 'failed'))
