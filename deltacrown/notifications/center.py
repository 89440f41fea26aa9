"""Reading one's own notifications: the queries behind the notification center
page and the notifications API alike, and running a notification's actions. Every
function is scoped to one user: someone else's notification is as good as missing
(NotFound), never revealed."""
from __future__ import annotations

import functools
import logging
from datetime import datetime, time, timedelta, timezone

from sqlalchemy import and_, bindparam, delete, false, func, or_, select, true, update

from ..api import decode_cursor, encode_cursor
from ..dbutil import MAX_DB_ID
from ..errors import Conflict, InvalidInput, NotFound
from ..extensions import db
from ..timeutil import utcnow
from . import wakeups
from .actions import ActionResult
from .models import Delivery, Notification, NotificationPreference, notification_digest_items
from .types import NOTIFICATION_TYPES

log = logging.getLogger(__name__)


def awake(now: datetime | None = None):
    """Not snoozed, or its snooze is over (whether or not its wake-up job ran yet: the
    database is the truth). `now` may be a bound parameter, for a statement built once."""
    now = utcnow() if now is None else now
    return or_(Notification.snoozed_until.is_(None), Notification.snoozed_until <= now)


def asleep(now: datetime | None = None):
    now = utcnow() if now is None else now
    return and_(Notification.snoozed_until.is_not(None), Notification.snoozed_until > now)


def center_query(user_id: int, unread: bool | None = None, type_name: str | None = None,
                 archived: bool | None = False, snoozed: bool = False, now=None):
    """The user's notifications (filtered); callers order and page it (keyset on id).

    archived False (the default list): not archived; True: only archived; None: both.
    snoozed False: leaves out the ones snoozed until later; True: only those."""
    stmt = select(Notification).where(Notification.user_id == user_id)
    stmt = stmt.where(asleep(now) if snoozed else awake(now))
    if archived is True:
        stmt = stmt.where(Notification.archived_at.is_not(None))
    elif archived is False:
        stmt = stmt.where(Notification.archived_at.is_(None))
    if unread is True:
        stmt = stmt.where(Notification.is_read == false())
    elif unread is False:
        stmt = stmt.where(Notification.is_read == true())
    if type_name:
        stmt = stmt.where(Notification.type == type_name)
    return stmt


class ListedNotification:
    """A notification as a list shows it (the center's pages, the API's list): its columns as
    read, and the actions that still apply (attach_actions). Not an ORM object: a list only
    shows them, and loading a page of them into the session (identity map, change tracking)
    took as long as the rest of the page's reads. Changes go through the functions below, by id."""

    __slots__ = (*(column.key for column in Notification.__table__.columns), "available_actions")

    def __init__(self, row):
        for name, value in zip(self.__slots__, row):
            setattr(self, name, value)
        self.available_actions = ()


def center_page(user_id: int, unread: bool | None = None, type_name: str | None = None,
                archived: bool | None = False, snoozed: bool = False, cursor: str | None = None,
                limit: int = 20) -> tuple[list[ListedNotification], str | None]:
    """A page of `center_query`, newest first: the notifications with an id below the
    cursor's, and the cursor of the next page (None on the last). One statement whatever
    the page number. An unknown cursor is InvalidInput."""
    before, type_name = decode_cursor(cursor), type_name or None
    params = {"user_id": user_id, "now": utcnow(), "limit": limit + 1, "type_name": type_name, "before": before}
    statement = _page_statement(unread, type_name is not None, archived, snoozed, before is not None)
    rows = [ListedNotification(row) for row in
            db.session.execute(statement, {k: v for k, v in params.items() if v is not None})]
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor


@functools.cache
def _page_statement(unread: bool | None, typed: bool, archived: bool | None, snoozed: bool, after_cursor: bool):
    """Built once per filter combination, with bound parameters: building the statement for
    every page took longer than running it."""
    stmt = center_query(bindparam("user_id"), unread, None, archived, snoozed,
                        now=bindparam("now", type_=Notification.snoozed_until.type))
    if typed:
        stmt = stmt.where(Notification.type == bindparam("type_name"))
    if after_cursor:
        stmt = stmt.where(Notification.id < bindparam("before"))
    # Its columns, in ListedNotification's order.
    return (stmt.with_only_columns(*Notification.__table__.columns)
            .order_by(Notification.id.desc()).limit(bindparam("limit")))


# The page badge shows "99+" beyond this, so it never counts further: an exact count
# costs time in proportion to the unread rows.
BADGE_COUNT_CAP = 100


