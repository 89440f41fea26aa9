"""Notification jobs (thin: each calls a service). Paths fixed by ops/schedule.py."""
from ..queue import QUEUE_SCHEDULED, background_job


# --- Scheduling part (issue 5): daily digests and cleanup -------------------

@background_job(queue=QUEUE_SCHEDULED)
def send_digests() -> dict:
    """Hourly: send the daily digest of every user whose local digest time has come."""
    from .digests import send_daily_digest

    return send_daily_digest()


@background_job(queue=QUEUE_SCHEDULED)
def cleanup_notifications(days: int = 90) -> dict:
    """Delete read notifications older than `days` days (unread ones are kept)."""
    from .digests import cleanup_old_notifications

    return cleanup_old_notifications(days)
