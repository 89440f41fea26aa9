"""index the unhandled outbox events: an event job takes every ready event it can claim

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 21:00:00

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    # Partial: only the few events not handled yet, however long the handled history grows.
    op.create_index('ix_outbox_events_unhandled', 'outbox_events', ['id'], unique=False,
                    postgresql_where=sa.text('handled_at IS NULL'), sqlite_where=sa.text('handled_at IS NULL'))


def downgrade():
    op.drop_index('ix_outbox_events_unhandled', table_name='outbox_events')
