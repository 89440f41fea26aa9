"""The daily digest and the cleanup of old notifications.

Daily digest (`send_daily_digest`, run hourly by the scheduler):

- Who: every user whose digest is enabled and who has not unsubscribed from all
  email (opt_out_email). A user without a preference row has the defaults of
  `NotificationPreference.get_or_create_for_user`: enabled, 08:00. Their zone is
  the one of `preferences.user_zone`: the preference's, else the account's, else
  UTC (an unknown zone name is passed over).
  Consent is read at send time: each chunk's user query (which applies both
  conditions) runs in the same run, just before that chunk's emails go out; a
  claim left unsent by an earlier run is sent only if the user is still in.
- When: once their local clock has reached `digest_time` on local date D, and
  no digest row for (user, D) exists yet. With the defaults (08:00, UTC) the
  hourly run sends at 08:00 UTC and finds nothing to do in the other 23 runs,
  i.e. it behaves like a daily 08:00 job.
- What: the user's unread notifications created during local day D-1, grouped
  by type, in one email; those written while their team or tournament was muted
  (mutes.written_muted) are not counted as new but listed under "Muted". Users with nothing unread get no email and no row
  (that answer cannot change later in the day: only reading lowers it).
- Exactly once: a NotificationDigest row, unique per (user, digest_date), is
  inserted and committed as a claim *before* the email goes out; whichever
  run inserts it sends, any other run sees the row and skips. After the
  chunk's emails are sent, the sent rows are marked is_sent/sent_at (with their
  items) in one transaction. A worker that dies between claim and mark leaves
  unsent rows; for an unsent row `created_at` is the time of the current claim,
  and a later run re-claims a row older than DIGEST_CLAIM_TIMEOUT (the RQ job
  timeout: no live run holds a claim longer) with a compare-and-set UPDATE,
  then sends. The only window for a duplicate is a crash after the SMTP server
  accepted an email and before the chunk's mark commit, which no SMTP protocol
  can close; it covers the emails of at most one chunk (DIGEST_CHUNK_SIZE users),
  the price of not paying a commit (an fsync) per email.
- Failures: a temporary send error (4xx, dropped connection) fails that
  user only; their claim stays unsent and is retried after DIGEST_CLAIM_TIMEOUT.
  A permanent refusal (5xx at RCPT or DATA) closes that user's claim unsent (is_sent
  without sent_at) and suppresses the address; the rest of the chunk goes on. A
  suppressed address gets no digest: its claim is closed the same way.
- Cost: users are read in id-ordered chunks of DIGEST_CHUNK_SIZE; 1 statement
  per run (the count) and per chunk at most 7, whatever the chunk holds: users,
  their digest rows, their unread notifications, the claim INSERT, the stale
  re-claim UPDATE, the mark UPDATE and the items INSERT (one executemany),
  plus the empty read that ends the run. The notifications are copied into
  plain ChannelMessages as they are read, so no commit expires anything needed
  later, and a chunk's emails go over one SMTP connection (SmtpSession).
"""
from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import and_, delete, func, insert, or_, select, update

from ..accounts.models import User
from ..channels.smtp import EmailSendError, SmtpSession
from ..errors import InvalidInput
from ..extensions import db
from ..queue import report_progress
from ..signals import checkpoint
from ..timeutil import UTC_ZONE, first_zone, utcnow
from . import mail_headers, suppression
from .center import awake
from .content import ChannelMessage
from .emails import send_digest_email
from .models import (DEFAULT_DIGEST_TIME, Delivery, EmailSuppression, Notification, NotificationDigest,
                     NotificationPreference, notification_digest_items)
from .mutes import written_muted
from .types import NOTIFICATION_TYPES

log = logging.getLogger(__name__)

DIGEST_CHUNK_SIZE = 200
CLEANUP_BATCH_SIZE = 1000


def digest_due(now: datetime, zone: ZoneInfo, digest_time: time | None) -> date | None:
    """The local date whose digest is due at `now` (UTC), or None before the local digest time."""
    local_now = now.astimezone(zone)
    if local_now.time().replace(tzinfo=None) < (digest_time or DEFAULT_DIGEST_TIME):
        return None
    return local_now.date()


