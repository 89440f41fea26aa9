"""The dispatcher: the jobs that handle outbox events. The relay puts a write's one event on
the ready list that one `handle_ready_events` job at a time takes (`gather_events`), and the
events of one commit that wrote several in `handle_events(ids)` jobs. `handle_event(event_id)`,
a job for one event, is what the relay queued before the ready list (jobs of it may still be
queued at a deploy; the bench's throughput case queues a job per event with it).

It runs the reactions registered for the event's kind. The reactions live above the
domains (deltacrown/reactions.py) and hand their table to `install_reactions` at start;
the outbox never imports them. A reaction takes the event, writes what it causes in the
session and returns how many sends it enqueued; the dispatcher then marks the event
handled and commits, so rows written without sends commit together with the mark.

Having handled its own event, a `handle_event` job goes on to the unhandled events committed
after it (`handle_ready_events_after`) if jobs wait in the queue: with a job per event queued,
the first job drains what is ready while the later ones find their event handled.
The jobs run in worker.py's own process (the hot queue: no fork, warm connections;
queue.WarmWorker).

While a job handles an event it holds the event's lease in Redis (`_lease_event`): an
event with sends commits its rows before it sends and is marked handled after, and in
that gap another job for it (a relay again by the sweep, a retry, an old `handle_event`),
run by the other worker, would otherwise react and send again (written rows are keyed and
sends claimed once, so nothing doubled, but the work was done twice and the loser's sends
waited out a retry). That job waits for the lease
instead; a drain skips the event.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar

from redis.exceptions import RedisError
from rq import get_current_job
from sqlalchemy import select, update

from ..extensions import db
from ..queue import QUEUE_NOTIFICATIONS, ReadyList, background_job, jobs_waiting, take_lease
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


# An event job goes on to the events committed after its own (each in its own transaction),
# up to this many or this long: a backlog then drains without a job's overhead per event, and
# the jobs of events already taken find them handled and return at once.
MORE_EVENTS_PER_JOB = 1000
MORE_EVENTS_BUDGET_SECONDS = 5.0


@background_job(queue=QUEUE_NOTIFICATIONS)
def handle_event(event_id: int) -> dict:
    """Run the event's reactions and mark it handled; then handle the ready events after it.

    Idempotent: reactions key what they write on the event. A reaction with sends to make
    commits its rows and enqueues the sends before the mark, so a retry after a failure
    re-enqueues the event's still-pending sends.
    """
    result = _handle_one(event_id)
    # Every committed event has a queued or running job, or waits for the sweep (its relay
    # failed): with no job queued there is nothing to take along, and one LLEN saves the
    # search of the table (a single event's job, the usual case). If Redis cannot say, the
    # events left are their own jobs' (retried until Redis is back).
    more = handle_ready_events_after(event_id) if result["status"] == "handled" and \
        jobs_waiting(QUEUE_NOTIFICATIONS) else 0
    return {**result, **({"more": more} if more else {})}


@background_job(queue=QUEUE_NOTIFICATIONS)
def handle_events(event_ids: list[int]) -> dict:
    """The events one commit or sweep relayed together (a rankings recompute writes thousands):
    each handled as by `handle_event`, in its own transaction. One that fails does not stop
    the others; the job then fails, and RQ's retry runs it again (handled events are skipped)."""
    return _handle_each(event_ids)


# The relay's events of one write each, gathered for one job at a time (queue.ReadyList): under
# load a job per event cost more in RQ's work than the event's own, and most of those jobs only
# found their event taken along by an earlier one (bench/FINDINGS.md, round 17). Ids lost with
# Redis's data are events relayed and never handled, which the outbox sweep relays again.
READY_EVENTS = ReadyList("dc:events", per_job=100)


def gather_events(event_ids) -> None:
    """Put these relayed events on the ready list, and queue a handle_ready_events job unless one
    is queued and has not started (it will take them). Raises if Redis does (the relay then
    leaves the events to the sweep)."""
    READY_EVENTS.gather(event_ids, handle_ready_events.enqueue)


def queue_ready_events_job_if_lost() -> bool:
    """For the minute sweep: queue a handle_ready_events job if events wait on the list with no
    job that will take them (the relay's process died between the mark and the enqueue)."""
    return READY_EVENTS.queue_job_if_lost(handle_ready_events.enqueue)


@background_job(queue=QUEUE_NOTIFICATIONS)
def handle_ready_events() -> dict:
    """The events on the ready list (`gather_events`), up to its per_job, each handled as by
    `handle_event`. The ids it takes are kept under its job id until all are handled: a retry
    (one failed, or the worker was SIGKILLed) takes the same ones again and skips the handled."""
    job_id = get_current_job().id
    result = _handle_each(READY_EVENTS.take(job_id, handle_ready_events.enqueue))
    READY_EVENTS.done(job_id)
    return result


# How many events the running job has yet to handle after the one it is on (events_waiting).
_events_after_this_one: ContextVar[int] = ContextVar("events_after_this_one", default=0)


