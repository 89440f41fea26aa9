"""Notification jobs (thin: each calls a service). Paths fixed by ops/schedule.py."""
from __future__ import annotations

from ..queue import QUEUE_DEFAULT, QUEUE_NOTIFICATIONS, QUEUE_SCHEDULED, background_job
from . import announcements, center, digests, reminders, retention, service


@background_job(queue=QUEUE_DEFAULT)
def batch_send_notifications(user_ids, type: str, title: str, body: str = "", url: str | None = None,
                             announcement_id: str | None = None) -> dict:
    """Fan one message out to `user_ids` (all users when None); progress in the job meta."""
    return announcements.batch_send_notifications(user_ids, type, title, body, url, announcement_id=announcement_id)


@background_job(queue=QUEUE_SCHEDULED)
def send_digests() -> dict:
    """Hourly: send the daily digest of every user whose local digest time has come."""
    return digests.send_daily_digest()


@background_job(queue=QUEUE_SCHEDULED)
def cleanup_notifications(days: int = 90) -> dict:
    """Delete read notifications older than `days` days (unread ones are kept)."""
    return digests.cleanup_old_notifications(days)


@background_job(queue=QUEUE_SCHEDULED)
def prune_records(days: int | None = None) -> dict:
    """Delete finished deliveries, handled outbox events and digests older than `days` (RETENTION_DAYS)."""
    return retention.prune_records(days)


@background_job(queue=QUEUE_NOTIFICATIONS, timeout=reminders.JOB_TIMEOUT, retry_intervals=reminders.JOB_RETRY_INTERVALS)
def send_match_reminder(match_id: int) -> dict:
    """A match's reminder, if its row says it is due (idempotent: claimed once in the database)."""
    return reminders.send_reminder(match_id)


@background_job(queue=QUEUE_SCHEDULED)
def sweep_match_reminders() -> dict:
    """Every minute: plan missing reminders, send due ones whose job was lost, re-add lost jobs."""
    return reminders.sweep_reminders()


@background_job(queue=QUEUE_NOTIFICATIONS, retry_intervals=())
def sweep_held_sends() -> dict:
    """Every minute: re-create the job of any held send (quiet hours, email delay) whose job was
    lost, and enqueue again the sends never tried long after they were written (their job was lost)."""
    return service.sweep_unsent()


# Scheduled by rq-scheduler under the id "snooze-<id>" (wakeups.py); no retries: the sweep
# below wakes whatever a failed or lost run left asleep.
@background_job(queue=QUEUE_NOTIFICATIONS, retry_intervals=None)
def wake_snoozed(notification_id: int) -> int:
    """A snoozed notification's time has come: back unread and unseen (nothing if moved or woken)."""
    return center.wake(notification_id)


@background_job(queue=QUEUE_SCHEDULED)
def wake_snoozed_sweep() -> dict:
    """Every minute: wake overdue snoozes and re-create wake-up jobs Redis lost."""
    return center.sweep_snoozes()
