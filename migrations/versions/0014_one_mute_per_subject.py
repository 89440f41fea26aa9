"""one mute per player and team or tournament: two requests racing each other wrote two, and
unmuting one left the other muting

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 12:00:00

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

SUBJECTS = ('team_id', 'tournament_id')


def upgrade():
    for column in SUBJECTS:
        same = f"d.user_id = mutes.user_id AND d.{column} = mutes.{column}"
        # Duplicates already written merge into the oldest row, which keeps the latest end
        # ("until unmuted" if any of them was): the player stays muted as long as before.
        op.execute(sa.text(
            f"UPDATE mutes SET until = CASE WHEN EXISTS (SELECT 1 FROM mutes d WHERE {same} AND d.until IS NULL) "
            f"THEN NULL ELSE (SELECT MAX(d.until) FROM mutes d WHERE {same}) END "
            f"WHERE id IN (SELECT MIN(id) FROM mutes WHERE {column} IS NOT NULL "
            f"GROUP BY user_id, {column} HAVING COUNT(*) > 1)"))
        op.execute(sa.text(
            f"DELETE FROM mutes WHERE {column} IS NOT NULL AND id NOT IN "
            f"(SELECT MIN(id) FROM mutes WHERE {column} IS NOT NULL GROUP BY user_id, {column})"))
    op.create_index('uq_mutes_user_team', 'mutes', ['user_id', 'team_id'], unique=True)
    op.create_index('uq_mutes_user_tournament', 'mutes', ['user_id', 'tournament_id'], unique=True)


def downgrade():
    op.drop_index('uq_mutes_user_tournament', table_name='mutes')
    op.drop_index('uq_mutes_user_team', table_name='mutes')
