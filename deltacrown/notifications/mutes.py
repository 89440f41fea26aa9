"""Mutes: a player silencing a team or a tournament for a while, or until they unmute it.

While a mute lasts, notifications about its team or tournament (the composer's
`Message.team_ids` / `Message.tournament_id`) are still written in-app, but already seen
(no badge), and get no email and no personal Discord post (the fan-out,
service.py, reads each recipient's mutes as a column of its recipients query:
`muted_column`). Critical types are never muted. Nothing is queued while muted,
so a mute that ends restores normal delivery without a backlog burst.

One mute per (user, subject), kept by a unique index: muting the same team or tournament
again (or twice at once) replaces its end.
Expired mutes are simply ignored (and listed no more); "unmute" deletes the row.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, exists, or_, select

from ..dbutil import MAX_DB_ID, get_or_404, insert_or_update
from ..errors import InvalidInput, NotFound
from ..extensions import db
from ..teams.models import Team
from ..timeutil import utcnow
from ..tournaments.models import Tournament
from .models import Mute, NotificationPreferenceChange

SOURCE_PAGE = "page"  # the mute controls on the team, tournament and notification pages and the editor


def _log(user_id: int, row_or_subject, old_until, new_until, source: str, existed: bool, exists: bool) -> None:
    """A mute is a preference too: logged in the preference-change log like the others."""
    kind, ident = row_or_subject
    def shown(until, present):
        if not present:
            return None
        return until.isoformat() if until is not None else "until unmuted"
    db.session.add(NotificationPreferenceChange(user_id=user_id, source=source, changed_at=utcnow(), changes={
        f"mute.{kind}:{ident}": [shown(old_until, existed), shown(new_until, exists)]}))

# The choices the pages offer: (form value, label, duration; None = until unmuted).
DURATIONS: tuple[tuple[str, str, timedelta | None], ...] = (
    ("1h", "for 1 hour", timedelta(hours=1)),
    ("8h", "for 8 hours", timedelta(hours=8)),
    ("24h", "for 24 hours", timedelta(hours=24)),
    ("1w", "for a week", timedelta(weeks=1)),
    ("forever", "until I unmute", None),
)
DURATION_BY_KEY = {key: duration for key, _, duration in DURATIONS}


def until_for(choice: str, now: datetime | None = None) -> datetime | None:
    """The end of a mute chosen on a page ("1h", "8h", "24h", "1w", "forever")."""
    if choice not in DURATION_BY_KEY:
        raise InvalidInput("Choose how long to mute: 1 hour, 8 hours, 24 hours, a week or until you unmute.",
                           fields={"duration": f"must be one of {', '.join(DURATION_BY_KEY)}"})
    duration = DURATION_BY_KEY[choice]
    return None if duration is None else (now or utcnow()) + duration


def _active(now):
    return or_(Mute.until.is_(None), Mute.until > now)


def active_mutes(user_id: int, now: datetime | None = None) -> list[Mute]:
    """The user's mutes still in force, newest first."""
    return list(db.session.scalars(select(Mute).where(Mute.user_id == user_id, _active(now or utcnow()))
                                   .order_by(Mute.id.desc())))


def active_mute_for(user_id: int, team_id: int | None = None, tournament_id: int | None = None,
                    now: datetime | None = None) -> Mute | None:
    """The user's mute of this team or tournament in force now, if any (for the pages' control)."""
    subject = Mute.team_id == team_id if team_id is not None else Mute.tournament_id == tournament_id
    return db.session.scalar(select(Mute).where(Mute.user_id == user_id, subject, _active(now or utcnow())))