def unseen_count(user_id: int, cap: int) -> int:
    """The user's notifications not yet shown to them, at most `cap`: what the badge counts."""
    count, _ = _badge_statements()
    return db.session.scalar(count, {"user_id": user_id, "now": utcnow(), "cap": cap})


def unseen_count_and_zone_name(user_id: int, cap: int) -> tuple[int, str | None]:
    """The badge's count of unseen ones (at most `cap`) and the zone name chosen in the
    preferences, in one statement: every center page needs both."""
    _, count_and_zone = _badge_statements()
    return tuple(db.session.execute(count_and_zone, {"user_id": user_id, "now": utcnow(), "cap": cap}).one())


@functools.cache
def _badge_statements():
    """The badge's capped count, alone and with the preference's zone, built once with bound
    parameters: building them anew for every page took longer than running them."""
    user_id = bindparam("user_id")
    # Unseen ones in the default list (not archived, not snoozed), counting stops at the cap.
    unseen = (select(Notification.id)
              .where(Notification.user_id == user_id, Notification.archived_at.is_(None),
                     awake(bindparam("now", type_=Notification.snoozed_until.type)), Notification.seen_at.is_(None))
              .limit(bindparam("cap")))
    count = select(func.count()).select_from(unseen.subquery())
    zone_name = select(NotificationPreference.timezone).where(NotificationPreference.user_id == user_id)
    return count, select(count.scalar_subquery(), zone_name.scalar_subquery())


def counts(user_id: int) -> dict:
    """Unread and unseen, uncapped, in one statement (the API's unread-count, polled by every
    client): two COUNT FILTERs over the same rows."""
    count, unseen = db.session.execute(_counts_statement(), {"user_id": user_id, "now": utcnow()}).one()
    return {"count": count, "unseen": unseen}


@functools.cache
def _counts_statement():
    now = bindparam("now", type_=Notification.snoozed_until.type)
    return (select(func.count().filter(Notification.is_read == false()),
                   func.count().filter(Notification.seen_at.is_(None)))
            .where(Notification.user_id == bindparam("user_id"), Notification.archived_at.is_(None), awake(now)))


def own_notification(user_id: int, notification_id: int) -> Notification:
    note = db.session.scalar(select(Notification).where(
        Notification.id == notification_id, Notification.user_id == user_id)) \
        if 0 < notification_id <= MAX_DB_ID else None
    if note is None:
        raise NotFound(f"Notification {notification_id} not found")
    return note


def _read_now(note: Notification, now: datetime) -> None:
    """Read implies seen."""
    if not note.is_read:
        note.is_read, note.read_at = True, now
    if note.seen_at is None:
        note.seen_at = now


def mark_read(user_id: int, notification_id: int) -> Notification:
    note = own_notification(user_id, notification_id)
    if not note.is_read or note.seen_at is None:
        _read_now(note, utcnow())
        db.session.commit()
    return note


