"""The outbox sweep job: relay the events the after-commit relay missed."""
from __future__ import annotations

from ..queue import QUEUE_NOTIFICATIONS, background_job
from .relay import sweep_outbox_now


@background_job(queue=QUEUE_NOTIFICATIONS, retry_intervals=())
def sweep_outbox() -> dict:
    """Scheduled every minute (ops/schedule.py: relay-outbox)."""
    return sweep_outbox_now()
