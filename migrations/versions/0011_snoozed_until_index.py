"""index notifications.snoozed_until: the snooze sweep runs every minute

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 18:10:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_index('ix_notifications_snoozed_until', ['snoozed_until'], unique=False)


def downgrade():
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index('ix_notifications_snoozed_until')
