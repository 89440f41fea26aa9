"""Row builders for the rankings / payouts / wrap-up tests.

Tournaments, teams and matches are inserted as model rows directly (bulk, with
executemany), not through the API, so these tests depend only on the models.
Call them inside an app context.
"""
from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import func, insert, select

from deltacrown.dedup import DedupKey
from deltacrown.economy.models import CoinTransaction
from deltacrown.extensions import db
from deltacrown.models import (Match, OutboxEvent, Placement, Registration, Team, TeamAchievement, Tournament,
                               User)
from deltacrown.timeutil import utcnow


def add_teams(count: int, prefix: str | None = None) -> list[int]:
    """`count` teams, each with its own captain user; returns team ids in creation order."""
    prefix = prefix or f"t{uuid.uuid4().hex[:6]}"
    now = utcnow()
    names = [f"{prefix}-{i:05d}" for i in range(count)]
    db.session.execute(insert(User.__table__), [
        {"username": name, "email": f"{name}@example.com", "password_hash": "!", "is_admin": False,
         "timezone": "UTC", "created_at": now} for name in names])
    user_ids = dict(db.session.execute(select(User.username, User.id).where(User.username.like(f"{prefix}-%"))).all())
    db.session.execute(insert(Team.__table__), [
        {"name": name, "captain_id": user_ids[name], "points": 0, "wins": 0, "losses": 0, "created_at": now}
        for name in names])
    db.session.commit()
    team_ids = dict(db.session.execute(select(Team.name, Team.id).where(Team.name.like(f"{prefix}-%"))).all())
    return [team_ids[name] for name in names]


def add_tournament(status: str = "ongoing", team_ids=(), placements=(), name: str | None = None) -> int:
    """A tournament with `team_ids` registered and `placements` = team ids of 1st, 2nd, 3rd."""
    now = utcnow()
    tournament = Tournament(name=name or f"Cup {uuid.uuid4().hex[:6]}", status=status,
                            starts_at=now - timedelta(days=1),
                            completed_at=now if status == "completed" else None)
    db.session.add(tournament)
    db.session.flush()
    for team_id in dict.fromkeys([*team_ids, *placements]):
        db.session.add(Registration(tournament_id=tournament.id, team_id=team_id))
    for place, team_id in enumerate(placements, start=1):
        db.session.add(Placement(tournament_id=tournament.id, team_id=team_id, place=place))
    db.session.commit()
    return tournament.id


def add_matches(tournament_id: int, results) -> None:
    """Completed matches: `results` is [(team_a_id, team_b_id, winner_id or None for a draw)]."""
    now = utcnow()
    rows = []
    for team_a, team_b, winner in results:
        score_a, score_b = (1, 1) if winner is None else ((2, 0) if winner == team_a else (0, 2))
        rows.append({"tournament_id": tournament_id, "team_a_id": team_a, "team_b_id": team_b,
                     "scheduled_at": now, "status": "completed", "score_a": score_a, "score_b": score_b,
                     "winner_id": winner, "completed_at": now})
    if rows:
        db.session.execute(insert(Match.__table__), rows)
    db.session.commit()


def row_counts() -> dict:
    """How many rows the payout machinery has written so far."""
    return {model.__tablename__: db.session.scalar(select(func.count()).select_from(model))
            for model in (CoinTransaction, DedupKey, TeamAchievement, OutboxEvent)}


def events(event_type: str) -> list[dict]:
    return [e.payload for e in db.session.scalars(
        select(OutboxEvent).where(OutboxEvent.type == event_type).order_by(OutboxEvent.id))]


def standings() -> dict[int, tuple]:
    """{team_id: (points, wins, losses, rank)}"""
    return {row.id: (row.points, row.wins, row.losses, row.rank)
            for row in db.session.execute(select(Team.id, Team.points, Team.wins, Team.losses, Team.rank))}
