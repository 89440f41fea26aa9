"""Match reminders: sent MATCH_REMINDER_MINUTES before a match, exactly once, moved with it.

The truth is the match's `MatchReminder` row (tournaments/reminders.py), written with every
change to the match. What waits for the time is an rq-scheduler job with a deterministic id
per match, `match-reminder-<match id>` (the scheduler process moves it to the notifications
queue when due). The job is only a wake-up call; everything is decided on the row:

- `sync_reminder_job(match_id)` makes Redis agree with the row: pending and in the future ->
  the job at `due_at` (re-added under the same id, so moving the match moves the job);
  pending and due -> run now; anything else -> no job. Run by the reactions after each
  change (match_scheduled / _rescheduled / _result, tournament_completed) and by the sweep.
- `send_reminder(match_id)` claims the row with ONE conditional UPDATE (still pending, due,
  for the same match time) and writes the notifications, keyed on the match AND its time
  ("match_reminder:<match>:<epoch>"), in the same commit. A second job (two schedulers, a
  duplicate enqueue, a worker SIGKILLed after the commit and its job run again) finds the row
  sent and does nothing; a reschedule that commits first leaves the UPDATE nothing to claim
  (PostgreSQL re-checks the row after the lock, SQLite has one writer); one that commits
  after makes the row pending again for the new time. A reminder whose match time has
  passed (the workers were down) is skipped, never sent late.
- `sweep_reminders()` (every minute, `match-reminders` in ops/schedule.py): plans a reminder
  for a future match without one, sends any pending reminder that is due (its job was lost:
  Redis restarted empty, a job failed for good) and re-adds missing or misplaced jobs.
"""
from __future__ import annotations

import logging
from datetime import timezone

from sqlalchemy import select, update

from ..extensions import db
from ..queue import QUEUE_NOTIFICATIONS, AppJob, get_redis, registered_job
from ..signals import checkpoint
from ..timeutil import utcnow
from ..tournaments.models import Match, MatchReminder, Tournament
from ..tournaments.reminders import plan_reminder

log = logging.getLogger(__name__)

JOB_PREFIX = "match-reminder-"
JOB_TIMEOUT = 120
JOB_RETRY_INTERVALS = (10, 30, 60)
# By name: jobs.py imports this module (the job calls `send_reminder`).
SEND_REMINDER_JOB = "deltacrown.notifications.jobs.send_match_reminder"


def reminder_job_id(match_id: int) -> str:
    return f"{JOB_PREFIX}{int(match_id)}"


def _scheduler():
    from rq_scheduler import Scheduler

    return Scheduler(queue_name=QUEUE_NOTIFICATIONS, connection=get_redis(), job_class=AppJob)


def _epoch(moment) -> int:
    return int(moment.astimezone(timezone.utc).timestamp())


def _reminder(match_id: int) -> MatchReminder | None:
    return db.session.scalar(select(MatchReminder).where(MatchReminder.match_id == match_id))


# --- Redis follows the database ------------------------------------------------------

def sync_reminder_job(match_id: int, scheduler=None) -> str:
    """Make the match's reminder job agree with its row; returns what it did."""
    send_match_reminder = registered_job(SEND_REMINDER_JOB)
    scheduler = scheduler or _scheduler()
    job_id = reminder_job_id(match_id)
    reminder = _reminder(match_id)
    now = utcnow()
    if reminder is None or reminder.status != "pending":
        if job_id in scheduler:
            scheduler.cancel(job_id)
            _delete_waiting_job(scheduler, job_id)
            return "cancelled"
        return "none"
    if reminder.due_at <= now:
        scheduler.cancel(job_id)
        send_match_reminder.enqueue(match_id)
        return "enqueued"
    if scheduler.connection.zscore(scheduler.scheduled_jobs_key, job_id) == _epoch(reminder.due_at):
        return "kept"
    job = scheduler.enqueue_at(reminder.due_at.astimezone(timezone.utc).replace(tzinfo=None), send_match_reminder,
                               match_id, job_id=job_id, queue_name=QUEUE_NOTIFICATIONS, timeout=JOB_TIMEOUT,
                               job_result_ttl=3600, job_description=f"match reminder: match {match_id}",
                               meta={"match_id": match_id, "due_at": reminder.due_at.isoformat()})
    # rq-scheduler passes no retry: a worker SIGKILLed mid-send gets its job retried by RQ.
    job.retries_left, job.retry_intervals = len(JOB_RETRY_INTERVALS), list(JOB_RETRY_INTERVALS)
    job.save()
    return "scheduled"


def _delete_waiting_job(scheduler, job_id: str) -> None:
    """Drop a cancelled reminder's job hash (rq-scheduler's jobs never expire) unless it is on a
    queue or running: then it finishes, finds its row cancelled, and expires like any result."""
    from rq.exceptions import NoSuchJobError

    try:
        job = AppJob.fetch(job_id, connection=scheduler.connection)
    except NoSuchJobError:
        return
    if job.get_status(refresh=False) == "scheduled":
        job.delete()


def sync_reminder_jobs_of_tournament(tournament_id: int) -> int:
    scheduler = _scheduler()
    ids = list(db.session.scalars(select(Match.id).where(Match.tournament_id == tournament_id)))
    return sum(sync_reminder_job(match_id, scheduler) == "cancelled" for match_id in ids)


# --- the send ----------------------------------------------------------------------------

