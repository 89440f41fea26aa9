"""The fan-out engine: one message of a registered type to many recipients, on the
channels each of them chose.

What a type says and to whom is its registry entry's (types.py: `compose` and
`audience`); `NotificationService.notify_about` asks the entry, `notify` does the
rest for any list of users:

1. reads every recipient's preferences in ONE query per chunk, as plain column
   values (users without a preference row get the registry defaults; no rows are
   created for them);
2. writes the in-app `Notification` rows in one bulk INSERT;
3. writes the `Delivery` rows in one bulk INSERT: per recipient one for email
   (target = their address) and one for Discord (only with a personal webhook,
   target "user:<id>"); and per source ONE Delivery for each team webhook
   (types flagged `team_event`, team has a webhook, target "team:<id>"; with the
   message's `card`, e.g. "match:<id>", the team's card edited in place: cards.py) and for
   the platform webhook (types flagged `public`, DISCORD_WEBHOOK_URL set,
   target "platform");
4. after commit, enqueues the new deliveries' sends: one `send_deliveries(ids)` job
   per DELIVERY_BATCH_SIZE deliveries (with one RQ job per delivery, job overhead
   dominated an announcement's time; see BENCHMARKS.md). An outbox event's job makes
   its event's few sends itself instead (`send_pending_of_event`).

Rules:
- Only registered types: a type missing from the registry is a ValueError.
- Opt-outs win: a channel is used only if the recipient chose it for the type
  and has not opted out of it globally (`NotificationPreference.get_channels_for_type`).
- The Notification row IS the in-app message: it is written only when in_app is
  among the recipient's channels. Someone with in_app off but email on gets no
  row in their notification center; their email Delivery carries the content.
  So every Delivery row carries `payload` {type, title, body, url} (and, when
  there is one, `notification_id`): a sender never needs anything else.
- Idempotency: every notification has a `dedup_key` naming its source
  ("event:<outbox id>", "announcement:<id>"), unique per user, and every delivery
  a unique key derived from it ("<source>:<channel>:user:<id>", ":team:<id>",
  ":platform"). Inserts are INSERT .. ON CONFLICT DO NOTHING (PostgreSQL and
  SQLite), so handling the same source twice writes nothing new and never fails.
- URLs are site-relative paths ("/teams/3"); senders prefix PUBLIC_BASE_URL.
- Mutes (mutes.py): a recipient who muted a team or the tournament the message is about
  (the composer's team_ids / tournament_id) gets the in-app row already seen and no
  email or personal Discord; critical types are never muted. One query per chunk.
- Held sends (held.py): an email or personal Discord send inside the recipient's quiet
  hours, or an email under their "only if unseen after N minutes" rule, gets `send_after`
  and goes out with the user's other held sends at that time (one held job per user and
  time), never before.
"""
from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from flask import current_app
from sqlalchemy import false, inspect, select

from ..accounts.models import User
from ..dbutil import insert_ignoring_duplicates
from ..extensions import db
from ..outbox.dispatch import events_waiting
from ..queue import QUEUE_SENDS, get_queue, job_is_live
from ..teams.models import Team
from ..timeutil import first_zone, utcnow
from .delivery_jobs import first_tries, gather_sends, queue_ready_sends_job_if_lost, send_deliveries
from .held import schedule_held, send_after_for, sweep_held
from .mutes import muted_column
from .models import Delivery, Notification, NotificationPreference, channels_for_type
from .types import DISCORD, EMAIL, IN_APP, get_type


log = logging.getLogger(__name__)

CHUNK_SIZE = 2000  # recipients per round of bulk statements (statements are constant per chunk)


@dataclass
class NotifyResult:
    notifications: int = 0
    delivery_ids: list[int] = field(default_factory=list)  # to send now
    recipients: int = 0
    # Held sends (quiet hours, email delay; held.py): (user id, epoch) of each held job to schedule.
    held: set[tuple[int, int]] = field(default_factory=set)
    held_ids: list[int] = field(default_factory=list)


def recipients_query(muted=None):
    """(user id, email, channels, opt-out in-app, email, discord, personal webhook, quiet hours
    start, end, email delay, preference zone, account zone, muted) per user; the preference
    columns are NULL for a user without a preference row (= defaults). `muted`: a
    `mutes.muted_column` of User.id (none: nobody is muted)."""
    pref = NotificationPreference
    return (select(User.id, User.email, pref.channels, pref.opt_out_in_app, pref.opt_out_email,
                   pref.opt_out_discord, pref.discord_webhook_url, pref.quiet_hours_start, pref.quiet_hours_end,
                   pref.email_after_unseen_minutes, pref.timezone, User.timezone,
                   (false() if muted is None else muted).label("muted"))
            .outerjoin(pref, pref.user_id == User.id))


