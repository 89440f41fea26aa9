"""notifications.type is checked against the type registry in code, not by the database

Adding a notification type is then one registry entry (deltacrown/notifications/types.py),
with no migration to widen a CHECK constraint.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 15:00:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

# The types the constraint listed when it was dropped; a downgrade restores it as it was
# (rows of types added since must be removed before downgrading).
_TYPES_AT_0004 = ('invite_sent', 'invite_accepted', 'roster_changed', 'tournament_registered', 'match_scheduled',
                  'match_result', 'bracket_ready', 'ranking_changed', 'sponsor_approved', 'promotion_started',
                  'payout_received', 'achievement_earned', 'announcement', 'webhook_disabled')


def upgrade():
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_notifications_type'), type_='check')


def downgrade():
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_check_constraint(op.f('ck_notifications_type'),
                                         "type IN (" + ", ".join(f"'{t}'" for t in _TYPES_AT_0004) + ")")
