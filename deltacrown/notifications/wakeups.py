"""The snooze wake-up jobs in rq-scheduler: one per snoozed notification, id `snooze-<id>`.

The database (`Notification.snoozed_until`) is the truth; these jobs only make the wake-up
punctual. Scheduling under the notification's fixed id means re-snoozing moves the one job
(never a second), and un-snoozing removes it. Redis losing the job costs nothing lasting: the
lists and counts treat `snoozed_until <= now` as awake already, and the periodic sweep
(`center.sweep_snoozes`, recurring job `wake-snoozed`) wakes what is overdue and puts back
the jobs of the ones still asleep. The scheduler process (ops/scheduler.py) moves a due job
to the notifications queue; a worker runs `jobs.wake_snoozed`, which changes nothing if the
notification is no longer due (moved, un-snoozed, already woken).
"""
from __future__ import annotations

import logging
from datetime import datetime

from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError

from ..queue import QUEUE_NOTIFICATIONS, AppJob, RedisUnavailable, get_redis

log = logging.getLogger(__name__)

WAKE_FUNC = "deltacrown.notifications.jobs.wake_snoozed"  # by name: jobs.py imports the services
WAKE_TIMEOUT = 60
WAKE_RESULT_TTL = 3600
WAKE_PREFIX = "snooze-"  # rq 3 job ids: letters, digits, "_" and "-" only (no ":")


def wake_job_id(notification_id: int) -> str:
    return f"{WAKE_PREFIX}{notification_id}"


def _scheduler():
    from rq_scheduler import Scheduler

    return Scheduler(queue_name=QUEUE_NOTIFICATIONS, connection=get_redis(), job_class=AppJob)


def _drop(scheduler, job_id: str) -> None:
    """Take the job out of the schedule and delete its hash (unless a worker is running it)."""
    scheduler.cancel(job_id)
    try:
        job = AppJob.fetch(job_id, connection=scheduler.connection)
    except NoSuchJobError:
        return
    if job.get_status(refresh=False) != "started":
        job.delete(remove_from_queue=True)


def schedule_wake(notification_id: int, when: datetime) -> bool:
    """(Re)schedule the wake-up of one notification at `when`; False if Redis could not be
    reached (logged: the sweep schedules it later)."""
    job_id = wake_job_id(notification_id)
    try:
        scheduler = _scheduler()
        _drop(scheduler, job_id)
        scheduler.enqueue_at(when, WAKE_FUNC, notification_id, job_id=job_id, queue_name=QUEUE_NOTIFICATIONS,
                             timeout=WAKE_TIMEOUT, job_result_ttl=WAKE_RESULT_TTL,
                             job_description=f"wake snoozed notification {notification_id}")
        return True
    except (RedisError, RedisUnavailable) as exc:
        log.warning("wake-up of notification %s not scheduled (Redis: %s); the sweep will", notification_id, exc)
        return False


def cancel_wake(notification_id: int) -> None:
    """Remove the wake-up job of one notification, if any (Redis down: the job, if it runs,
    finds nothing to wake)."""
    try:
        _drop(_scheduler(), wake_job_id(notification_id))
    except (RedisError, RedisUnavailable) as exc:
        log.warning("wake-up of notification %s not cancelled (Redis: %s); it will find nothing to do",
                    notification_id, exc)


def scheduled_wakes(notification_ids) -> dict[int, float | None]:
    """{id: scheduled epoch seconds, or None when no wake-up job is scheduled}: one round trip."""
    from rq_scheduler import Scheduler

    ids = list(notification_ids)
    with get_redis().pipeline(transaction=False) as pipe:
        for nid in ids:
            pipe.zscore(Scheduler.scheduled_jobs_key, wake_job_id(nid))
        scores = pipe.execute()
    return dict(zip(ids, scores))
