"""The email suppression list: addresses that bounced or complained get no email of any kind.

How an address gets on it (every path through `apply_event`, once per event):

- a permanent refusal while sending (a 5xx at RCPT or DATA: `refused_while_sending`);
- a hard bounce that came back later (an RFC 3464 report, or a provider's event);
- three soft bounces within SOFT_BOUNCE_WINDOW: suppressed for SOFT_SUPPRESSION, then mailed again;
- a complaint (RFC 5965 ARF, or a provider's event): suppressed, and the user is opted out of
  email of the type they complained about (the digest: the digest turned off), recorded as a
  preference change with the source "complaint".

Exactly once: every event has a dedup key (the report's own Message-ID, or its digest; the
delivery it is about; the provider's event fields), inserted with ON CONFLICT DO NOTHING in
the same transaction as its effects, so the same report processed twice, or by two processes
at once, changes nothing the second time. An address has at most one unlifted suppression
(a partial unique index), so racing bounces list it once.

Lifting: an admin (ops dashboard, DELETE /api/v1/suppressions/{id}) or the user changing their
address. The row stays, with who lifted it and when.

Sending checks the list at send time (`deliveries.send_delivery`: the delivery ends
`suppressed`, no SMTP attempt; the digest: the user's claim is closed unsent).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, update

from ..accounts.models import User
from ..errors import NotFound
from ..dbutil import get_row
from ..extensions import db
from ..timeutil import utcnow
from . import mail_headers
from .models import (Delivery, EmailEvent, EmailSuppression, Notification, NotificationDigest,
                     NotificationPreference)
from .types import EMAIL, NOTIFICATION_TYPES

log = logging.getLogger(__name__)

SOFT_BOUNCE_LIMIT = 3
SOFT_BOUNCE_WINDOW = timedelta(days=7)
SOFT_SUPPRESSION = timedelta(days=7)
SOURCE_COMPLAINT = "complaint"  # NotificationPreferenceChange.source of a complaint's opt-out
BOUNCE, COMPLAINT = "bounce", "complaint"
_CHUNK = 1000


def normalize(address: str | None) -> str:
    return (address or "").strip().lower()


def _active(now: datetime):
    S = EmailSuppression
    return and_(S.lifted_at.is_(None), or_(S.until.is_(None), S.until > now))


def active_suppression(address: str, now: datetime | None = None) -> EmailSuppression | None:
    address = normalize(address)
    if not address:
        return None
    return db.session.scalar(select(EmailSuppression).where(listing(address, now)))


def listing(address: str, now: datetime | None = None):
    """The condition on EmailSuppression rows that list `address` now (for a caller that joins it
    into a read of its own)."""
    return and_(EmailSuppression.email == normalize(address), _active(now or utcnow()))


def suppressed_among(addresses, now: datetime | None = None) -> set[str]:
    """The suppressed ones among `addresses` (lower case), in one query per thousand."""
    wanted = sorted({normalize(a) for a in addresses if a})
    now = now or utcnow()
    found: set[str] = set()
    for start in range(0, len(wanted), _CHUNK):
        found.update(db.session.scalars(select(EmailSuppression.email).where(
            EmailSuppression.email.in_(wanted[start:start + _CHUNK]), _active(now))))
    return found


def _insert_ignore(model, values: dict, index_elements, index_where=None) -> int | None:
    """INSERT .. ON CONFLICT DO NOTHING RETURNING id: the new id, or None when the row exists."""
    if db.engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    stmt = (dialect_insert(model).values(**values)
            .on_conflict_do_nothing(index_elements=index_elements, index_where=index_where)
            .returning(model.id))
    return db.session.execute(stmt).scalar()


def suppress(address: str, reason: str, source: str, code: str | None = None, detail: str | None = None,
             user_id: int | None = None, until: datetime | None = None, now: datetime | None = None) -> None:
    """Put `address` on the list (no commit). An address already listed stays listed once; a
    permanent reason turns a temporary suppression into a permanent one."""
    now = now or utcnow()
    address = normalize(address)
    S = EmailSuppression
    # A temporary suppression that ran out is history: close it, so the address can be listed again.
    db.session.execute(update(S).where(S.email == address, S.lifted_at.is_(None), S.until.is_not(None),
                                       S.until <= now)
                       .values(lifted_at=S.until, lifted_by="expired").execution_options(synchronize_session=False))
    inserted = _insert_ignore(S, dict(email=address, user_id=user_id, reason=reason, code=(code or None) and code[:32],
                                      detail=detail, source=source, created_at=now, until=until),
                              ["email"], index_where=S.lifted_at.is_(None))
    if inserted is None and until is None:
        db.session.execute(update(S).where(S.email == address, S.lifted_at.is_(None), S.until.is_not(None))
                           .values(until=None, reason=reason, code=(code or None) and code[:32], detail=detail,
                                   source=source, created_at=now).execution_options(synchronize_session=False))
    log.info("email to %s suppressed (%s via %s): %s %s", address, reason, source, code or "", detail or "")


# --- what an event is about --------------------------------------------------------

@dataclass
class Subject:
    """The email an event is about: its delivery or digest, its recipient and type."""
    delivery_id: int | None = None
    digest_id: int | None = None
    user_id: int | None = None
    address: str | None = None  # where it was sent
    type_name: str | None = None  # the notification type; None for the digest

    @property
    def matched(self) -> bool:
        return self.delivery_id is not None or self.digest_id is not None


def subject_of(kind: str | None, ident: int | None) -> Subject | None:
    """The delivery (kind "d") or digest (kind "g") `ident`, or None when it does not exist."""
    if kind == mail_headers.DELIVERY:
        row = db.session.execute(
            select(Delivery.id, Delivery.channel, Delivery.target, Delivery.payload,
                   func.coalesce(Delivery.user_id, Notification.user_id), Notification.type)
            .outerjoin(Notification, Notification.id == Delivery.notification_id)
            .where(Delivery.id == ident)).first()
        if row is None or row[1] != EMAIL:
            return None
        delivery_id, _, target, payload, user_id, type_name = row
        return Subject(delivery_id=delivery_id, user_id=user_id, address=target,
                       type_name=type_name or (payload or {}).get("type"))
    if kind == mail_headers.DIGEST:
        row = db.session.execute(select(NotificationDigest.id, NotificationDigest.user_id, User.email)
                                 .join(User, User.id == NotificationDigest.user_id)
                                 .where(NotificationDigest.id == ident)).first()
        if row is None:
            return None
        return Subject(digest_id=row[0], user_id=row[1], address=row[2])
    return None


def subject_by_address(address: str) -> Subject:
    user_id = db.session.scalar(select(User.id).where(func.lower(User.email) == normalize(address)))
    return Subject(user_id=user_id, address=normalize(address))


# --- events ---------------------------------------------------------------------------

def apply_event(*, dedup_key: str, kind: str, permanent: bool, address: str | None, source: str,
                subject: Subject | None = None, code: str | None = None, detail: str | None = None,
                now: datetime | None = None) -> bool:
    """Record one bounce or complaint and do what it causes, in one transaction (committed).

    Returns False, changing nothing, when this event was recorded before (`dedup_key`)."""
    now = now or utcnow()
    subject = subject or Subject()
    address = normalize(address or subject.address)
    if not address:
        return False
    if subject.user_id is None and not subject.matched:
        subject = Subject(**{**subject.__dict__, "user_id": subject_by_address(address).user_id})
    detail = (detail or "")[:2000] or None
    code = (code or "")[:32] or None
    event_id = _insert_ignore(EmailEvent, dict(
        dedup_key=dedup_key[:300], kind=kind, permanent=bool(permanent), email=address, user_id=subject.user_id,
        delivery_id=subject.delivery_id, digest_id=subject.digest_id, source=source, code=code, detail=detail,
        created_at=now), ["dedup_key"])
    if event_id is None:
        db.session.rollback()
        return False
    if kind == BOUNCE and permanent:
        suppress(address, "bounce", source, code, detail, subject.user_id, now=now)
        if subject.delivery_id is not None:
            # It was accepted and bounced later: no longer counted as sent.
            db.session.execute(update(Delivery).where(Delivery.id == subject.delivery_id, Delivery.status == "sent")
                               .values(status="bounced", last_error=f"bounced: {code or ''} {detail or ''}".strip())
                               .execution_options(synchronize_session=False))
    elif kind == BOUNCE:
        soft = db.session.scalar(select(func.count(EmailEvent.id)).where(
            EmailEvent.email == address, EmailEvent.kind == BOUNCE, EmailEvent.permanent.is_(False),
            EmailEvent.created_at > now - SOFT_BOUNCE_WINDOW))
        if soft >= SOFT_BOUNCE_LIMIT:
            suppress(address, "soft_bounce", source, code,
                     f"{soft} soft bounces within {SOFT_BOUNCE_WINDOW.days} days; last: {detail or ''}".strip(),
                     subject.user_id, until=now + SOFT_SUPPRESSION, now=now)
    elif kind == COMPLAINT:
        suppress(address, "complaint", source, code, detail, subject.user_id, now=now)
        if subject.user_id is not None:
            _opt_out_after_complaint(subject)  # commits, with everything above
            return True
    db.session.commit()
    return True


def _opt_out_after_complaint(subject: Subject) -> None:
    """The user complained about email of this type: no more of it (a preference change)."""
    from .preferences import shown_channels, update_preferences

    user = db.session.get(User, subject.user_id)
    if user is None:
        db.session.commit()
        return
    if subject.digest_id is not None:
        changes = {"enable_daily_digest": False}
    elif subject.type_name in NOTIFICATION_TYPES:
        pref = NotificationPreference.get_or_create_for_user(user)
        # shown_channels: a critical type keeps in_app even if an older choice left it out
        changes = {"channels": {subject.type_name: [c for c in shown_channels(pref, subject.type_name) if c != EMAIL]}}
    else:  # a complaint we cannot tie to a type: no more email at all
        changes = {"opt_out_email": True}
    update_preferences(user, changes, SOURCE_COMPLAINT)


def refused_while_sending(kind: str, ident: int, address: str, user_id: int | None, code, reply: str | None,
                          type_name: str | None = None) -> None:
    """The receiving server refused `address` for good while we sent delivery/digest `ident`."""
    subject = Subject(delivery_id=ident if kind == mail_headers.DELIVERY else None,
                      digest_id=ident if kind == mail_headers.DIGEST else None, user_id=user_id, address=address,
                      type_name=type_name)
    apply_event(dedup_key=f"smtp:{kind}{ident}", kind=BOUNCE, permanent=True, address=address, source="smtp",
                subject=subject, code=str(code) if code is not None else None, detail=reply)


# --- reading and lifting ---------------------------------------------------------------

def suppressions_query(search: str | None = None, include_lifted: bool = False, now: datetime | None = None):
    """The suppressions in force (or all), optionally those whose address contains `search` (any case)."""
    S = EmailSuppression
    stmt = select(S)
    if not include_lifted:
        stmt = stmt.where(_active(now or utcnow()))
    if search:
        escaped = normalize(search).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(S.email.like(f"%{escaped}%", escape="\\"))
    return stmt


def list_suppressions(search: str | None = None, include_lifted: bool = False, limit: int = 200,
                      now: datetime | None = None) -> list[EmailSuppression]:
    """Newest first (the ops dashboard's list)."""
    stmt = suppressions_query(search, include_lifted, now)
    return list(db.session.scalars(stmt.order_by(EmailSuppression.id.desc()).limit(limit)))


def lift(suppression_id: int, by: str, now: datetime | None = None) -> EmailSuppression:
    """Lift one suppression (no-op if lifted already); NotFound when there is no such row."""
    row = get_row(EmailSuppression, suppression_id)  # range-checked: an id too large is simply missing
    if row is None:
        raise NotFound(f"There is no suppression {suppression_id}.")
    if row.lifted_at is None:
        row.lifted_at, row.lifted_by = now or utcnow(), by[:100]
        db.session.commit()
        log.info("suppression of %s lifted by %s", row.email, by)
    return row


def lift_address(address: str, by: str, now: datetime | None = None) -> int:
    """Lift every unlifted suppression of `address` (no commit); returns how many."""
    S = EmailSuppression
    return db.session.execute(update(S).where(S.email == normalize(address), S.lifted_at.is_(None))
                              .values(lifted_at=now or utcnow(), lifted_by=by[:100])
                              .execution_options(synchronize_session=False)).rowcount


def masked(address: str) -> str:
    """a…@example.com: enough for its owner to recognise, little for anyone looking over a shoulder."""
    local, _, domain = (address or "").partition("@")
    return f"{local[:1]}…@{domain}" if domain else address
