"""payouts held for a second admin (PAYOUT_APPROVAL_THRESHOLD), and who completed a tournament

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 18:00:00

"""
from alembic import op
import sqlalchemy as sa

import deltacrown.timeutil


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('tournaments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('completed_by_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_tournaments_completed_by_id_users'), 'users',
                                    ['completed_by_id'], ['id'], ondelete='SET NULL')

    op.create_table('payouts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tournament_id', sa.Integer(), nullable=False),
    sa.Column('team_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('place', sa.Integer(), nullable=False),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('threshold', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('created_at', deltacrown.timeutil.UTCDateTime(timezone=True), nullable=False),
    sa.Column('completed_by_id', sa.Integer(), nullable=True),
    sa.Column('decided_by_id', sa.Integer(), nullable=True),
    sa.Column('decided_at', deltacrown.timeutil.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reason', sa.String(length=500), nullable=True),
    sa.Column('self_approved', sa.Boolean(), nullable=False),
    sa.Column('transaction_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("status IN ('pending_approval', 'paid', 'rejected')", name=op.f('ck_payouts_status')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_payouts_amount_positive')),
    sa.ForeignKeyConstraint(['tournament_id'], ['tournaments.id'], name=op.f('fk_payouts_tournament_id_tournaments')),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_payouts_team_id_teams')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_payouts_user_id_users')),
    sa.ForeignKeyConstraint(['completed_by_id'], ['users.id'], name=op.f('fk_payouts_completed_by_id_users'),
                            ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['decided_by_id'], ['users.id'], name=op.f('fk_payouts_decided_by_id_users'),
                            ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['transaction_id'], ['coin_transactions.id'],
                            name=op.f('fk_payouts_transaction_id_coin_transactions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payouts')),
    sa.UniqueConstraint('tournament_id', 'place', name=op.f('uq_payouts_tournament_id_place'))
    )
    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.create_index('ix_payouts_status_id', ['status', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.drop_index('ix_payouts_status_id')
    op.drop_table('payouts')
    with op.batch_alter_table('tournaments', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_tournaments_completed_by_id_users'), type_='foreignkey')
        batch_op.drop_column('completed_by_id')
