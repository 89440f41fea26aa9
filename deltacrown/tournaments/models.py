"""Tournaments, the teams registered in them, their matches and final placements."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..dbutil import sql_in
from ..extensions import db
from ..timeutil import UTCDateTime, utcnow

TOURNAMENT_STATUSES = ("registration", "ongoing", "completed")
MATCH_STATUSES = ("scheduled", "completed")
# A match's reminder: pending (a job waits for due_at), sent, cancelled (completed, tournament
# ended), skipped (due_at had already passed when the match was set for match_at).
REMINDER_STATUSES = ("pending", "sent", "cancelled", "skipped")


class Tournament(db.Model):
    __tablename__ = "tournaments"
    __table_args__ = (CheckConstraint(sql_in("status", TOURNAMENT_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="registration", index=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    wrapped_up_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The admin who completed it (null when completed before this was recorded, or not by a
    # person): the first pair of eyes on its payouts (economy/approvals.py).
    completed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    registrations = relationship("Registration", back_populates="tournament", order_by="Registration.id")
    matches = relationship("Match", back_populates="tournament", order_by="Match.id")
    placements = relationship("Placement", back_populates="tournament", order_by="Placement.place")


class Registration(db.Model):
    __tablename__ = "registrations"
    __table_args__ = (UniqueConstraint("tournament_id", "team_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tournament_id: Mapped[int] = mapped_column(ForeignKey("tournaments.id", ondelete="CASCADE"))
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    tournament = relationship("Tournament", back_populates="registrations")
    team = relationship("Team")


class Match(db.Model):
    __tablename__ = "matches"
    __table_args__ = (
        CheckConstraint(sql_in("status", MATCH_STATUSES), name="status"),
        CheckConstraint("team_a_id <> team_b_id", name="distinct_teams"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tournament_id: Mapped[int] = mapped_column(ForeignKey("tournaments.id", ondelete="CASCADE"), index=True)
    team_a_id: Mapped[int] = mapped_column(ForeignKey("teams.id"), index=True)
    team_b_id: Mapped[int] = mapped_column(ForeignKey("teams.id"), index=True)
    scheduled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="scheduled", index=True)
    score_a: Mapped[int | None] = mapped_column()
    score_b: Mapped[int | None] = mapped_column()
    winner_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"))
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    tournament = relationship("Tournament", back_populates="matches")
    team_a = relationship("Team", foreign_keys=[team_a_id])
    team_b = relationship("Team", foreign_keys=[team_b_id])


class Placement(db.Model):
    __tablename__ = "placements"
    __table_args__ = (
        UniqueConstraint("tournament_id", "place"),
        UniqueConstraint("tournament_id", "team_id"),
        CheckConstraint("place BETWEEN 1 AND 3", name="place_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tournament_id: Mapped[int] = mapped_column(ForeignKey("tournaments.id", ondelete="CASCADE"))
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
    place: Mapped[int] = mapped_column()

    tournament = relationship("Tournament", back_populates="placements")
    team = relationship("Team")


class MatchReminder(db.Model):
    """The truth about a match's reminder (tournaments/reminders.py): one row per match, moved
    with it. The job that sends it (notifications/reminders.py) only acts on what this row says,
    and claims it with one conditional UPDATE, so it is sent once whatever the jobs do."""

    __tablename__ = "match_reminders"
    __table_args__ = (CheckConstraint(sql_in("status", REMINDER_STATUSES), name="status"),
                      Index("ix_match_reminders_status_due_at", "status", "due_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    match_id: Mapped[int] = mapped_column(ForeignKey("matches.id", ondelete="CASCADE"), unique=True)
    match_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the match time it reminds of
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)  # match_at - MATCH_REMINDER_MINUTES
    status: Mapped[str] = mapped_column(String(16), default="pending")
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    match = relationship("Match")
