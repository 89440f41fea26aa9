"""Writing events. `emit` only adds a row to the current session: the event is
committed with the change that caused it, or rolled back with it."""
from __future__ import annotations

from ..extensions import db
from .events import check_event
from .models import OutboxEvent


def emit(event_type: str, **payload) -> OutboxEvent:
    """Add an event of a declared kind (outbox/events.py); ValueError for any other shape."""
    check_event(event_type, payload)
    event = OutboxEvent(type=event_type, payload=payload)
    db.session.add(event)
    return event
