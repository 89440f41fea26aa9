"""Channel jobs (thin: each calls a service)."""
from ..queue import QUEUE_NOTIFICATIONS, background_job


@background_job(queue=QUEUE_NOTIFICATIONS)
def send_delivery(delivery_id: int) -> dict:
    """Send one Delivery row over its channel (idempotent: a sent delivery is never resent)."""
    raise NotImplementedError("built by the channels part (issue 4)")
