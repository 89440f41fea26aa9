"""Matches that move: match reminders (the truth their jobs act on) and Discord cards
(messages edited in place: a match's card per team webhook, a tournament's standings)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 18:00:00

"""
from alembic import op
import sqlalchemy as sa

from deltacrown.timeutil import UTCDateTime


# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'match_reminders',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('match_id', sa.Integer(), nullable=False),
        sa.Column('match_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('due_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('sent_at', UTCDateTime(timezone=True), nullable=True),
        sa.Column('updated_at', UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('pending', 'sent', 'cancelled', 'skipped')", name=op.f('ck_match_reminders_status')),
        sa.ForeignKeyConstraint(['match_id'], ['matches.id'], name=op.f('fk_match_reminders_match_id_matches'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_match_reminders')),
        sa.UniqueConstraint('match_id', name=op.f('uq_match_reminders_match_id')),
    )
    op.create_index('ix_match_reminders_status_due_at', 'match_reminders', ['status', 'due_at'], unique=False)
    op.create_table(
        'discord_cards',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('card_key', sa.String(length=100), nullable=False),
        sa.Column('target', sa.String(length=50), nullable=False),
        sa.Column('webhook_digest', sa.String(length=64), nullable=True),
        sa.Column('message_id', sa.String(length=100), nullable=True),
        sa.Column('content_digest', sa.String(length=64), nullable=True),
        sa.Column('posts', sa.Integer(), nullable=False),
        sa.Column('edits', sa.Integer(), nullable=False),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_discord_cards')),
        sa.UniqueConstraint('card_key', 'target', name=op.f('uq_discord_cards_card_key_target')),
    )


def downgrade():
    op.drop_table('discord_cards')
    op.drop_index('ix_match_reminders_status_due_at', table_name='match_reminders')
    op.drop_table('match_reminders')
