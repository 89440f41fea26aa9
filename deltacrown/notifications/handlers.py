"""Outbox event -> NotificationService: what each event kind notifies.

`handle(event)` writes the event's notifications and deliveries in the session
without committing; the outbox job (outbox/jobs.py) commits them with the event's
"handled" mark and enqueues the sends. Events that are not about notifications (tournament_completed) start
their follow-up job here.
"""
from __future__ import annotations

import logging

from .service import NotificationService

log = logging.getLogger(__name__)

# event type -> (service method, payload keys it takes)
_NOTIFYING = {
    "invite_sent": ("notify_invite_sent", ("invite_id",)),
    "invite_accepted": ("notify_invite_accepted", ("invite_id",)),
    "roster_changed": ("notify_roster_change", ("team_id", "user_id", "action", "actor_id")),
    "sponsor_approved": ("notify_sponsor_approved", ("sponsor_id",)),
    "promotion_started": ("notify_promotion_started", ("promotion_id",)),
    "achievement_earned": ("notify_achievement_earned", ("achievement_id",)),
    "tournament_registered": ("notify_tournament_registration", ("registration_id",)),
    "match_scheduled": ("notify_match_scheduled", ("match_id",)),
    "match_result": ("notify_match_result", ("match_id",)),
    "bracket_ready": ("notify_bracket_ready", ("tournament_id",)),
    "ranking_changed": ("notify_ranking_changed", ("team_id", "old_rank", "new_rank")),
    "payout_received": ("notify_payout_received",
                        ("user_id", "team_id", "tournament_id", "place", "amount", "transaction_id")),
}


def _tournament_completed(event) -> None:
    # The 200 of POST .../complete does not wait for rankings and payouts.
    from ..economy.jobs import wrap_up_tournament

    wrap_up_tournament.enqueue(event.payload["tournament_id"])


_FOLLOW_UPS = {"tournament_completed": _tournament_completed}


def handle(event) -> None:
    """Notify for one event (idempotent: keyed on the event id). The caller commits."""
    if event.type in _NOTIFYING:
        method, keys = _NOTIFYING[event.type]
        payload = event.payload or {}
        args = {k: payload.get(k) for k in keys}
        getattr(NotificationService(as_of=event.created_at), method)(**args, event_id=event.id, commit=False)
    elif event.type in _FOLLOW_UPS:
        _FOLLOW_UPS[event.type](event)
    else:
        log.warning("outbox event %s has unknown type %r; nothing to do", event.id, event.type)


HANDLED_TYPES = tuple(_NOTIFYING) + tuple(_FOLLOW_UPS)
