"""Bulk test data, written with Core executemany in chunks (seeding is never timed)."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from sqlalchemy import insert

from deltacrown.accounts.models import User, hash_token
from deltacrown.extensions import db
from deltacrown.notifications.models import DEFAULT_DIGEST_TIME, Notification, NotificationPreference
from deltacrown.teams.models import Team, TeamMembership
from deltacrown.tournaments.models import Match, Tournament

UTC = timezone.utc
CHUNK = 10_000
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def bulk_insert(table, rows) -> int:
    """Insert an iterable of row dicts in chunks, one commit per chunk."""
    n, batch = 0, []
    for row in rows:
        batch.append(row)
        if len(batch) >= CHUNK:
            db.session.execute(insert(table), batch)
            db.session.commit()
            n += len(batch)
            batch = []
    if batch:
        db.session.execute(insert(table), batch)
        db.session.commit()
        n += len(batch)
    return n


def user_token(i: int) -> str:
    return f"bench-token-{i:08d}"


def users(count: int, start: int = 1, preferences: bool = True, with_tokens: bool = False) -> list[int]:
    """`count` users u<i> (cheap fixed password hash), with default preference rows unless told not to.

    Returns their ids. Token of user i (when `with_tokens`): `user_token(i)`.
    """
    rows = ({"username": f"u{i:07d}", "email": f"u{i:07d}@example.com", "password_hash": "bench",
             "is_admin": False, "timezone": "UTC", "created_at": EPOCH,
             "api_token_hash": hash_token(user_token(i)) if with_tokens else None}
            for i in range(start, start + count))
    bulk_insert(User.__table__, rows)
    ids = [uid for (uid,) in db.session.execute(
        db.select(User.id).where(User.username >= f"u{start:07d}", User.username < f"u{start + count:07d}")
        .order_by(User.id))]
    if preferences:
        bulk_insert(NotificationPreference.__table__, (default_preference_row(uid) for uid in ids))
    return ids


def default_preference_row(user_id: int) -> dict:
    """What NotificationPreference.get_or_create_for_user writes for a new user."""
    return {"user_id": user_id, "channels": {}, "opt_out_email": False, "opt_out_in_app": False,
            "opt_out_discord": False, "enable_daily_digest": True, "digest_time": DEFAULT_DIGEST_TIME,
            "timezone": "UTC", "discord_webhook_url": None, "updated_at": EPOCH}


def teams_and_matches(team_count: int, match_count: int, seed: int = 9) -> None:
    """`team_count` teams (one captain each) and `match_count` completed matches (10% draws)."""
    rng = random.Random(seed)
    captains = users(team_count, start=1, preferences=False)
    bulk_insert(Team.__table__, ({"name": f"team-{i}", "tag": None, "captain_id": uid, "points": 0, "wins": 0,
                                  "losses": 0, "rank": None, "created_at": EPOCH}
                                 for i, uid in enumerate(captains, 1)))
    team_ids = [tid for (tid,) in db.session.execute(db.select(Team.id).order_by(Team.id))]
    bulk_insert(Tournament.__table__, ({"name": f"cup-{i}", "status": "completed", "starts_at": EPOCH,
                                        "created_at": EPOCH, "completed_at": EPOCH} for i in range(20)))
    tournament_ids = [tid for (tid,) in db.session.execute(db.select(Tournament.id))]

    def match_rows():
        for i in range(match_count):
            a, b = rng.sample(team_ids, 2)
            roll = rng.random()
            winner = None if roll < 0.1 else (a if roll < 0.55 else b)
            yield {"tournament_id": tournament_ids[i % len(tournament_ids)], "team_a_id": a, "team_b_id": b,
                   "scheduled_at": EPOCH, "status": "completed", "score_a": None, "score_b": None,
                   "winner_id": winner, "completed_at": EPOCH + timedelta(minutes=i)}

    bulk_insert(Match.__table__, match_rows())


def memberships(team_id: int, user_ids) -> None:
    bulk_insert(TeamMembership.__table__, ({"team_id": team_id, "user_id": uid, "role": "member",
                                            "joined_at": EPOCH} for uid in user_ids))


NOTIFICATION_TYPES_USED = ("match_result", "match_scheduled", "announcement", "ranking_changed", "payout_received")


def notifications(user_ids, per_user: int, created_from: datetime, spread: timedelta, read: bool = False,
                  title: str = "Notification") -> int:
    """`per_user` notifications for each user, spread evenly over [created_from, created_from + spread)."""
    step = spread / max(per_user, 1)

    def rows():
        for uid in user_ids:
            for k in range(per_user):
                yield {"user_id": uid, "type": NOTIFICATION_TYPES_USED[k % len(NOTIFICATION_TYPES_USED)],
                       "title": f"{title} {k} for <user {uid}>", "body": "Team Nova 2 – 1 Eclipse. GG!",
                       "url": f"/matches/{k}", "is_read": read, "created_at": created_from + step * k,
                       "read_at": None, "dedup_key": f"bench:{k}"}

    return bulk_insert(Notification.__table__, rows())


def notification_rows_for(user_id: int, count: int, start_at: datetime, dedup_prefix: str) -> list[dict]:
    return [{"user_id": user_id, "type": NOTIFICATION_TYPES_USED[k % len(NOTIFICATION_TYPES_USED)],
             "title": f"Notification {k}", "body": "Body text", "url": None, "is_read": k % 3 == 0,
             "created_at": start_at + timedelta(seconds=k), "read_at": None, "dedup_key": f"{dedup_prefix}:{k}"}
            for k in range(count)]