def previous_local_day(digest_date: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) in UTC of the local day before `digest_date` (23 or 25 hours around DST)."""
    end = datetime.combine(digest_date, time(0), tzinfo=zone)
    start = datetime.combine(digest_date - timedelta(days=1), time(0), tzinfo=zone)
    return start.astimezone(UTC_ZONE), end.astimezone(UTC_ZONE)


def group_by_type(notifications) -> dict[str, list]:
    """{type: [notification, ...]} in registry order, each group oldest first (anything with type and created_at)."""
    groups: dict[str, list] = defaultdict(list)
    for n in sorted(notifications, key=lambda n: n.created_at):  # stable: keeps id order among equal times
        groups[n.type].append(n)
    return {t: groups[t] for t in NOTIFICATION_TYPES if t in groups}


@dataclass(frozen=True)
class DigestRecipient:
    """What a digest email needs of its user (plain data: survives any commit)."""
    id: int
    username: str
    email: str
    timezone: str  # the zone the digest's day and times are in
    suppressed: bool = False  # the address bounced or complained: it gets no digest


def _claim_timeout() -> timedelta:
    return timedelta(seconds=current_app.config.get("DIGEST_CLAIM_TIMEOUT", current_app.config["RQ_JOB_TIMEOUT"]))


def _insert_claims(rows: list[dict]) -> list[tuple[int, int]]:
    """INSERT the claim rows, skipping (user, date) pairs that exist; returns [(digest id, user id)] inserted."""
    if not rows:
        return []
    dialect = db.engine.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    stmt = (dialect_insert(NotificationDigest).values(rows)
            .on_conflict_do_nothing(index_elements=["user_id", "digest_date"])
            .returning(NotificationDigest.id, NotificationDigest.user_id))
    return [tuple(r) for r in db.session.execute(stmt)]


def send_daily_digest(now: datetime | None = None, send_email=None, chunk_size: int = DIGEST_CHUNK_SIZE,
                      on_progress=None) -> dict:
    """Send each due user's daily digest once. Returns counts.

    `sent`: emails sent; `skipped`: due users with nothing unread;
    `already_sent`: due users whose digest for that date exists (or is being sent
    by another run right now); `not_due`: before their local digest time;
    `retried`: stale claims re-claimed; `failed`: send errors (their claim stays
    unsent and is retried after DIGEST_CLAIM_TIMEOUT).

    `send_email(recipient, digest_date, items)` replaces the email send (tests):
    a DigestRecipient, the local date and the ChannelMessages, oldest first by
    type; raising fails that user. By default each chunk's digests are rendered
    and sent over one SMTP connection.
    """
    now = now or utcnow()
    stale_before = now - _claim_timeout()
    counts = {"sent": 0, "skipped": 0, "already_sent": 0, "not_due": 0, "retried": 0, "failed": 0,
              "suppressed": 0, "bounced": 0}

    Pref = NotificationPreference
    # Consent: the digest is email, so "unsubscribe from all email" (opt_out_email) stops it too.
    enabled = or_(Pref.id.is_(None), and_(Pref.enable_daily_digest.is_(True), Pref.opt_out_email.is_(False)))
    total = db.session.scalar(select(func.count(User.id)).outerjoin(Pref, Pref.user_id == User.id).where(enabled))
    done = 0
    last_id = 0
    while True:
        # 1: the next chunk of users with the digest enabled, with their settings.
        # (With it, whether the address is suppressed: at most one unlifted suppression per address.)
        listed = EmailSuppression
        chunk = db.session.execute(
            select(User.id, User.username, User.email, User.timezone, Pref.timezone, Pref.digest_time,
                   listed.id.is_not(None))
            .outerjoin(Pref, Pref.user_id == User.id)
            .outerjoin(listed, and_(listed.email == func.lower(User.email), listed.lifted_at.is_(None),
                                    or_(listed.until.is_(None), listed.until > now)))
            .where(enabled, User.id > last_id)
            .order_by(User.id).limit(chunk_size)
        ).all()
        if not chunk:
            break
        last_id = chunk[-1][0]
        due: dict[int, tuple[date, ZoneInfo]] = {}
        recipients: dict[int, DigestRecipient] = {}
        for user_id, username, address, user_tz, pref_tz, digest_time, suppressed in chunk:
            zone = first_zone(pref_tz, user_tz)  # the rule of preferences.user_zone, on the batch's rows
            digest_date = digest_due(now, zone, digest_time)
            if digest_date is None:
                counts["not_due"] += 1
            else:
                due[user_id] = (digest_date, zone)
                recipients[user_id] = DigestRecipient(user_id, username, address, zone.key, bool(suppressed))
        if due:
            counts_chunk = _send_chunk(now, due, recipients, stale_before, send_email)
            for key, value in counts_chunk.items():
                counts[key] += value
        db.session.commit()  # end the read transaction of this chunk
        done += len(chunk)
        report_progress(done, total)
        if on_progress:
            on_progress(done, total)
    return counts


def _send_chunk(now, due: dict[int, tuple[date, ZoneInfo]], recipients: dict[int, DigestRecipient], stale_before,
                send_email) -> dict:
    counts = {"sent": 0, "skipped": 0, "already_sent": 0, "retried": 0, "failed": 0, "suppressed": 0, "bounced": 0}
    user_ids = list(due)
    # 2: digests that exist for these users' due dates.
    existing = {}
    for d in db.session.execute(
        select(NotificationDigest.id, NotificationDigest.user_id, NotificationDigest.digest_date,
               NotificationDigest.is_sent, NotificationDigest.created_at)
        .where(NotificationDigest.user_id.in_(user_ids),
               NotificationDigest.digest_date >= min(d for d, _ in due.values()))
    ):
        if due[d.user_id][0] == d.digest_date:
            existing[d.user_id] = d
    # 3: the unread notifications of these users' previous local days, as plain data.
    windows = {uid: previous_local_day(d, zone) for uid, (d, zone) in due.items()}
    lo = min(start for start, _ in windows.values())
    hi = max(end for _, end in windows.values())
    unread: dict[int, list[tuple[int, ChannelMessage]]] = defaultdict(list)
    for nid, uid, type_, title, body, url, created_at, seen_at in db.session.execute(
        select(Notification.id, Notification.user_id, Notification.type, Notification.title, Notification.body,
               Notification.url, Notification.created_at, Notification.seen_at)
        .where(Notification.user_id.in_(user_ids), Notification.is_read.is_(False),
               Notification.created_at >= lo, Notification.created_at < hi)
        # put away (archived) or snoozed until later: not for the digest
        .where(Notification.archived_at.is_(None), awake(now))
    ):
        start, end = windows[uid]
        if start <= created_at < end:
            unread[uid].append((nid, ChannelMessage(type=type_, title=title, body=body or "", url=url,
                                                    created_at=created_at,
                                                    muted=written_muted(created_at, seen_at))))

    fresh, stale = [], []
    for uid in user_ids:
        row = existing.get(uid)
        if not unread.get(uid):
            if row is None or row.is_sent:
                counts["skipped" if row is None else "already_sent"] += 1
                continue
            # An unsent claim whose notifications were all read since: nothing to send.
        if row is None:
            fresh.append(uid)
        elif row.is_sent or row.created_at >= stale_before:
            counts["already_sent"] += 1
        else:
            stale.append(row)
    # 4: claim the fresh ones (the unique constraint decides between racing runs).
    claimed = dict((uid, did) for did, uid in _insert_claims(
        [{"user_id": uid, "digest_date": due[uid][0], "is_sent": False, "created_at": now} for uid in fresh]))
    counts["already_sent"] += len(fresh) - len(claimed)
    # 5: re-claim stale unsent claims (compare-and-set on the claim time).
    if stale:
        reclaimed = db.session.execute(
            update(NotificationDigest)
            .where(or_(*[and_(NotificationDigest.id == r.id, NotificationDigest.created_at == r.created_at)
                         for r in stale]), NotificationDigest.is_sent.is_(False))
            .values(created_at=now)
            .returning(NotificationDigest.id, NotificationDigest.user_id)
            .execution_options(synchronize_session=False)
        ).all()
        counts["already_sent"] += len(stale) - len(reclaimed)
        counts["retried"] += len(reclaimed)
        claimed.update((uid, did) for did, uid in reclaimed)
    db.session.commit()  # the claims are visible to every other run from here on
    if not claimed:
        return counts
    checkpoint.send("digest:after_claim")  # claimed, nothing sent yet

    # Send (no statement until the mark), then mark what went out in one transaction.
    done_ids: list[int] = []
    closed_ids: list[int] = []  # closed without an email: suppressed, or refused for good
    refused: list[tuple[int, DigestRecipient, EmailSendError]] = []
    items: list[dict] = []
    with contextlib.ExitStack() as stack:
        if send_email is None:
            session = stack.enter_context(SmtpSession())

            def send_email(recipient, digest_date, messages):
                send_digest_email(recipient, digest_date, messages, session=session,
                                  digest_id=claimed[recipient.id])

        for uid, digest_id in claimed.items():
            notifications = unread.get(uid, [])
            if notifications and recipients[uid].suppressed:
                # Suppressed addresses (they bounced, or complained) get no digest: the claim is closed unsent.
                counts["suppressed"] += 1
                closed_ids.append(digest_id)
            elif notifications:
                by_age = [m for _, m in sorted(notifications, key=lambda p: (p[1].created_at, p[0]))]
                ordered = [m for group in group_by_type(by_age).values() for m in group]
                try:
                    send_email(recipients[uid], due[uid][0], ordered)
                except EmailSendError as exc:
                    if not exc.refused:
                        log.warning("daily digest for user %s failed; its claim is retried later: %s", uid, exc)
                        counts["failed"] += 1
                        continue
                    # Refused for good (5xx at RCPT/DATA): the rest of the chunk goes on; never retried.
                    log.warning("daily digest for user %s bounced; the address is suppressed: %s", uid, exc)
                    counts["bounced"] += 1
                    closed_ids.append(digest_id)
                    refused.append((digest_id, recipients[uid], exc))
                    continue
                except Exception:  # one user's bad address must not stop everyone's digest
                    log.exception("daily digest for user %s failed; its claim is retried later", uid)
                    counts["failed"] += 1
                    continue
                items.extend({"digest_id": digest_id, "notification_id": nid} for nid, _ in notifications)
                counts["sent"] += 1
            else:
                counts["skipped"] += 1
            done_ids.append(digest_id)
    # 6, 7: mark the chunk's sent digests and record their items (closed ones: done, never sent).
    if done_ids or closed_ids:
        if done_ids:
            db.session.execute(update(NotificationDigest).where(NotificationDigest.id.in_(done_ids))
                               .values(is_sent=True, sent_at=utcnow()).execution_options(synchronize_session=False))
        if closed_ids:
            db.session.execute(update(NotificationDigest).where(NotificationDigest.id.in_(closed_ids))
                               .values(is_sent=True, sent_at=None).execution_options(synchronize_session=False))
        if items:
            db.session.execute(insert(notification_digest_items), items)
        db.session.commit()
    for digest_id, recipient, exc in refused:
        suppression.refused_while_sending(mail_headers.DIGEST, digest_id, recipient.email, recipient.id,
                                          exc.code, exc.reply)
    return counts


MAX_DAYS_TO_KEEP = 36_500  # beyond this the cutoff date overflows


def cleanup_old_notifications(days_to_keep: int = 90, now: datetime | None = None,
                              batch_size: int = CLEANUP_BATCH_SIZE, on_progress=None) -> dict:
    """Delete READ notifications created more than `days_to_keep` days ago; unread ones stay.

    In batches of `batch_size` ids, one short transaction each (4 statements:
    pick ids, digest items, deliveries, notifications), so a large backlog
    never holds long locks. Rows that reference a notification are deleted
    with it explicitly, because SQLite does not enforce ON DELETE CASCADE here.
    """
    if isinstance(days_to_keep, bool) or not isinstance(days_to_keep, int) or not 1 <= days_to_keep <= MAX_DAYS_TO_KEEP:
        raise InvalidInput(f"days_to_keep must be a whole number from 1 to {MAX_DAYS_TO_KEEP}",
                           fields={"days": f"must be a whole number from 1 to {MAX_DAYS_TO_KEEP}"})
    cutoff = (now or utcnow()) - timedelta(days=days_to_keep)
    deleted = 0
    while True:
        ids = db.session.scalars(
            select(Notification.id).where(Notification.is_read.is_(True), Notification.created_at < cutoff)
            .order_by(Notification.id).limit(batch_size)
        ).all()
        if not ids:
            break
        db.session.execute(delete(notification_digest_items)
                           .where(notification_digest_items.c.notification_id.in_(ids)))
        db.session.execute(delete(Delivery).where(Delivery.notification_id.in_(ids))
                           .execution_options(synchronize_session=False))
        deleted += db.session.execute(delete(Notification).where(Notification.id.in_(ids))
                                      .execution_options(synchronize_session=False)).rowcount
        db.session.commit()
        report_progress(deleted, None)
        if on_progress:
            on_progress(deleted, None)
        if len(ids) < batch_size:
            break
    return {"deleted": deleted, "days_to_keep": days_to_keep, "cutoff": cutoff.isoformat()}
