"""Economy jobs (thin: each calls a service and returns its JSON result)."""
from ..errors import ServiceError
from ..queue import QUEUE_DEFAULT, background_job
from .payouts import distribute_tournament_payouts


@background_job(queue=QUEUE_DEFAULT)
def distribute_payouts(tournament_id: int) -> dict:
    """Pay a completed tournament's placed teams, exactly once (see economy/payouts.py).

    A ServiceError (unknown / not completed / no placements) is a permanent
    answer: the job finishes with {status: "error", error: {...}} rather than
    being retried. Other errors raise and are retried; the payout is safe to rerun.
    """
    try:
        return distribute_tournament_payouts(tournament_id)
    except ServiceError as exc:
        return {"status": "error", **exc.to_dict()}
