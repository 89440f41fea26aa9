"""Channel jobs (thin: each calls a service)."""
from flask import current_app
from rq import get_current_job
from rq.job import Retry

from ..queue import QUEUE_NOTIFICATIONS, background_job, get_queue

SEND_DELIVERY_TIMEOUT = 180  # rate-limit waits plus a few 5 s posts; below the delivery lease


@background_job(queue=QUEUE_NOTIFICATIONS, timeout=SEND_DELIVERY_TIMEOUT, retry_intervals=None)
def send_delivery(delivery_id: int) -> dict:
    """Send one Delivery row over its channel (idempotent: a sent delivery is never resent)."""
    from .delivery import send_delivery as send

    job = get_current_job()
    # RQ stores "no retries left" as None; outside RQ (CLI) there is no retry either.
    final_attempt = job is None or not job.retries_left
    return send(delivery_id, final_attempt=final_attempt)


def _enqueue_send_delivery(delivery_id: int, job_id: str | None = None, meta: dict | None = None):
    """Like every job's `.enqueue`, with the retry intervals from DELIVERY_RETRY_INTERVALS."""
    cfg = current_app.config
    intervals = list(cfg["DELIVERY_RETRY_INTERVALS"])
    return get_queue(QUEUE_NOTIFICATIONS).enqueue_call(
        send_delivery, args=(delivery_id,), timeout=SEND_DELIVERY_TIMEOUT,
        result_ttl=cfg["RQ_RESULT_TTL"], failure_ttl=cfg["RQ_FAILURE_TTL"],
        retry=Retry(max=len(intervals), interval=intervals) if intervals else None,
        job_id=job_id, meta=meta)


send_delivery.enqueue = _enqueue_send_delivery