def mute(user_id: int, *, team_id: int | None = None, tournament_id: int | None = None,
         until: datetime | None = None, now: datetime | None = None, source: str = SOURCE_PAGE) -> Mute:
    """Mute a team or a tournament (exactly one) until `until` (None: until unmuted); muting it
    again replaces the end. Nothing is written when it raises: NotFound for an unknown id (as
    for any id the caller names), InvalidInput for both/neither or an end not in the future.
    Commits."""
    now = now or utcnow()
    if team_id is not None:
        get_or_404(Team, team_id, "Team", field="team_id")
    if tournament_id is not None:
        get_or_404(Tournament, tournament_id, "Tournament", field="tournament_id")
    if (team_id is None) == (tournament_id is None):
        message = "Mute either a team or a tournament, not both." if team_id is not None else \
            "Say what to mute: a team_id or a tournament_id."
        raise InvalidInput(message, fields={"team_id": message, "tournament_id": message})
    if until is not None and until <= now:
        raise InvalidInput("A mute must end in the future (or be until unmuted).",
                           fields={"until": "must be in the future, or null for until unmuted"})
    subject_column = "team_id" if team_id is not None else "tournament_id"
    subject_id = team_id if team_id is not None else tournament_id
    # The end it had, for the log only: the write below is one statement whatever races it.
    before = db.session.execute(select(Mute.until).where(
        Mute.user_id == user_id, getattr(Mute, subject_column) == subject_id)).first()
    existed = before is not None and (before.until is None or before.until > now)
    _log(user_id, (subject_column.removesuffix("_id"), subject_id), before.until if before else None, until,
         source, existed=existed, exists=True)
    mute_id = db.session.scalar(insert_or_update(
        Mute.__table__, {"user_id": user_id, "team_id": team_id, "tournament_id": tournament_id, "until": until,
                         "created_at": now},
        key=["user_id", subject_column], update=["until", "created_at"]).returning(Mute.id))
    db.session.commit()
    return db.session.get(Mute, mute_id)


def unmute(user_id: int, mute_id: int, source: str = SOURCE_PAGE) -> None:
    """Delete one of the user's mutes (NotFound if it is not theirs). Commits."""
    row = db.session.scalar(select(Mute).where(Mute.id == mute_id, Mute.user_id == user_id)) \
        if 0 < mute_id <= MAX_DB_ID else None
    if row is None:
        db.session.rollback()
        raise NotFound(f"You have no mute {mute_id}.")
    subject_key = ("team", row.team_id) if row.team_id is not None else ("tournament", row.tournament_id)
    in_force = row.until is None or row.until > utcnow()
    _log(user_id, subject_key, row.until, None, source, existed=in_force, exists=False)
    db.session.execute(delete(Mute).where(Mute.id == row.id).execution_options(synchronize_session=False))
    db.session.commit()


def muted_column(user_id, team_ids=(), tournament_id: int | None = None, now: datetime | None = None):
    """Whether the user `user_id` (a column of the enclosing query) has a mute in force of any of
    `team_ids` or of `tournament_id`: a column of the fan-out's recipients query, so a chunk's
    mutes cost no statement of their own. None when the message is about neither."""
    team_ids = [int(t) for t in team_ids or ()]
    subjects = []
    if team_ids:
        subjects.append(Mute.team_id.in_(team_ids))
    if tournament_id is not None:
        subjects.append(Mute.tournament_id == int(tournament_id))
    if not subjects:
        return None
    return exists().where(Mute.user_id == user_id, or_(*subjects), _active(now or utcnow()))


def written_muted(created_at, seen_at) -> bool:
    """Whether a notification was written while muted: the fan-out writes those already seen, at
    the very moment of their creation (a player's own "seen" always comes later)."""
    return seen_at is not None and created_at is not None and seen_at == created_at


def describe_until(until: datetime | None, zone) -> str:
    """"until you unmute" / "until Tue 02 Dec, 08:00" (in the viewer's zone)."""
    if until is None:
        return "until you unmute"
    return "until " + until.astimezone(zone).strftime("%a %d %b, %H:%M")


def serialize_mute(row: Mute) -> dict:
    return {"id": row.id, "team_id": row.team_id, "tournament_id": row.tournament_id, "until": row.until}