def enqueue_sends(delivery_ids, held_pairs=()) -> None:
    """One send job per batch of deliveries (delivery_jobs.send_deliveries); held sends
    ((user id, epoch) pairs) get their held job at their time instead (held.py)."""
    batch_size = current_app.config["DELIVERY_BATCH_SIZE"]
    batches = [(batch,) for batch in chunked(list(delivery_ids), batch_size)]
    if batches:
        send_deliveries.enqueue_many(batches)
    if held_pairs:
        schedule_held(held_pairs)


def notify_for_event(type_name: str, event) -> int:
    """Notify of an outbox event, then send: returns how many sends were made or enqueued.

    The rows are keyed on the event, so a retry writes nothing twice. With sends to make,
    the rows are committed (the in-app copy is visible before any email leaves) and the
    event's still-pending deliveries sent or enqueued (`send_pending_of_event`), all before
    the dispatcher marks the event handled: a job that dies on the way is retried and sends
    what is still pending. Without (in-app only, the common case) nothing is committed here:
    the rows commit with the event's "handled" mark, one commit, not two.
    """
    NotificationService(as_of=event.created_at).notify_about(type_name, event.payload or {}, f"event:{event.id}",
                                                             event_id=event.id, commit=False)
    pending = pending_sends(Delivery.event_id == event.id)
    if pending:
        db.session.commit()
        send_pending_of_event(pending)
    return len(pending)


# An event's job makes up to this many due sends itself: a send job of their own cost more
# than the sends (RQ's per-job work, the enqueue, reading the rows again), and it was a third
# of a worker's time under load (bench/FINDINGS.md). More (a tournament-wide event) go to
# batch jobs, so one event never holds the notifications queue for long.
SENDS_IN_EVENT_JOB = 10
# That pays only while nothing waits behind the event: with other events waiting (later ones of
# the same job, or event jobs queued: a burst of writes; outbox.dispatch.events_waiting), its
# sends are gathered for the one ready-sends job (delivery_jobs.gather_sends), so the events
# behind it are marked handled (their in-app copies out) without waiting for the
# emails before theirs: the load test's start burst waited seconds for them (bench/FINDINGS.md,
# round 12); and a send job per event was half of the jobs under load (round 16).
# And only while sends are quick (a local relay). When an event's sends took longer than
# this, or one failed temporarily (a channel down or slow), this process gathers them for a
# while instead: then the send job runs behind the event jobs, on the queues' priority, and
# no event's in-app copies wait behind the emails of the events before it.
SENDS_IN_EVENT_JOB_SLOW_SECONDS = 0.25
SENDS_IN_EVENT_JOB_PAUSE_SECONDS = 60
# Past this, the event's job hands its unsent rest to a send job: well inside the event's
# lease (outbox.dispatch.EVENT_LEASE_SECONDS), so no second job takes the event over meanwhile.
SENDS_IN_EVENT_JOB_BUDGET_SECONDS = 5
_sends_in_event_job_paused_until = 0.0


def send_pending_of_event(pending) -> None:
    """The sends of one event's committed `pending_sends` rows: up to SENDS_IN_EVENT_JOB due ones
    made here (the event's job), or gathered for the one ready-sends job (delivery_jobs.gather_sends)
    while events wait behind it; more as `enqueue_pending` does (batch jobs; held ones at
    their time). Each send is claimed once (deliveries.py), so a retry never sends twice."""
    global _sends_in_event_job_paused_until
    now = utcnow()
    due = [delivery_id for delivery_id, _, after in pending if after is None or after <= now]
    if due and len(due) <= SENDS_IN_EVENT_JOB:
        if time.monotonic() >= _sends_in_event_job_paused_until and not events_waiting():
            started = time.monotonic()
            counts = first_tries(due, budget_seconds=SENDS_IN_EVENT_JOB_BUDGET_SECONDS)
            if (counts.get("retrying") or counts.get("failed")
                    or time.monotonic() - started > SENDS_IN_EVENT_JOB_SLOW_SECONDS):
                _sends_in_event_job_paused_until = time.monotonic() + SENDS_IN_EVENT_JOB_PAUSE_SECONDS
        else:  # events wait (or sends are slow): one job takes the few sends of many events
            gather_sends(due)
        made = set(due)
        pending = [row for row in pending if row[0] not in made]
    enqueue_pending(pending)


