"""Reading one's own notifications: the queries behind the notification center
page and the notifications API alike, and running a notification's actions. Every
function is scoped to one user: someone else's notification is as good as missing
(NotFound), never revealed."""
from __future__ import annotations

from sqlalchemy import delete, false, func, select, true, update

from ..dbutil import MAX_DB_ID
from ..errors import Conflict, NotFound
from ..extensions import db
from ..timeutil import utcnow
from .actions import ActionResult
from .models import Delivery, Notification, notification_digest_items
from .types import NOTIFICATION_TYPES


def center_query(user_id: int, unread: bool | None = None, type_name: str | None = None):
    """The user's notifications (filtered); callers order and page it (keyset on id)."""
    stmt = select(Notification).where(Notification.user_id == user_id)
    if unread is True:
        stmt = stmt.where(Notification.is_read == false())
    elif unread is False:
        stmt = stmt.where(Notification.is_read == true())
    if type_name:
        stmt = stmt.where(Notification.type == type_name)
    return stmt


# The page badge shows "99+" beyond this, so it never counts further: an exact count
# costs time in proportion to the unread rows.
BADGE_COUNT_CAP = 100


def unread_count(user_id: int, cap: int | None = None) -> int:
    """The user's unread notifications; with `cap`, at most `cap` (counting stops there)."""
    unread = select(Notification.id).where(Notification.user_id == user_id, Notification.is_read == false())
    if cap is not None:
        unread = unread.limit(cap)
    return db.session.scalar(select(func.count()).select_from(unread.subquery()))


def own_notification(user_id: int, notification_id: int) -> Notification:
    note = db.session.scalar(select(Notification).where(
        Notification.id == notification_id, Notification.user_id == user_id)) \
        if 0 < notification_id <= MAX_DB_ID else None
    if note is None:
        raise NotFound(f"Notification {notification_id} not found")
    return note


def mark_read(user_id: int, notification_id: int) -> Notification:
    note = own_notification(user_id, notification_id)
    if not note.is_read:
        note.is_read, note.read_at = True, utcnow()
        db.session.commit()
    return note


def mark_all_read(user_id: int, type_name: str | None = None) -> int:
    stmt = (update(Notification)
            .where(Notification.user_id == user_id, Notification.is_read == false())
            .values(is_read=True, read_at=utcnow()))
    if type_name:
        stmt = stmt.where(Notification.type == type_name)
    updated = db.session.execute(stmt.execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    return updated


def clear_read(user_id: int, type_name: str | None = None) -> int:
    """Delete the user's read notifications (with what cascades from them on PostgreSQL;
    done explicitly so SQLite, which does not enforce foreign keys here, ends up the same)."""
    ids = select(Notification.id).where(Notification.user_id == user_id, Notification.is_read == true())
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
        if not note.is_read:
            note.is_read, note.read_at = True, utcnow()
        result = action.handler(note.subject_id, user)  # the domain service commits, the read mark with it
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    attach_actions([note])
    return note, result
