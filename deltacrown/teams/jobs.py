"""Team jobs (thin: each calls a service in teams/lifecycle.py). Paths fixed by ops/schedule.py."""
from ..queue import QUEUE_SCHEDULED, background_job
from . import lifecycle


@background_job(queue=QUEUE_SCHEDULED)
def clean_expired_invites() -> dict:
    return lifecycle.clean_expired_invites()


@background_job(queue=QUEUE_SCHEDULED)
def expire_sponsors() -> dict:
    return lifecycle.expire_sponsors()


@background_job(queue=QUEUE_SCHEDULED)
def process_promotions() -> dict:
    return lifecycle.process_scheduled_promotions()