# A due send never tried this long after it was written, with no send job queued or running,
# has lost its job (Redis lost its data, the job was deleted or given up): the minute sweep
# (jobs.sweep_held_sends, beside the held sends') enqueues it again. While send jobs are queued
# or running (a big announcement's sends take longer than this) it waits: they may be its own.
LOST_SEND_AGE = timedelta(minutes=10)
LOST_SENDS_PER_SWEEP = 5000


def sweep_lost_sends(now=None) -> dict:
    """Enqueue again the due first sends (never tried, not held) older than LOST_SEND_AGE, and
    the sends tried and left pending for a retry that is overdue (`_resend_lost_retries`), once
    no send job is queued or running.

    A held one is its held job's (held.sweep_held).
    """
    sends = get_queue(QUEUE_SENDS)
    if sends.count or sends.started_job_registry.get_job_count(cleanup=False):
        return {"lost_sends": 0, "resent": 0, "retries_resent": 0, "waiting": "send jobs are queued or running"}
    now = now or utcnow()
    ids = list(db.session.scalars(
        select(Delivery.id).where(Delivery.status == "pending", Delivery.attempts == 0, Delivery.send_after.is_(None),
                                  Delivery.created_at <= now - LOST_SEND_AGE)
        .order_by(Delivery.id).limit(LOST_SENDS_PER_SWEEP)))
    db.session.commit()  # end the read transaction before talking to Redis
    resent = _enqueue_lost(ids)
    if resent:
        log.warning("sends: %s due send(s) never tried after %s; their job was lost, enqueued again",
                    resent, LOST_SEND_AGE)
    return {"lost_sends": len(ids), "resent": resent, "retries_resent": _resend_lost_retries(now)}


def _resend_lost_retries(now) -> int:
    """A send that failed temporarily stays pending (attempts > 0) for its retry, a job RQ keeps
    in Redis. One not tried again for LOST_SEND_AGE past the longest retry interval has lost that
    job: it is tried again by a batch job like a lost first send (`_enqueue_lost`), and a
    temporary failure there starts its retry schedule again.

    Counted from its last claim (`last_tried_at`), never from when it was written: a send under
    way (claimed, its lease lost with Redis's data too) or a retry still scheduled after a late
    first try is far younger than that, so it is never given a second job."""
    longest = timedelta(seconds=max(current_app.config["DELIVERY_RETRY_INTERVALS"], default=0))
    ids = list(db.session.scalars(
        select(Delivery.id).where(Delivery.status == "pending", Delivery.attempts > 0,
                                  Delivery.last_tried_at <= now - longest - LOST_SEND_AGE)
        .order_by(Delivery.id).limit(LOST_SENDS_PER_SWEEP)))
    db.session.commit()  # end the read transaction before talking to Redis
    resent = _enqueue_lost(ids)
    if resent:
        log.warning("sends: %s send(s) tried and still pending past their retries; their retry was lost, "
                    "enqueued again", resent)
    return resent


def _enqueue_lost(ids) -> int:
    """send_deliveries jobs for these lost sends, one per DELIVERY_BATCH_SIZE, each under an id of
    its own ("lost-sends-<first id>-<last id>") so that a second sweep before it ran adds no
    second job. Returns how many sends were enqueued."""
    resent = 0
    for batch in chunked(ids, current_app.config["DELIVERY_BATCH_SIZE"]):
        job_id = f"lost-sends-{batch[0]}-{batch[-1]}"
        if job_is_live(job_id):
            continue
        send_deliveries.enqueue(batch, job_id=job_id)
        resent += len(batch)
    return resent


def sweep_unsent() -> dict:
    """The minute sweep of sends whose job was lost: held ones (held.sweep_held), first ones, and
    the ready sends list's when its job never reached the queue."""
    ready_job = queue_ready_sends_job_if_lost()
    return {**sweep_held(), **sweep_lost_sends(), **({"ready_job_queued": True} if ready_job else {})}


def pending_sends(*where) -> list:
    """(id, user id, send_after) of the pending deliveries matching `where`, in order."""
    return db.session.execute(select(Delivery.id, Delivery.user_id, Delivery.send_after)
                              .where(Delivery.status == "pending", *where).order_by(Delivery.id)).all()


def enqueue_pending(pending) -> None:
    """Enqueue the sends of `pending_sends` rows: due ones now; held ones (quiet hours, email
    delay) never before their time: their held job sends them."""
    now = utcnow()
    enqueue_sends([d for d, _, after in pending if after is None or after <= now],
                  {(u, math.ceil(after.timestamp())) for _, u, after in pending
                   if after is not None and after > now and u is not None})


