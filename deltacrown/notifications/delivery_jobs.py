"""The send jobs of deliveries (thin: each calls notifications.deliveries).

`send_deliveries` makes the first try of a batch; a send that fails temporarily
continues as its own `send_delivery` job on DELIVERY_RETRY_INTERVALS. `first_tries`
is that first try, also made by an outbox event's own job for its few sends
(notifications.service.send_pending_of_event) and by a user's held job.

`gather_sends` hands the few sends of an event handled while other event jobs wait to the
one queued `send_ready_deliveries` job (`dc:sends:ready`, a Redis list of delivery ids),
instead of a send job per event.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app
from rq import get_current_job
from rq.job import Retry

from ..queue import QUEUE_SENDS, background_job, get_queue, get_redis
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
# list and one send_ready_deliveries job at a time takes what is there.
READY_SENDS = "dc:sends:ready"  # ids of due first sends waiting for a send_ready_deliveries job
# Set when a job is queued for the list; the job deletes it as it takes the ids. It lapses on its
# own, so a job lost between the mark and its enqueue (a crash, Redis refusing) holds up later
# gathers for this long at most; a job queued behind a longer backlog only gets a second one.
READY_SENDS_JOB = "dc:sends:ready-job"
READY_SENDS_JOB_SECONDS = 30
READY_SENDS_PER_JOB = 500
# The ids a job took, under its own id until it has tried them: its retry (after a failure or a
# SIGKILL) tries those again. Lost with Redis's data, they are sends never tried, which the
# minute sweep enqueues again (service.sweep_lost_sends), as it does for the list itself.
TAKEN_SENDS = "dc:sends:taken:{job_id}"
TAKEN_SENDS_SECONDS = 24 * 3600

# Delete the mark and move up to ARGV[1] ids from the list to the job's own key in one step (a
# retry finds its earlier take there and takes nothing new); returns the ids and how many are left.
_TAKE_READY_SENDS = """
local taken = redis.call('LRANGE', KEYS[3], 0, -1)
if #taken == 0 then
    redis.call('DEL', KEYS[2])
    taken = redis.call('LPOP', KEYS[1], ARGV[1]) or {}
    if #taken > 0 then
        redis.call('RPUSH', KEYS[3], unpack(taken))
        redis.call('EXPIRE', KEYS[3], ARGV[2])
    end
end
return {taken, redis.call('LLEN', KEYS[1])}
"""


def gather_sends(delivery_ids) -> None:
    """Put these due first sends on the ready list, and queue a send_ready_deliveries job unless
    one is queued and has not started (it will take them). Raises if Redis does: the caller (an
    event's job, before its handled mark) is retried and gathers them again."""
    ids = [int(i) for i in delivery_ids]
    if not ids:
        return
    redis = get_redis()
    with redis.pipeline() as pipe:  # MULTI/EXEC: the ids and the mark together
        pipe.rpush(READY_SENDS, *ids)
        pipe.set(READY_SENDS_JOB, "1", nx=True, ex=READY_SENDS_JOB_SECONDS)
        _, first = pipe.execute()
    if first:
        _enqueue_ready_job(redis)


def _enqueue_ready_job(redis) -> None:
    """Queue the job the mark just set announces; without it, no mark (the next gather queues one)."""
    try:
        send_ready_deliveries.enqueue()
    except Exception:
        redis.delete(READY_SENDS_JOB)  # (best effort: else it lapses)
        raise


def take_ready_sends(job_id: str) -> tuple[list[int], int]:
    """The ids this job takes from the ready list (at most READY_SENDS_PER_JOB; the ones an
    earlier run of the same job took, if any), and how many are left on the list. The mark goes
    in the same step: an id pushed after it queues a new job, one pushed before is taken here."""
    ids, left = get_redis().eval(_TAKE_READY_SENDS, 3, READY_SENDS, READY_SENDS_JOB,
                                 TAKEN_SENDS.format(job_id=job_id), READY_SENDS_PER_JOB, TAKEN_SENDS_SECONDS)
    return [int(i) for i in ids], int(left)


@background_job(queue=QUEUE_SENDS, timeout=SEND_BATCH_TIMEOUT)
def send_ready_deliveries() -> dict:
    """The first try of the sends on the ready list (`gather_sends`), up to READY_SENDS_PER_JOB.

    The ids it takes are kept under its job id until tried: a retry of this job (it failed, or
    its worker was SIGKILLed) tries those again, not the list's newer ones (sent ones are skipped:
    a sent delivery is never resent). With more left on the list, a job for them is queued."""
    job_id = get_current_job().id
    ids, left = take_ready_sends(job_id)
    redis = get_redis()
    if left:
        try:
            if redis.set(READY_SENDS_JOB, "1", nx=True, ex=READY_SENDS_JOB_SECONDS):
                _enqueue_ready_job(redis)
        except Exception:  # noqa: BLE001 - the next gather queues one; these sends go on
            log.warning("could not queue a job for the %s sends left on the ready list", left, exc_info=True)
    counts = first_tries(ids)
    redis.delete(TAKEN_SENDS.format(job_id=job_id))
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