def mark_all_read(user_id: int, type_name: str | None = None) -> int:
    """Every unread one the user can see (snoozed ones stay out of it until they wake)."""
    now = utcnow()
    stmt = (update(Notification)
            .where(Notification.user_id == user_id, Notification.is_read == false(), awake(now))
            .values(is_read=True, read_at=now, seen_at=func.coalesce(Notification.seen_at, now)))
    if type_name:
        stmt = stmt.where(Notification.type == type_name)
    updated = db.session.execute(stmt.execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    return updated


def clear_read(user_id: int, type_name: str | None = None, archived: bool = False) -> int:
    """Delete the user's read notifications (with what cascades from them on PostgreSQL;
    done explicitly so SQLite, which does not enforce foreign keys here, ends up the same).
    Archived ones were put away to be kept: only cleared from the archived box (`archived`)."""
    ids = select(Notification.id).where(Notification.user_id == user_id, Notification.is_read == true(),
                                        Notification.archived_at.is_not(None) if archived
                                        else Notification.archived_at.is_(None))
    if type_name:
        ids = ids.where(Notification.type == type_name)
    db.session.execute(delete(notification_digest_items)
                       .where(notification_digest_items.c.notification_id.in_(ids)))
    db.session.execute(delete(Delivery).where(Delivery.notification_id.in_(ids))
                       .execution_options(synchronize_session=False))
    removed = db.session.execute(delete(Notification).where(Notification.id.in_(ids))
                                 .execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    return removed


# --- seen, archived ----------------------------------------------------------------

MAX_SEEN_IDS = 1000  # one request's list (PostgreSQL bind parameters stay far below the limit)


def mark_seen(user_id: int, ids=None, up_to_id: int | None = None, now: datetime | None = None) -> int:
    """Mark the user's notifications seen: those in `ids`, or every one up to `up_to_id`.
    Ids of someone else's notifications, or missing ones, are passed over (never revealed);
    snoozed ones stay unseen (they are not shown). Returns how many became seen."""
    if (ids is None) == (up_to_id is None):
        raise InvalidInput("Give ids or up_to_id, not both", fields={"ids": "give ids or up_to_id, not both"})
    now = now or utcnow()
    stmt = update(Notification).where(Notification.user_id == user_id, Notification.seen_at.is_(None), awake(now))
    if ids is not None:
        wanted = sorted({i for i in ids if 0 < i <= MAX_DB_ID})[:MAX_SEEN_IDS]
        if not wanted:
            return 0
        stmt = stmt.where(Notification.id.in_(wanted))
    else:
        stmt = stmt.where(Notification.id <= up_to_id)
    updated = db.session.execute(stmt.values(seen_at=now).execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    return updated


def seen_now(user_id: int, notifications: list[ListedNotification]) -> list[int]:
    """The center rendered these: mark them seen (and say so on the listed ones). Returns the
    ids that were unseen until now (the page shows those as just arrived)."""
    now = utcnow()
    fresh = [n for n in notifications if n.seen_at is None and not _asleep(n, now)]
    if fresh:
        mark_seen(user_id, ids=[n.id for n in fresh], now=now)
        for note in fresh:
            note.seen_at = now
    return [n.id for n in fresh]


def _asleep(note: Notification | ListedNotification, now: datetime | None = None) -> bool:
    return note.snoozed_until is not None and note.snoozed_until > (now or utcnow())


def archive(user_id: int, notification_id: int) -> Notification:
    """Put it away: out of the default list and the counts (a snooze on it ends: archived
    and snoozed are one or the other)."""
    note = own_notification(user_id, notification_id)
    now = utcnow()
    was_snoozed = note.snoozed_until is not None
    if note.archived_at is None:
        note.archived_at = now
    if note.seen_at is None:
        note.seen_at = now
    note.snoozed_until = None
    db.session.commit()
    if was_snoozed:
        wakeups.cancel_wake(note.id)
    return note


def unarchive(user_id: int, notification_id: int) -> Notification:
    note = own_notification(user_id, notification_id)
    if note.archived_at is not None:
        note.archived_at = None
        db.session.commit()
    return note


# --- snooze --------------------------------------------------------------------------

SNOOZE_MIN = timedelta(minutes=3)
SNOOZE_MAX = timedelta(days=90)
SNOOZE_GRACE = timedelta(seconds=30)  # a client's "in 3 minutes" arrives a moment later


def snooze_problem(until, now: datetime | None = None) -> str | None:
    """Why `until` is not a snooze time (None: it is)."""
    if not isinstance(until, datetime) or until.tzinfo is None or until.utcoffset() is None:
        return "must be an ISO 8601 time with its offset, e.g. 2026-12-01T18:00:00+01:00"
    now = now or utcnow()
    if until < now + SNOOZE_MIN - SNOOZE_GRACE:
        return "must be at least 3 minutes from now"
    if until > now + SNOOZE_MAX + SNOOZE_GRACE:
        return "must be at most 90 days from now"
    return None


SNOOZE_CHOICES = {"1h": "1 hour", "3h": "3 hours", "tomorrow": "Tomorrow 09:00"}
TOMORROW_AT = time(9, 0)


def snooze_choice_until(choice: str, zone, at: str | None = None, now: datetime | None = None) -> datetime:
    """The time a "Remind me later" choice means for a player in `zone`: in 1 hour, in 3
    hours, tomorrow 09:00 (their time), or `at` ("YYYY-MM-DDTHH:MM", their time) for "at"."""
    now = now or utcnow()
    if choice == "1h":
        return now + timedelta(hours=1)
    if choice == "3h":
        return now + timedelta(hours=3)
    if choice == "tomorrow":
        tomorrow = now.astimezone(zone).date() + timedelta(days=1)
        return datetime.combine(tomorrow, TOMORROW_AT, tzinfo=zone)
    if choice == "at":
        try:
            local = datetime.fromisoformat((at or "").strip())
        except ValueError:
            raise InvalidInput("until: must be a date and a time", fields={"until": "must be a date and a time"}) from None
        return local.replace(tzinfo=zone) if local.tzinfo is None else local
    raise InvalidInput("until: must be one of the choices", fields={"until": "must be one of the choices"})


def snooze(user_id: int, notification_id: int, until: datetime) -> Notification:
    """Hide it until `until` (3 minutes to 90 days ahead): out of lists and counts, then back
    unread and unseen. Snoozing again moves the wake-up; a snoozed one is not archived."""
    note = own_notification(user_id, notification_id)  # a wrong id is a 404 whatever the time
    problem = snooze_problem(until)
    if problem:
        raise InvalidInput(f"until: {problem}", fields={"until": problem})
    until = until.astimezone(timezone.utc)
    # Unread and unseen from now on: whenever the snooze ends, it comes back so, even if the
    # wake-up job never runs (lists count `snoozed_until <= now` as awake).
    note.snoozed_until, note.archived_at = until, None
    note.is_read, note.read_at, note.seen_at = False, None, None
    db.session.commit()
    wakeups.schedule_wake(note.id, until)
    return note


def unsnooze(user_id: int, notification_id: int) -> Notification:
    """Bring it back now (its wake-up job is cancelled)."""
    note = own_notification(user_id, notification_id)
    if note.snoozed_until is not None:
        note.snoozed_until = None
        db.session.commit()
    wakeups.cancel_wake(note.id)
    return note


def _wake(condition, now: datetime) -> int:
    stmt = (update(Notification)
            .where(Notification.snoozed_until.is_not(None), Notification.snoozed_until <= now, condition)
            .values(snoozed_until=None, is_read=False, read_at=None, seen_at=None)
            .execution_options(synchronize_session=False))
    woken = db.session.execute(stmt).rowcount
    db.session.commit()
    return woken


def wake(notification_id: int) -> int:
    """The wake-up job: if its snooze is over, the notification comes back unread and unseen.
    Nothing happens if it was moved, un-snoozed or woken already (so running twice is safe)."""
    return _wake(Notification.id == notification_id, utcnow())


SWEEP_BATCH = 1000


def sweep_snoozes() -> dict:
    """The periodic sweep: wake every overdue snooze (its job was lost with Redis, or a worker
    died running it), and schedule again the wake-up jobs Redis no longer has."""
    now = utcnow()
    woken = _wake(true(), now)
    rescheduled, after = 0, 0
    while True:
        rows = db.session.execute(
            select(Notification.id, Notification.snoozed_until)
            .where(Notification.snoozed_until > now, Notification.id > after)
            .order_by(Notification.id).limit(SWEEP_BATCH)).all()
        db.session.rollback()
        if not rows:
            break
        after = rows[-1].id
        scheduled = wakeups.scheduled_wakes(r.id for r in rows)
        for row in rows:
            if scheduled.get(row.id) is None and wakeups.schedule_wake(row.id, row.snoozed_until):
                rescheduled += 1
    if woken or rescheduled:
        log.info("snooze sweep: %s woken, %s wake-up jobs scheduled again", woken, rescheduled)
    return {"woken": woken, "rescheduled": rescheduled}


# --- actions -------------------------------------------------------------------

def attach_actions(notifications):
    """Set each notification's `available_actions`: its type's actions while its subject is
    still open (an invite pending and not expired), none once answered or expired.
    One query per type with actions, whatever the number of notifications."""
    notifications = list(notifications)
    by_type: dict[str, list[Notification]] = {}
    for note in notifications:
        spec = NOTIFICATION_TYPES.get(note.type)
        note.available_actions = ()
        if spec is not None and spec.actions and note.subject_id is not None:
            by_type.setdefault(note.type, []).append(note)
    for type_name, notes in by_type.items():
        spec = NOTIFICATION_TYPES[type_name]
        open_ids = spec.subject.open_ids(n.subject_id for n in notes)
        for note in notes:
            if note.subject_id in open_ids:
                note.available_actions = spec.actions
    return notifications


def run_action(user, notification_id: int, name: str) -> tuple[Notification, ActionResult]:
    """Run action `name` of one of the user's notifications and mark it read, in one commit.

    NotFound: not the user's notification, or its type has no such action. Conflict: the
    action no longer applies (the invite expired or was answered); nothing is written.
    """
    note = own_notification(user.id, notification_id)
    spec = NOTIFICATION_TYPES.get(note.type)
    action = spec.action(name) if spec is not None else None
    if action is None:
        raise NotFound(f"Notification {notification_id} has no action {name[:40]!r}")
    if note.subject_id is None:
        raise Conflict("This notification has nothing left to answer.")
    try:
        _read_now(note, utcnow())
        result = action.handler(note.subject_id, user)  # the domain service commits, the read mark with it
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    attach_actions([note])
    return note, result