def outgoing_message(type_name: str, title: str, body: str = "", url: str | None = None,
                     subject_id: int | None = None) -> dict:
    """The message as notifications and deliveries carry it; ValueError for an unregistered type.
    `subject_id` (what a type with actions is about, e.g. the invite) only when there is one."""
    message = {"type": get_type(type_name).name, "title": title[:300], "body": body or "", "url": url}
    if subject_id is not None:
        message["subject_id"] = int(subject_id)
    return message


def teams_with_webhook(team_ids) -> list[int]:
    """Which of these teams have a Discord webhook. A team the event's composer already read (in
    this session) is asked there: a SELECT for it was one of the ten round trips of a team event."""
    with_webhook, unread = set(), []
    for team_id in team_ids:
        team = db.session.identity_map.get(db.session.identity_key(Team, team_id))
        # Only a loaded value counts: an expired one would be a read of its own (or fail, if deleted).
        if team is None or "discord_webhook_url" not in inspect(team).dict:
            unread.append(team_id)
        elif team.discord_webhook_url:
            with_webhook.add(team_id)
    if unread:
        with_webhook.update(db.session.scalars(select(Team.id).where(
            Team.id.in_(unread), Team.discord_webhook_url.is_not(None), Team.discord_webhook_url != "")))
    return sorted(with_webhook)


def chunked(items, size):
    for start in range(0, len(items), size):
        yield items[start:start + size]


