"""Retention: deleting the history that only grows (run daily as `prune-records`).

What goes, once older than RETENTION_DAYS (by `created_at`):

- deliveries that are finished (every status but pending); pending ones stay, whatever
  their age (a held or retried send still needs its row);
- outbox events that were handled and that no delivery references any more
  (the finished deliveries go first, so usually all of them);
- digests: sent ones, and claims whose send never succeeded, which nothing
  retries after their own day;
- bounce and complaint events (the ledger of notifications.suppression), but never
  younger than 7 days (the rates and the soft-bounce rule read that week). The
  suppression list itself stays: an address is mailed again only once lifted.

Read notifications have their own rule and job (`cleanup-notifications`).

How: per table, in id order, batches of `batch_size` rows, each its own short
transaction of a constant number of statements: one SELECT of the batch's
highest id, then DELETE .. WHERE id in (previous batch end, this one] with the
same conditions (digests: their item rows first). A range, never a list of ids,
so no statement carries more than a few bound parameters however large the
batch (PostgreSQL takes at most 65,535), and a row kept for a reason (a pending
delivery) is not read again by the next batch.

Foreign keys: deliveries.event_id (SET NULL) and notification_digest_items
(CASCADE) reference these tables. SQLite does not enforce them here, so the
rows they would touch are handled explicitly — an event still referenced is
kept, a digest's items are deleted with it — and the result is the same on
both databases, with no orphans.

The newest row of each table is never deleted: SQLite (without AUTOINCREMENT)
hands out max(id) + 1, so deleting the newest row would give its id to the
next one, and an outbox event id is part of notification and delivery dedup
keys ("event:42").
"""
from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, exists, func, select

from ..errors import InvalidInput
from ..extensions import db
from ..outbox.models import OutboxEvent
from ..queue import report_progress
from ..timeutil import utcnow
from .models import DELIVERY_STATUSES, Delivery, EmailEvent, NotificationDigest, notification_digest_items

PRUNE_BATCH_SIZE = 1000
MAX_RETENTION_DAYS = 36_500  # beyond this the cutoff date overflows
FINISHED_DELIVERY_STATUSES = tuple(s for s in DELIVERY_STATUSES if s != "pending")
LEDGER_MIN_AGE = timedelta(days=7)


def _batches(model, condition, batch_size: int):
    """Yield (low, high] id ranges of at most `batch_size` rows matching `condition`, in id order.

    Stops below the table's current newest id (see the module docstring). The caller
    deletes each range before asking for the next.
    """
    newest = db.session.scalar(select(func.max(model.id)))
    if newest is None:
        return
    low = 0
    while True:
        batch = (select(model.id).where(model.id > low, model.id < newest, condition)
                 .order_by(model.id).limit(batch_size).subquery())
        high = db.session.scalar(select(func.max(batch.c.id)))
        if high is None:
            return
        yield low, high
        low = high


def prune_records(days: int | None = None, now: datetime | None = None, batch_size: int = PRUNE_BATCH_SIZE,
                  on_progress=None) -> dict:
    """Delete finished deliveries, handled outbox events and digests older than `days` days.

    `days` defaults to RETENTION_DAYS. Returns the number deleted of each and the cutoff.
    """
    if days is None:
        days = current_app.config["RETENTION_DAYS"]
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_RETENTION_DAYS:
        raise InvalidInput(f"days must be a whole number from 1 to {MAX_RETENTION_DAYS}",
                           fields={"days": f"must be a whole number from 1 to {MAX_RETENTION_DAYS}"})
    cutoff = (now or utcnow()) - timedelta(days=days)
    counts = {"deliveries": 0, "outbox_events": 0, "digests": 0}

    def progress():
        done = sum(counts.values())
        report_progress(done, None)
        if on_progress:
            on_progress(done, None)

    def prune(key, model, condition, before_delete=None):
        for low, high in _batches(model, condition, batch_size):
            in_range = (model.id > low) & (model.id <= high) & condition
            if before_delete is not None:
                db.session.execute(before_delete(select(model.id).where(in_range)))
            counts[key] += db.session.execute(
                delete(model).where(in_range).execution_options(synchronize_session=False)).rowcount
            db.session.commit()
            progress()

    # Deliveries first: an event is deleted only once no delivery references it.
    # "Not unfinished" rather than IN (every finished status): one bound parameter however many statuses.
    unfinished = tuple(s for s in DELIVERY_STATUSES if s not in FINISHED_DELIVERY_STATUSES)
    prune("deliveries", Delivery, Delivery.status.not_in(unfinished) & (Delivery.created_at < cutoff))
    prune("outbox_events", OutboxEvent, OutboxEvent.handled_at.is_not(None) & (OutboxEvent.created_at < cutoff)
          & ~exists().where(Delivery.event_id == OutboxEvent.id))
    # A digest's item rows go in the same batch, just before it.
    prune("digests", NotificationDigest, NotificationDigest.created_at < cutoff,
          before_delete=lambda ids: delete(notification_digest_items).where(
              notification_digest_items.c.digest_id.in_(ids)))

    # The bounce/complaint ledger: kept at least the week the rates and the soft-bounce rule read.
    ledger_cutoff = min(cutoff, (now or utcnow()) - LEDGER_MIN_AGE)
    counts["email_events"] = 0
    prune("email_events", EmailEvent, EmailEvent.created_at < ledger_cutoff)

    return {**counts, "days": days, "cutoff": cutoff.isoformat()}
