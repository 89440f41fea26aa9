"""Held sends: quiet hours and "email only when the app was not enough".

When the fan-out writes an email or personal-Discord Delivery it asks `send_after_for`
whether that send must wait, and stores the answer in `Delivery.send_after`:

- Quiet hours (`NotificationPreference.quiet_hours_start/end`, in the user's zone, may
  span midnight): a send that falls inside waits until the window ends. Critical types are
  never held; in-app is never held (it is not a Delivery).
- Email delay (`email_after_unseen_minutes`, 0 = at once): an email whose in-app copy exists
  waits `created + delay`; at send time, if that copy was seen meanwhile, the delivery ends
  `skipped` with "seen in app" (deliveries.email_consent reads it with the consent).
- Both: the later wins (the delayed time, moved to the window's end if it falls inside).

Times are rounded up to the whole second, so a job due at that second finds them due.

Held sends go out in one go per user: one `send_held(user_id, epoch)` job per user and
window end (or delay end), scheduled at that time with the deterministic id
`held-<user_id>-<epoch>` (RQ allows no ":" in ids); it sends every due pending held
delivery of that user, oldest first, as one batch. Nothing ever sends a delivery before its
`send_after` (deliveries.send_delivery refuses to claim it early). The database row is the
truth: `sweep_held` (every minute) re-creates the job of any held delivery whose job is
gone (Redis lost its data, a worker was SIGKILLed and its job given up, two schedulers
racing), so each held send goes out once or never.
"""
from __future__ import annotations

import logging
import math
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from ..extensions import db
from ..queue import QUEUE_SENDS, get_queue, get_redis, job_is_live, registered_job
from ..timeutil import utcnow
from .models import Delivery
from .types import DISCORD, EMAIL

log = logging.getLogger(__name__)

EMAIL_DELAYS = (0, 5, 15, 60, 240)  # minutes: the choices of email_after_unseen_minutes
# By name: delivery_jobs.py imports this module (the held job reads `due_held_ids`).
SEND_HELD_JOB = "deltacrown.notifications.delivery_jobs.send_held"
SWEEP_LIMIT = 5000  # (user, time) pairs per sweep run; the next run takes the rest


def in_quiet_hours(local: datetime, start: time, end: time) -> bool:
    t = local.time().replace(tzinfo=None)
    if start < end:
        return start <= t < end
    return t >= start or t < end  # spans midnight


def quiet_window_end(moment: datetime, zone: ZoneInfo, start: time | None, end: time | None) -> datetime | None:
    """The end (UTC) of the quiet window `moment` falls in, or None when it falls outside
    (or quiet hours are off: start or end unset, or equal)."""
    if start is None or end is None or start == end:
        return None
    local = moment.astimezone(zone)
    if not in_quiet_hours(local, start, end):
        return None
    ends = datetime.combine(local.date(), end, tzinfo=zone)
    if ends <= local:
        ends = datetime.combine(local.date() + timedelta(days=1), end, tzinfo=zone)
    return ends.astimezone(timezone.utc)


def _whole_second(moment: datetime) -> datetime:
    return datetime.fromtimestamp(math.ceil(moment.timestamp()), tz=timezone.utc)


def send_after_for(now: datetime, channel: str, *, critical: bool, zone: ZoneInfo, quiet_start: time | None,
                   quiet_end: time | None, delay_minutes: int | None, has_in_app: bool) -> datetime | None:
    """When an external send written at `now` may go out (None: at once); see the module doc."""
    at = now
    if channel == EMAIL and delay_minutes and has_in_app:
        at = now + timedelta(minutes=delay_minutes)
    if channel in (EMAIL, DISCORD) and not critical:
        at = quiet_window_end(at, zone, quiet_start, quiet_end) or at
    return None if at == now else _whole_second(at)


# --- the jobs -------------------------------------------------------------------

def held_job_id(user_id: int, epoch: int) -> str:
    return f"held-{int(user_id)}-{int(epoch)}"


def schedule_held(pairs, check_existing: bool = False) -> int:
    """Schedule `send_held(user_id, epoch)` at `epoch` for each (user_id, epoch) pair, under its
    deterministic id (scheduling one twice replaces it, never doubles it). `check_existing`: leave
    alone pairs whose job is still alive (the sweep). Returns how many were (re)scheduled."""
    send_held = registered_job(SEND_HELD_JOB)
    pairs = sorted(set((int(u), int(e)) for u, e in pairs))
    if not pairs:
        return 0
    queue = get_queue(QUEUE_SENDS)
    options = send_held.policy.enqueue_options()
    now = utcnow().timestamp()
    scheduled = 0
    with get_redis().pipeline() as pipe:
        for user_id, epoch in pairs:
            job_id = held_job_id(user_id, epoch)
            if check_existing and job_is_live(job_id):
                continue
            job = queue.create_job(send_held, args=(user_id, epoch), job_id=job_id, **options)
            if epoch <= now:
                queue.enqueue_job(job, pipeline=pipe)
            else:
                queue.schedule_job(job, datetime.fromtimestamp(epoch, tz=timezone.utc), pipeline=pipe)
            scheduled += 1
        pipe.execute()
    return scheduled


def due_held_ids(user_id: int, now: datetime | None = None) -> list[int]:
    """The user's pending held deliveries whose time has come, in order (oldest first)."""
    now = now or utcnow()
    return list(db.session.scalars(
        select(Delivery.id).where(Delivery.user_id == user_id, Delivery.status == "pending",
                                  Delivery.send_after.is_not(None), Delivery.send_after <= now)
        .order_by(Delivery.created_at, Delivery.id)))


def sweep_held(now: datetime | None = None) -> dict:
    """Re-create the job of every held send whose job is gone (see the module doc).

    Held deliveries never tried (attempts 0) are the sweep's: one claimed and failed
    temporarily continues on its own retry job, which the sweep leaves alone."""
    now = now or utcnow()
    rows = db.session.execute(
        select(Delivery.user_id, func.min(Delivery.send_after))
        .where(Delivery.status == "pending", Delivery.send_after.is_not(None), Delivery.attempts == 0,
               Delivery.user_id.is_not(None))
        .group_by(Delivery.user_id, Delivery.send_after).limit(SWEEP_LIMIT)).all()
    db.session.commit()  # end the read transaction before talking to Redis
    pairs = {(user_id, math.ceil(send_after.timestamp())) for user_id, send_after in rows}
    rescheduled = schedule_held(pairs, check_existing=True)
    if rescheduled:
        log.warning("held sends: re-created %s lost job(s) of %s held (user, time) pairs", rescheduled, len(pairs))
    return {"held": len(pairs), "rescheduled": rescheduled}