class NotificationService:
    """`as_of`: the time of the change being reported (the outbox event's); team
    recipients are the members at that time, not whoever joined since."""

    def __init__(self, as_of=None):
        self.as_of = as_of

    def notify_about(self, type_name: str, payload: dict, dedup_key: str, *, event_id: int | None = None,
                     commit: bool = True) -> NotifyResult | None:
        """Notify the type's audience of what its composer makes of `payload` (None: nothing to say)."""
        spec = get_type(type_name)
        message = spec.compose(payload)
        if message is None:
            return None
        return self.notify(spec.audience.recipients(message, self.as_of), type_name, message.title, message.body,
                           message.url, message.dedup_key or dedup_key, event_id=event_id, team_ids=message.team_ids,
                           commit=commit, subject_id=message.subject_id, card=message.card,
                           tournament_id=message.tournament_id)

    def notify(self, user_ids, type: str, title: str, body: str = "", url: str | None = None,
               dedup_key: str | None = None, *, event_id: int | None = None, team_ids=(),
               commit: bool = True, enqueue: bool = True, subject_id: int | None = None,
               card: str | None = None, tournament_id: int | None = None) -> NotifyResult:
        """Notify these users (and the teams' / platform webhook, by the type's flags). `team_ids`
        and `tournament_id`: what it is about (their webhooks; the recipients' mutes). `card`: the
        team webhook posts are that Discord card, edited in place (cards.py), not new messages."""
        dedup_key = dedup_key or f"adhoc:{uuid.uuid4().hex}"
        message = outgoing_message(type, title, body, url, subject_id)
        result = NotifyResult()
        ids = sorted({int(u) for u in user_ids})
        muted = None if get_type(type).critical else muted_column(User.id, team_ids, tournament_id)
        for chunk in chunked(ids, CHUNK_SIZE):
            rows = db.session.execute(recipients_query(muted).where(User.id.in_(chunk))).all()
            self.write_for_recipients(rows, message, dedup_key, event_id, result)
        self.write_shared_deliveries(message, dedup_key, event_id, team_ids, result, card=card)
        if commit:
            db.session.commit()
            if enqueue:
                enqueue_sends(result.delivery_ids, result.held)
        return result

    def write_for_recipients(self, rows, message: dict, dedup_key: str, event_id: int | None,
                             result: NotifyResult) -> None:
        """Bulk-write notifications and personal deliveries for `recipients_query` rows.

        Two INSERT statements whatever the number of rows. Muted recipients (the rows' `muted`
        column, mutes.py) get the in-app row already seen and no personal sends. Email and
        personal Discord sends get `send_after` when quiet hours or the email delay hold them
        (held.py).
        """
        spec = get_type(message["type"])
        type_name = spec.name
        now = utcnow()
        muted = {row[0] for row in rows if row[12]}
        notification_rows, channels_by_user, choices, timing = [], {}, {}, {}
        for row in rows:
            user_id, email, chosen_map, no_in_app, no_email, no_discord, webhook = row[:7]
            quiet_start, quiet_end, delay, pref_zone, user_zone_name = row[7:12]
            if quiet_start is not None or delay:
                timing[user_id] = (quiet_start, quiet_end, delay, pref_zone, user_zone_name)
            chosen = (chosen_map or {}).get(type_name)
            # Most recipients share a handful of choices: decide each distinct one once.
            key = (None if chosen is None else tuple(chosen), bool(no_in_app), bool(no_email), bool(no_discord))
            channels = choices.get(key)
            if channels is None:
                channels = choices[key] = channels_for_type(type_name, chosen_map, no_in_app, no_email, no_discord)
            if user_id in muted:  # in-app only (already seen), however they chose
                channels = [c for c in channels if c == IN_APP]
            channels_by_user[user_id] = (email, webhook, channels)
            if IN_APP in channels:
                notification_rows.append({"user_id": user_id, "type": type_name, "title": message["title"],
                                          "body": message["body"], "url": message["url"], "is_read": False,
                                          "created_at": now, "read_at": None, "dedup_key": dedup_key,
                                          "subject_id": message.get("subject_id"),
                                          "seen_at": now if user_id in muted else None})
        # RETURNING: the ids link personal deliveries to their notification, and count only
        # rows really inserted (a retry inserts none; executemany's rowcount is -1 on psycopg).
        inserted = insert_ignoring_duplicates(Notification.__table__, notification_rows,
                                              returning=(Notification.id, Notification.user_id))
        notification_by_user = {user_id: nid for nid, user_id in inserted}
        result.notifications += len(inserted)
        result.recipients += len(rows)

        delivery_rows = []
        for user_id, (email, webhook, channels) in channels_by_user.items():
            targets = []
            if EMAIL in channels and email:
                targets.append((EMAIL, email))
            if DISCORD in channels and webhook:
                targets.append((DISCORD, f"user:{user_id}"))
            for channel, target in targets:
                send_after = None
                if user_id in timing:
                    quiet_start, quiet_end, delay, pref_zone, user_zone_name = timing[user_id]
                    send_after = send_after_for(now, channel, critical=spec.critical,
                                                zone=first_zone(pref_zone, user_zone_name), quiet_start=quiet_start,
                                                quiet_end=quiet_end, delay_minutes=delay,
                                                has_in_app=user_id in notification_by_user)
                delivery_rows.append(self._delivery_row(
                    f"{dedup_key}:{channel}:user:{user_id}", channel, target, message, event_id,
                    user_id=user_id, notification_id=notification_by_user.get(user_id), now=now,
                    send_after=send_after))
        self._insert_deliveries(delivery_rows, result)

    def write_shared_deliveries(self, message: dict, dedup_key: str, event_id: int | None, team_ids,
                                result: NotifyResult, card: str | None = None) -> None:
        """One Delivery per source for each team webhook and for the platform webhook."""
        spec = get_type(message["type"])
        team_message = {**message, "card": card} if card else message
        now = utcnow()
        rows = []
        team_ids = sorted({int(t) for t in team_ids or ()})
        if spec.team_event and team_ids:
            for team_id in teams_with_webhook(team_ids):
                rows.append(self._delivery_row(f"{dedup_key}:discord:team:{team_id}", DISCORD, f"team:{team_id}",
                                               team_message, event_id, now=now))
        if spec.public and current_app.config.get("DISCORD_WEBHOOK_URL"):
            rows.append(self._delivery_row(f"{dedup_key}:discord:platform", DISCORD, "platform", message,
                                           event_id, now=now))
        self._insert_deliveries(rows, result)

    @staticmethod
    def _delivery_row(key, channel, target, message, event_id, user_id=None, notification_id=None, now=None,
                      send_after=None):
        return {"dedup_key": key, "notification_id": notification_id, "event_id": event_id, "user_id": user_id,
                "channel": channel, "target": target, "payload": message, "status": "pending", "attempts": 0,
                "last_error": None, "external_id": None, "created_at": now or utcnow(), "sent_at": None,
                "send_after": send_after}

    @staticmethod
    def _insert_deliveries(rows, result: NotifyResult) -> None:
        inserted = insert_ignoring_duplicates(Delivery.__table__, rows,
                                              returning=(Delivery.id, Delivery.user_id, Delivery.send_after))
        for delivery_id, user_id, send_after in sorted(inserted):
            if send_after is None:
                result.delivery_ids.append(delivery_id)
            else:  # held: sent by its held job at that time (held.py)
                result.held_ids.append(delivery_id)
                result.held.add((user_id, math.ceil(send_after.timestamp())))
