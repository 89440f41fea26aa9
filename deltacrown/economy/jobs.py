"""Economy jobs (thin: each calls a service and returns its JSON result)."""
from ..queue import QUEUE_DEFAULT, background_job
from .payouts import distribute_tournament_payouts


@background_job(queue=QUEUE_DEFAULT, domain_errors="result")
def distribute_payouts(tournament_id: int) -> dict:
    """Pay a completed tournament's placed teams, exactly once (see economy/payouts.py).

    Unknown / not completed / no placements finish with {status: "error", error: {...}};
    other errors are retried: the payout is safe to rerun.
    """
    return distribute_tournament_payouts(tournament_id)
