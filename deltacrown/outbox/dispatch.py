"""The dispatcher: `handle_event(event_id)`, the job the relay enqueues for every event.

It runs the reactions registered for the event's kind. The reactions live above the
domains (deltacrown/reactions.py) and hand their table to `install_reactions` at start;
the outbox never imports them. A reaction takes the event, writes what it causes in the
session and returns how many sends it enqueued; the dispatcher then marks the event
handled and commits, so rows written without sends commit together with the mark.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from sqlalchemy import update

from ..extensions import db
from ..queue import QUEUE_NOTIFICATIONS, background_job
from ..signals import checkpoint
from ..timeutil import utcnow
from .events import EVENT_KINDS
from .models import OutboxEvent

log = logging.getLogger(__name__)

Reaction = Callable[[OutboxEvent], int]

_reactions: dict[str, tuple[Reaction, ...]] = {}


def install_reactions(table: Mapping[str, tuple[Reaction, ...]]) -> None:
    """Register what every declared event kind causes (an empty tuple: nothing, on purpose).

    A table that leaves a declared kind out, or names an undeclared one, is refused: an
    event must never be marked handled because its reaction was forgotten.
    """
    missing, unknown = set(EVENT_KINDS) - set(table), set(table) - set(EVENT_KINDS)
    if missing or unknown:
        raise ValueError(f"reactions: no entry for {sorted(missing)}, undeclared kinds {sorted(unknown)}")
    _reactions.clear()
    _reactions.update({kind: tuple(reactions) for kind, reactions in table.items()})


# In the worker process itself (no horse): the hot path, a few statements per event.
@background_job(queue=QUEUE_NOTIFICATIONS, in_process=True)
def handle_event(event_id: int) -> dict:
    """Run the event's reactions, then mark it handled.

    Idempotent: reactions key what they write on the event. A reaction with sends to make
    commits its rows and enqueues the sends before the mark, so a retry after a failure
    re-enqueues the event's still-pending sends.
    """
    if not _reactions:  # retried later, rather than marking events handled with nothing done
        raise RuntimeError("no reactions installed (deltacrown.reactions.init_app did not run)")
    event = db.session.get(OutboxEvent, event_id)
    if event is None:
        return {"event_id": event_id, "status": "missing"}
    if event.handled_at is not None:
        return {"event_id": event_id, "status": "already handled"}
    if event.type not in _reactions:
        log.warning("outbox event %s has unknown type %r; nothing to do", event.id, event.type)
    deliveries = sum(react(event) for react in _reactions.get(event.type, ()))
    checkpoint.send("event:before_mark")  # reactions done (their rows flushed), the event not yet marked
    db.session.execute(update(OutboxEvent).where(OutboxEvent.id == event_id, OutboxEvent.handled_at.is_(None))
                       .values(handled_at=utcnow()))
    db.session.commit()
    return {"event_id": event_id, "status": "handled", "deliveries": deliveries}