def events_waiting() -> bool:
    """Whether events wait behind the one being handled: later ones of the same job, or jobs in
    the queue. An event's sends are then gathered for a send job rather than made by its job,
    so the events behind it are not held up by its emails (notifications.service)."""
    return _events_after_this_one.get() > 0 or jobs_waiting(QUEUE_NOTIFICATIONS)


def _handle_each(event_ids: list[int]) -> dict:
    counts: dict[str, int] = {}
    failed = []
    for at, event_id in enumerate(event_ids):
        token = _events_after_this_one.set(len(event_ids) - at - 1)
        try:
            status = _handle_one(event_id)["status"]
        except Exception:  # noqa: BLE001 - the others still go; the retry takes this one again
            db.session.rollback()
            log.warning("outbox event %s failed; the job will be retried", event_id, exc_info=True)
            failed.append(event_id)
            continue
        finally:
            _events_after_this_one.reset(token)
        counts[status] = counts.get(status, 0) + 1
    if failed:
        raise RuntimeError(f"outbox events {failed} failed (the others are handled)")
    return {"events": len(event_ids), **counts}


def _handle_one(event_id: int) -> dict:
    if not _reactions:  # retried later, rather than marking events handled with nothing done
        raise RuntimeError("no reactions installed (deltacrown.reactions.init_app did not run)")
    give_up_waiting_at = time.monotonic() + EVENT_LEASE_SECONDS + 1
    release, waited = None, False
    try:
        while True:
            # FOR UPDATE (PostgreSQL): a job inside its transaction is waited for; one between its
            # first commit and its mark holds the event's lease instead.
            event = db.session.get(OutboxEvent, event_id, with_for_update=True, populate_existing=True)
            if event is None:
                return {"event_id": event_id, "status": "missing"}
            if event.handled_at is not None:
                db.session.rollback()
                return {"event_id": event_id, "status": "already handled"}
            if release is not None:
                break  # read again after the lease we waited for: its holder marked it, or gave up
            release = _lease_event(event_id)
            if release is None and time.monotonic() > give_up_waiting_at:
                release = _no_lease  # it expired and was taken again meanwhile: go on without one
            if release is not None and not waited:
                break
            db.session.rollback()  # never wait holding the row: its holder needs it for the mark
            if release is None:
                waited = True
                time.sleep(_LEASE_POLL_SECONDS)
        return {"event_id": event_id, "status": "handled", "deliveries": _react_and_mark(event)}
    finally:
        if release is not None:
            release()


# How long an event's lease lasts if its holder dies without releasing it. Only work is
# saved by the lease, never correctness: past it a second job reacts (keyed rows) and sends
# (claimed once) as it would without one.
EVENT_LEASE_SECONDS = 30
_LEASE_POLL_SECONDS = 0.02


def _lease_event(event_id: int):
    """The event's lease (a release function), or None while another job holds it."""
    return take_lease(f"dc:event-lease:{event_id}", EVENT_LEASE_SECONDS)


def _no_lease() -> None:
    pass


def handle_ready_events_after(event_id: int, limit: int = MORE_EVENTS_PER_JOB,
                              budget_seconds: float = MORE_EVENTS_BUDGET_SECONDS) -> int:
    """Handle unhandled events with an id above `event_id`, oldest first, each claimed in its
    own transaction (PostgreSQL: FOR UPDATE SKIP LOCKED, so two workers never take the same
    one). An event whose reactions fail is rolled back and left to its own job, which retries
    it on the usual schedule; older events are left to theirs too. Returns how many it handled.
    """
    deadline = time.monotonic() + budget_seconds
    cursor, handled = event_id, 0
    skip_locked = db.engine.dialect.name == "postgresql"
    while handled < limit and time.monotonic() < deadline:
        event = db.session.scalars(
            select(OutboxEvent).where(OutboxEvent.handled_at.is_(None), OutboxEvent.id > cursor)
            .order_by(OutboxEvent.id).limit(1).with_for_update(skip_locked=skip_locked)).first()
        if event is None:
            db.session.rollback()
            break
        cursor = event.id
        try:
            release = _lease_event(cursor)
        except RedisError:  # the events left are their own jobs' (retried until Redis is back)
            db.session.rollback()
            log.warning("outbox: Redis failed while taking events along; left to their own jobs", exc_info=True)
            break
        if release is None:  # another job is handling it (between its first commit and its mark)
            db.session.rollback()
            continue
        try:
            _react_and_mark(event)
        except Exception:  # noqa: BLE001 - its own job retries it; this one goes on
            db.session.rollback()
            log.warning("outbox event %s failed while taken along by another event's job; left to its own "
                        "job", cursor, exc_info=True)
            continue
        finally:
            release()
        handled += 1
    return handled


def _react_and_mark(event: OutboxEvent) -> int:
    if event.type not in _reactions:
        log.warning("outbox event %s has unknown type %r; nothing to do", event.id, event.type)
    event_id = event.id
    deliveries = sum(react(event) for react in _reactions.get(event.type, ()))
    checkpoint.send("event:before_mark")  # reactions done (their rows flushed), the event not yet marked
    db.session.execute(update(OutboxEvent).where(OutboxEvent.id == event_id, OutboxEvent.handled_at.is_(None))
                       .values(handled_at=utcnow()))
    db.session.commit()
    return deliveries
