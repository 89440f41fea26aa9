"""Economy jobs (thin: each calls a service and returns its JSON result)."""
from ..queue import QUEUE_DEFAULT, QUEUE_SCHEDULED, background_job
from . import wrapup
from .payouts import distribute_tournament_payouts


@background_job(queue=QUEUE_DEFAULT, domain_errors="result")
def distribute_payouts(tournament_id: int) -> dict:
    """Pay a completed tournament's placed teams, exactly once (see economy/payouts.py); a payout
    at or above PAYOUT_APPROVAL_THRESHOLD is held for a second admin, never paid here.

    Unknown / not completed / no placements finish with {status: "error", error: {...}};
    other errors are retried: the payout is safe to rerun.
    """
    return distribute_tournament_payouts(tournament_id)


@background_job(queue=QUEUE_DEFAULT, domain_errors="result")
def wrap_up_tournament(tournament_id: int) -> dict:
    """Rankings, then payouts, then mark wrapped up, for one completed tournament."""
    return wrapup.wrap_up_tournament(tournament_id)


@background_job(queue=QUEUE_SCHEDULED)
def check_tournament_wrapup() -> dict:
    """Wrap up every completed tournament not wrapped up yet (the hourly safety net)."""
    return wrapup.check_tournament_wrapup()
