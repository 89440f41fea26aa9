"""index each user's unseen notifications: the nav badge counts them on every page

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 01:15:00

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    # Partial, and holding snoozed_until: the badge's capped count reads only this index,
    # not a heap page per counted row scattered over the whole table.
    op.create_index('ix_notifications_unseen', 'notifications', ['user_id', 'snoozed_until'], unique=False,
                    postgresql_where=sa.text('seen_at IS NULL AND archived_at IS NULL'),
                    sqlite_where=sa.text('seen_at IS NULL AND archived_at IS NULL'))


def downgrade():
    op.drop_index('ix_notifications_unseen', table_name='notifications')
