"""Notification jobs (thin: each calls a service)."""
from __future__ import annotations

from ..queue import QUEUE_DEFAULT, background_job

# --- announcements (pipeline part) -------------------------------------------


@background_job(queue=QUEUE_DEFAULT)
def batch_send_notifications(user_ids, type: str, title: str, body: str = "", url: str | None = None,
                             announcement_id: str | None = None) -> dict:
    """Fan one message out to `user_ids` (all users when None); progress in the job meta."""
    from .announcements import batch_send_notifications as send

    return send(user_ids, type, title, body, url, announcement_id=announcement_id)
