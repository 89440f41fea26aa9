"""Reading one's own notifications: the queries behind the notification center
page and the notifications API alike. Every function is scoped to one user:
someone else's notification is as good as missing (NotFound), never revealed."""
from __future__ import annotations

from sqlalchemy import delete, false, func, select, true, update

from ..dbutil import MAX_DB_ID
from ..errors import NotFound
from ..extensions import db
from ..timeutil import utcnow
from .models import Delivery, Notification, notification_digest_items


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
