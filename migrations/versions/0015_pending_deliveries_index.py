"""index the pending deliveries: the minute sweeps of sends whose job was lost read them

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 16:15:00

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade():
    # Partial: only the few sends still pending, however long the sent history grows.
    op.create_index('ix_deliveries_pending', 'deliveries', ['created_at'], unique=False,
                    postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'"))


def downgrade():
    op.drop_index('ix_deliveries_pending', table_name='deliveries')
