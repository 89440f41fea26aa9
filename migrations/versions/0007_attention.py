"""attention: seen / archived / snoozed notifications, quiet hours, email delay, held deliveries, mutes

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 18:00:00

"""
from alembic import op
import sqlalchemy as sa
import deltacrown.timeutil


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seen_at', deltacrown.timeutil.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('archived_at', deltacrown.timeutil.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('snoozed_until', deltacrown.timeutil.UTCDateTime(), nullable=True))
    with op.batch_alter_table('notification_preferences', schema=None) as batch_op:
        batch_op.add_column(sa.Column('quiet_hours_start', sa.Time(), nullable=True))
        batch_op.add_column(sa.Column('quiet_hours_end', sa.Time(), nullable=True))
        batch_op.add_column(sa.Column('email_after_unseen_minutes', sa.Integer(), server_default='0',
                                      nullable=False))
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('send_after', deltacrown.timeutil.UTCDateTime(), nullable=True))
    op.create_table(
        'mutes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('team_id', sa.Integer(), nullable=True),
        sa.Column('tournament_id', sa.Integer(), nullable=True),
        sa.Column('until', deltacrown.timeutil.UTCDateTime(), nullable=True),
        sa.Column('created_at', deltacrown.timeutil.UTCDateTime(), nullable=False),
        sa.CheckConstraint('(team_id IS NULL) <> (tournament_id IS NULL)', name=op.f('ck_mutes_one_subject')),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_mutes_team_id_teams'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['tournament_id'], ['tournaments.id'], name=op.f('fk_mutes_tournament_id_tournaments'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_mutes_user_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_mutes')),
    )
    with op.batch_alter_table('mutes', schema=None) as batch_op:
        batch_op.create_index('ix_mutes_user_id', ['user_id'], unique=False)


def downgrade():
    with op.batch_alter_table('mutes', schema=None) as batch_op:
        batch_op.drop_index('ix_mutes_user_id')
    op.drop_table('mutes')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_column('send_after')
    with op.batch_alter_table('notification_preferences', schema=None) as batch_op:
        batch_op.drop_column('email_after_unseen_minutes')
        batch_op.drop_column('quiet_hours_end')
        batch_op.drop_column('quiet_hours_start')
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_column('snoozed_until')
        batch_op.drop_column('archived_at')
        batch_op.drop_column('seen_at')
