"""Email bounces and complaints: the suppression list, the event ledger, and the delivery
statuses 'bounced' (the address was refused or bounced) and 'suppressed' (not sent to a
suppressed address); deliveries indexed by age for the delivery rates

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 18:00:00

"""
from alembic import op
import sqlalchemy as sa

from deltacrown.timeutil import UTCDateTime


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

_STATUSES_BEFORE = ('pending', 'sent', 'failed', 'skipped')
_STATUSES = ('pending', 'sent', 'failed', 'bounced', 'suppressed', 'skipped')


def _status_check(batch_op, statuses):
    batch_op.drop_constraint(op.f('ck_deliveries_status'), type_='check')
    batch_op.create_check_constraint(op.f('ck_deliveries_status'),
                                     "status IN (" + ", ".join(f"'{s}'" for s in statuses) + ")")


def upgrade():
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        _status_check(batch_op, _STATUSES)
    # The delivery rates of the last 24 hours / 7 days (ops dashboard, /metrics) read by age.
    op.create_index('ix_deliveries_created_at', 'deliveries', ['created_at'], unique=False)

    op.create_table(
        'email_suppressions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('email', sa.String(length=254), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('reason', sa.String(length=16), nullable=False),
        sa.Column('code', sa.String(length=32), nullable=True),
        sa.Column('detail', sa.Text(), nullable=True),
        sa.Column('source', sa.String(length=16), nullable=False),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('until', UTCDateTime(timezone=True), nullable=True),
        sa.Column('lifted_at', UTCDateTime(timezone=True), nullable=True),
        sa.Column('lifted_by', sa.String(length=100), nullable=True),
        sa.CheckConstraint("reason IN ('bounce', 'soft_bounce', 'complaint')",
                           name=op.f('ck_email_suppressions_reason')),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_email_suppressions_user_id_users'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_email_suppressions')),
    )
    op.create_index('uq_email_suppressions_active_email', 'email_suppressions', ['email'], unique=True,
                    sqlite_where=sa.text('lifted_at IS NULL'), postgresql_where=sa.text('lifted_at IS NULL'))
    op.create_index('ix_email_suppressions_user_id', 'email_suppressions', ['user_id'], unique=False)

    op.create_table(
        'email_events',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('dedup_key', sa.String(length=300), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('permanent', sa.Boolean(), nullable=False),
        sa.Column('email', sa.String(length=254), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('delivery_id', sa.Integer(), nullable=True),
        sa.Column('digest_id', sa.Integer(), nullable=True),
        sa.Column('source', sa.String(length=16), nullable=False),
        sa.Column('code', sa.String(length=32), nullable=True),
        sa.Column('detail', sa.Text(), nullable=True),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('bounce', 'complaint')", name=op.f('ck_email_events_kind')),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_email_events_user_id_users'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_email_events')),
        sa.UniqueConstraint('dedup_key', name=op.f('uq_email_events_dedup_key')),
    )
    op.create_index('ix_email_events_created_at', 'email_events', ['created_at'], unique=False)
    op.create_index('ix_email_events_email_created_at', 'email_events', ['email', 'created_at'], unique=False)


def downgrade():
    op.drop_index('ix_email_events_email_created_at', table_name='email_events')
    op.drop_index('ix_email_events_created_at', table_name='email_events')
    op.drop_table('email_events')
    op.drop_index('ix_email_suppressions_user_id', table_name='email_suppressions')
    op.drop_index('uq_email_suppressions_active_email', table_name='email_suppressions')
    op.drop_table('email_suppressions')
    op.drop_index('ix_deliveries_created_at', table_name='deliveries')
    # Before this revision a bounced delivery was recorded as failed, a suppressed one as skipped.
    op.execute("UPDATE deliveries SET status = 'failed' WHERE status = 'bounced'")
    op.execute("UPDATE deliveries SET status = 'skipped' WHERE status = 'suppressed'")
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        _status_check(batch_op, _STATUSES_BEFORE)
