"""Outbox jobs (thin): handle one event, and sweep events the after-commit relay missed."""
from __future__ import annotations

import logging

from sqlalchemy import select, update

from ..extensions import db
from ..queue import QUEUE_NOTIFICATIONS, background_job
from ..timeutil import utcnow
from .models import OutboxEvent

log = logging.getLogger(__name__)

@background_job(queue=QUEUE_NOTIFICATIONS)
def handle_event(event_id: int) -> dict:
    """Turn one outbox event into notifications and deliveries, then enqueue the sends.

    Idempotent: the rows are keyed on the event (INSERT .. ON CONFLICT DO NOTHING).
    With sends to make, `handled_at` is set only after they were enqueued, so a retry
    after a failure re-enqueues the event's still-pending deliveries. Without (in-app
    only, the common case) the rows and the mark commit together: one commit, not two.
    """
    from ..notifications.handlers import handle
    from ..notifications.models import Delivery
    from ..notifications.service import enqueue_sends

    event = db.session.get(OutboxEvent, event_id)
    if event is None:
        return {"event_id": event_id, "status": "missing"}
    if event.handled_at is not None:
        return {"event_id": event_id, "status": "already handled"}
    handle(event)
    pending = list(db.session.scalars(select(Delivery.id).where(Delivery.event_id == event_id,
                                                                Delivery.status == "pending")
                                      .order_by(Delivery.id)))
    if pending:
        db.session.commit()
        enqueue_sends(pending)
    db.session.execute(update(OutboxEvent).where(OutboxEvent.id == event_id, OutboxEvent.handled_at.is_(None))
                       .values(handled_at=utcnow()))
    db.session.commit()
    return {"event_id": event_id, "status": "handled", "deliveries": len(pending)}


@background_job(queue=QUEUE_NOTIFICATIONS, retry_intervals=())
def sweep_outbox() -> dict:
    """Scheduled every minute (ops/schedule.py: relay-outbox)."""
    from .relay import sweep_outbox_now

    return sweep_outbox_now()
