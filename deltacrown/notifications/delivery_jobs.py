"""The send jobs of deliveries (thin: each calls notifications.deliveries).

`send_deliveries` makes the first try of a batch; a send that fails temporarily
continues as its own `send_delivery` job on DELIVERY_RETRY_INTERVALS. `first_tries`
is that first try, also made by an outbox event's own job for its few sends
(notifications.service.send_pending_of_event) and by a user's held job.

`gather_sends` hands the few sends of an event handled while other events wait behind it to
the one queued `send_ready_deliveries` job (`dc:sends:ready`, a Redis list of delivery ids,
queue.ReadyList), instead of a send job per event.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app
from rq import get_current_job
from rq.job import Retry

from ..queue import QUEUE_SENDS, ReadyList, background_job, get_queue
from ..signals import checkpoint
from . import deliveries, held

log = logging.getLogger(__name__)

SEND_DELIVERY_TIMEOUT = 180  # rate-limit waits plus a few 5 s posts; below the delivery lease
# A batch stops taking new sends after this long and hands the rest to a new batch job, so it
# stays well inside its own timeout even when every post waits on Discord's rate limit.
SEND_BATCH_TIMEOUT = 30 * 60
SEND_BATCH_BUDGET_SECONDS = 10 * 60


@background_job(queue=QUEUE_SENDS, timeout=SEND_DELIVERY_TIMEOUT, retry_intervals=None)
def send_delivery(delivery_id: int) -> dict:
    """Send one Delivery row over its channel (idempotent: a sent delivery is never resent)."""
    job = get_current_job()
    # RQ stores "no retries left" as None; outside RQ (CLI) there is no retry either.
    final_attempt = job is None or not job.retries_left
    return deliveries.send_delivery(delivery_id, final_attempt=final_attempt)


@background_job(queue=QUEUE_SENDS, timeout=SEND_BATCH_TIMEOUT)
def send_deliveries(delivery_ids: list[int]) -> dict:
    """Send a batch of deliveries, each once: the first try of every send the pipeline makes.

    One job per batch instead of one per delivery: enqueueing was most of an announcement's
    time. A send that fails temporarily continues as its own `send_delivery` job, retried on
    DELIVERY_RETRY_INTERVALS. Any other error fails this job, and RQ's retry re-runs the
    batch: sends already made are skipped (a sent delivery is never resent).
    """
    return first_tries(delivery_ids)


@background_job(queue=QUEUE_SENDS, timeout=SEND_BATCH_TIMEOUT)
def send_held(user_id: int, epoch: int) -> dict:
    """Send a user's held deliveries whose time has come (quiet hours ended, email delay over),
    in one go, oldest first. Scheduled at `epoch` under the id held-<user_id>-<epoch> (held.py);
    safe to run again: a sent delivery is never resent."""
    ids = held.due_held_ids(user_id)
    checkpoint.send("held:before_send")  # the due held sends are read, none sent yet
    return {"user_id": user_id, "epoch": epoch, "due": len(ids), **first_tries(ids)}


# Under load an event's few sends waited for a send job of their own, and a job's RQ work cost
# more than its one email: half of the jobs in the load test, and most of what was left when
# the load stopped (bench/FINDINGS.md, round 16). So they are gathered: their ids go on one
# list and one send_ready_deliveries job at a time takes what is there (queue.ReadyList). Ids
# lost with Redis's data are sends never tried, which the minute sweep enqueues again
# (service.sweep_lost_sends).
READY_SENDS = ReadyList("dc:sends", per_job=500)


def gather_sends(delivery_ids) -> None:
    """Put these due first sends on the ready list, and queue a send_ready_deliveries job unless
    one is queued and has not started (it will take them). Raises if Redis does: the caller (an
    event's job, before its handled mark) is retried and gathers them again."""
    READY_SENDS.gather(delivery_ids, send_ready_deliveries.enqueue)


def queue_ready_sends_job_if_lost() -> bool:
    """For the minute sweep: queue a send_ready_deliveries job if sends wait on the list with no
    job that will take them (the gathering process died between the mark and the enqueue)."""
    return READY_SENDS.queue_job_if_lost(send_ready_deliveries.enqueue)


@background_job(queue=QUEUE_SENDS, timeout=SEND_BATCH_TIMEOUT)
def send_ready_deliveries() -> dict:
    """The first try of the sends on the ready list (`gather_sends`), up to its per_job.

    The ids it takes are kept under its job id until tried: a retry of this job (it failed, or
    its worker was SIGKILLed) tries those again, not the list's newer ones (sent ones are skipped:
    a sent delivery is never resent). With more left on the list, a job for them is queued."""
    job_id = get_current_job().id
    ids = READY_SENDS.take(job_id, send_ready_deliveries.enqueue)
    counts = first_tries(ids)
    READY_SENDS.done(job_id)
    return {"taken": len(ids), **counts}


def first_tries(delivery_ids, budget_seconds: float = SEND_BATCH_BUDGET_SECONDS) -> dict:
    """The first try of each of these sends, here and now; counts by outcome (deliveries.send_batch).
    A temporary failure continues as its own send_delivery job on DELIVERY_RETRY_INTERVALS
    (without intervals this try was the only one); past `budget_seconds` the rest goes to a
    new send_deliveries job."""
    retries = bool(current_app.config["DELIVERY_RETRY_INTERVALS"])
    return deliveries.send_batch(delivery_ids, retry_later=retry_send_later if retries else None,
                                 budget_seconds=budget_seconds, continue_later=send_deliveries.enqueue)


def _send_delivery_options(intervals) -> dict:
    """A send_delivery job's timeout, TTLs and retries (one per remaining interval)."""
    cfg = current_app.config
    return dict(job_timeout=SEND_DELIVERY_TIMEOUT, result_ttl=cfg["RQ_RESULT_TTL"], failure_ttl=cfg["RQ_FAILURE_TTL"],
                retry=Retry(max=len(intervals), interval=list(intervals)) if intervals else None)


def _enqueue_send_delivery(delivery_id: int, job_id: str | None = None, meta: dict | None = None):
    """Like every job's `.enqueue`, with the retry intervals from DELIVERY_RETRY_INTERVALS."""
    return get_queue(QUEUE_SENDS).enqueue(
        send_delivery, delivery_id, job_id=job_id, meta=meta,
        **_send_delivery_options(current_app.config["DELIVERY_RETRY_INTERVALS"]))


def retry_send_later(delivery_id: int):
    """A batch's send failed temporarily: its own send_delivery job, after the first retry
    interval, with the remaining intervals as its retries (the same schedule as a lone send)."""
    first, *rest = current_app.config["DELIVERY_RETRY_INTERVALS"]
    options = _send_delivery_options(rest)
    queue = get_queue(QUEUE_SENDS)
    if first <= 0:  # like RQ's own retry: no wait means straight onto the queue
        return queue.enqueue(send_delivery, delivery_id, **options)
    return queue.enqueue_in(timedelta(seconds=first), send_delivery, delivery_id, **options)


send_delivery.enqueue = _enqueue_send_delivery
