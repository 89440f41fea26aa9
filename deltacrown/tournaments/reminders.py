"""A match's reminder, as the database holds it: one `MatchReminder` row per match.

The row is written in the same transaction as the change to the match (scheduled,
rescheduled, result, tournament completed), so it is always the truth about what is
due and when. The job that sends a reminder and the sweep that re-creates a lost job
(notifications/reminders.py) act only on what this row says:

- pending: due at `due_at` (= `match_at` - MATCH_REMINDER_MINUTES); the send claims it
  with one conditional UPDATE (pending, same match_at, due) -> sent;
- skipped: `due_at` had already passed when the match was set for `match_at` (a match
  scheduled 10 minutes ahead gets no 60-minute reminder);
- cancelled: the match got its result, or its tournament ended;
- sent: a reminder went out for `match_at`. Moving the match again makes it pending
  for the new time (a reminder of the old time is no reminder of the new one).
"""
from __future__ import annotations

from datetime import timedelta

from flask import current_app
from sqlalchemy import select, update

from ..extensions import db
from ..timeutil import utcnow
from .models import Match, MatchReminder

DEFAULT_REMINDER_MINUTES = 60


def reminder_minutes() -> int:
    return int(current_app.config.get("MATCH_REMINDER_MINUTES", DEFAULT_REMINDER_MINUTES))


def plan_reminder(match: Match) -> MatchReminder:
    """Set the match's reminder for its current `scheduled_at` (in the caller's transaction)."""
    now = utcnow()
    due_at = match.scheduled_at - timedelta(minutes=reminder_minutes())
    status = "pending" if due_at > now else "skipped"
    reminder = db.session.scalar(select(MatchReminder).where(MatchReminder.match_id == match.id)
                                 .with_for_update())
    if reminder is None:
        reminder = MatchReminder(match_id=match.id)
        db.session.add(reminder)
    elif reminder.status == "sent" and reminder.match_at == match.scheduled_at:
        return reminder  # already reminded of exactly this time
    reminder.match_at, reminder.due_at, reminder.status = match.scheduled_at, due_at, status
    reminder.sent_at, reminder.updated_at = None, now
    return reminder


def cancel_reminders(*, match_id: int | None = None, tournament_id: int | None = None) -> int:
    """Cancel the pending reminder of a match, or of every match of a tournament."""
    stmt = update(MatchReminder).where(MatchReminder.status == "pending")
    if match_id is not None:
        stmt = stmt.where(MatchReminder.match_id == match_id)
    else:
        stmt = stmt.where(MatchReminder.match_id.in_(select(Match.id).where(Match.tournament_id == tournament_id)))
    return db.session.execute(stmt.values(status="cancelled", updated_at=utcnow())
                              .execution_options(synchronize_session=False)).rowcount