def send_reminder(match_id: int) -> dict:
    """Send the match's reminder if its row says it is due now (see the module doc)."""
    from .service import NotificationService, enqueue_sends

    now = utcnow()
    reminder = _reminder(match_id)
    if reminder is None:
        return {"match_id": match_id, "status": "no_reminder"}
    if reminder.status != "pending":
        resent = _enqueue_unsent(match_id) if reminder.status == "sent" else 0
        return {"match_id": match_id, "status": reminder.status, "already_done": True, "sends_enqueued": resent}
    match_at, due_at = reminder.match_at, reminder.due_at
    if due_at > now:  # moved later since this job was queued: the job waits again
        db.session.rollback()
        sync_reminder_job(match_id)
        return {"match_id": match_id, "status": "not_due", "due_at": due_at.isoformat()}
    if match_at <= now:  # too late to remind of anything
        db.session.execute(update(MatchReminder).where(
            MatchReminder.id == reminder.id, MatchReminder.status == "pending", MatchReminder.match_at == match_at)
            .values(status="skipped", updated_at=now))
        db.session.commit()
        return {"match_id": match_id, "status": "skipped", "reason": "the match time has passed"}
    claimed = db.session.execute(update(MatchReminder).where(
        MatchReminder.id == reminder.id, MatchReminder.status == "pending", MatchReminder.match_at == match_at,
        MatchReminder.due_at <= now).values(status="sent", sent_at=now, updated_at=now)
        .execution_options(synchronize_session=False)).rowcount
    if not claimed:
        db.session.rollback()
        return {"match_id": match_id, "status": "already_done"}
    service = NotificationService(as_of=now)
    result = service.notify_about("match_reminder", {"match_id": match_id, "match_at": match_at.isoformat()},
                                  f"match_reminder:{match_id}:{_epoch(match_at)}", commit=False)
    checkpoint.send("reminder:after_claim")  # claimed and written, not committed
    db.session.commit()
    checkpoint.send("reminder:after_commit")  # committed, its sends not yet enqueued
    if result is not None:
        enqueue_sends(result.delivery_ids, result.held)
    if result is None:  # nothing to say (the match is gone): the claim stands
        return {"match_id": match_id, "status": "sent", "notifications": 0}
    return {"match_id": match_id, "status": "sent", "notifications": result.notifications,
            "deliveries": len(result.delivery_ids)}


def _enqueue_unsent(match_id: int) -> int:
    """A run killed between its commit and enqueueing its sends left them pending: enqueue them
    (a delivery already being sent is not sent twice: deliveries.py leases and claims it)."""
    from .models import Delivery
    from .service import enqueue_pending, pending_sends

    pending = pending_sends(Delivery.dedup_key.like(f"match_reminder:{int(match_id)}:%"))
    db.session.rollback()
    enqueue_pending(pending)
    return len(pending)


# --- the sweep -------------------------------------------------------------------------

def sweep_reminders() -> dict:
    """Plan missing reminders, send due ones whose job was lost, re-add missing jobs."""
    now = utcnow()
    counts = {"planned": 0, "sent": 0, "rescheduled": 0}
    # Matches scheduled before reminders existed (or whose row was lost): plan them.
    unplanned = list(db.session.scalars(
        select(Match).outerjoin(MatchReminder, MatchReminder.match_id == Match.id)
        .join(Tournament, Tournament.id == Match.tournament_id)
        .where(MatchReminder.id.is_(None), Match.status == "scheduled", Match.scheduled_at > now,
               Tournament.status != "completed")))
    for match in unplanned:
        plan_reminder(match)
        counts["planned"] += 1
    db.session.commit()
    pending = db.session.execute(select(MatchReminder.match_id, MatchReminder.due_at)
                                 .where(MatchReminder.status == "pending").order_by(MatchReminder.due_at)).all()
    db.session.rollback()
    for match_id, due_at in pending:
        if due_at <= now:
            outcome = send_reminder(match_id)
            counts["sent"] += outcome["status"] == "sent"
    # Future ones: one pipelined ZSCORE each; only a missing or misplaced job is written again.
    future = [(match_id, due_at) for match_id, due_at in pending if due_at > now]
    scheduler = _scheduler()
    with scheduler.connection.pipeline(transaction=False) as pipe:
        for match_id, _ in future:
            pipe.zscore(scheduler.scheduled_jobs_key, reminder_job_id(match_id))
        scores = pipe.execute() if future else []
    for (match_id, due_at), score in zip(future, scores):
        if score != _epoch(due_at) and sync_reminder_job(match_id, scheduler) == "scheduled":
            counts["rescheduled"] += 1
    if counts["sent"] or counts["rescheduled"]:
        log.warning("match reminder sweep: %s (jobs were lost or late)", counts)
    return {"status": "ok", **counts}


def upcoming_reminders(limit: int = 20) -> list[dict]:
    """The next pending reminders, for the ops dashboard: [{match_id, title, match_at, due_at,
    job}] where `job` says whether its wake-up job is in the scheduler ("scheduled"/"missing")."""
    rows = db.session.execute(
        select(MatchReminder, Match).join(Match, Match.id == MatchReminder.match_id)
        .where(MatchReminder.status == "pending").order_by(MatchReminder.due_at).limit(limit)).all()
    if not rows:
        return []
    try:
        redis = get_redis()
        from rq_scheduler import Scheduler

        with redis.pipeline(transaction=False) as pipe:
            for reminder, _ in rows:
                pipe.zscore(Scheduler.scheduled_jobs_key, reminder_job_id(reminder.match_id))
            scores = pipe.execute()
    except Exception:  # noqa: BLE001 - the page still lists the reminders without Redis
        scores = [None] * len(rows)
    return [{"match_id": match.id, "tournament_id": match.tournament_id,
             "title": f"{match.team_a.name} vs {match.team_b.name}", "match_at": reminder.match_at,
             "due_at": reminder.due_at, "job_id": reminder_job_id(match.id),
             "job": "scheduled" if score is not None else "missing"}
            for (reminder, match), score in zip(rows, scores)]
