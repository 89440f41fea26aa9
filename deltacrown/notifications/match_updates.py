"""A rescheduled match: the notification that announced it follows it.

Each member's `match_scheduled` notification about the match is rewritten, not joined by a
second item: it gets the new time in its title and body, is unread (and unseen) again and
moves to the top of the center. The center pages newest-first by id, so "to the top" is a
new row: the fresh notification is written by the fan-out (keyed on the reschedule event,
like any other), the old row's deliveries and digest entries are moved onto it, and the old
row is deleted, all in the event's one transaction. Everything else goes the usual way of
the fan-out: a short "Rescheduled" email (an email cannot be edited) and personal Discord
posts on the channels each member chose for match_scheduled, and the match's card on the
team webhooks, edited in place (cards.py). A digest shows the one row: the final time.

A second run for the same event finds the rows keyed on it and changes nothing.

A recompute of a tournament's rankings (`standings_updated`) queues one delivery of its
standings card on the platform webhook (`queue_standings_card`; the card itself: cards.py).
"""
from __future__ import annotations

from flask import current_app
from sqlalchemy import delete, select, update

from ..extensions import db
from ..tournaments.models import Tournament
from . import composers
from .models import Delivery, Notification, notification_digest_items
from .service import NotificationService, NotifyResult, enqueue_pending, enqueue_sends, outgoing_message, pending_sends
from .types import EMAIL, get_type

TYPE = "match_scheduled"


def notify_rescheduled(event) -> int:
    """Reaction to match_rescheduled; returns how many sends were enqueued."""
    message = composers.match_rescheduled(event.payload or {})
    if message is None:  # the match is gone, or got its result meanwhile
        return 0
    dedup_key = f"event:{event.id}"
    recipients = {int(u) for u in get_type(TYPE).audience.recipients(message, event.created_at)}
    done = set(db.session.scalars(select(Notification.user_id).where(
        Notification.dedup_key == dedup_key, Notification.user_id.in_(recipients)))) if recipients else set()
    old = list(db.session.scalars(select(Notification).where(
        Notification.type == TYPE, Notification.url == message.url,
        Notification.user_id.in_(recipients - done)).order_by(Notification.id))) if recipients - done else []
    for note in old:  # frees (user, dedup_key) for nothing: the old key names the first event
        note.dedup_key = None
    db.session.flush()

    NotificationService(as_of=event.created_at).notify(
        recipients, TYPE, message.title, message.body, message.url, dedup_key, event_id=event.id,
        team_ids=message.team_ids, commit=False, card=message.card, tournament_id=message.tournament_id)

    fresh = dict(db.session.execute(select(Notification.user_id, Notification.id).where(
        Notification.dedup_key == dedup_key, Notification.user_id.in_({n.user_id for n in old}))).all()) \
        if old else {}
    for note in old:
        new_id = fresh.get(note.user_id)
        if new_id is None:  # in-app is off for them now: rewrite their old item where it stands
            note.title, note.body, note.dedup_key = message.title[:300], message.body, dedup_key
            note.is_read, note.read_at = False, None
            note.seen_at = None
            continue
        # An email of the old time still waiting (quiet hours, email delay) would tell the old time:
        # the "Rescheduled" email replaces it.
        db.session.execute(update(Delivery).where(Delivery.notification_id == note.id, Delivery.channel == EMAIL,
                                                  Delivery.status == "pending")
                           .values(status="skipped", last_error="superseded: the match was rescheduled")
                           .execution_options(synchronize_session=False))
        db.session.execute(update(Delivery).where(Delivery.notification_id == note.id)
                           .values(notification_id=new_id).execution_options(synchronize_session=False))
        db.session.execute(update(notification_digest_items)
                           .where(notification_digest_items.c.notification_id == note.id)
                           .values(notification_id=new_id))
        db.session.execute(delete(Notification).where(Notification.id == note.id)
                           .execution_options(synchronize_session=False))
        db.session.expunge(note)
    pending = pending_sends(Delivery.event_id == event.id)
    db.session.commit()
    enqueue_pending(pending)
    return len(pending)


def queue_standings_card(event) -> int:
    """Reaction to standings_updated: one platform delivery for the tournament's standings card."""
    tournament_id = event.payload["tournament_id"]
    if not current_app.config.get("DISCORD_WEBHOOK_URL"):
        return 0
    tournament = db.session.get(Tournament, tournament_id)
    if tournament is None:
        return 0
    message = {**outgoing_message("ranking_changed", f"Standings: {tournament.name}", "",
                                  f"/tournaments/{tournament.id}"), "card": f"standings:{tournament.id}"}
    result = NotifyResult()
    row = NotificationService._delivery_row(f"event:{event.id}:discord:platform", "discord", "platform", message,
                                            event.id)
    NotificationService._insert_deliveries([row], result)
    db.session.commit()
    enqueue_sends(result.delivery_ids)
    return len(result.delivery_ids)
