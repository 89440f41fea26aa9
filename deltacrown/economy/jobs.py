"""Economy jobs (thin: each calls a service and returns its JSON result).

A ServiceError (unknown tournament, not completed, no placements) is a permanent
answer, not a transient fault: the job finishes with {status: "error", error: {...}}
instead of failing, so RQ does not retry it. Anything else (database or network
trouble) raises and is retried; every service here is safe to rerun.
"""
from ..errors import ServiceError
from ..queue import QUEUE_DEFAULT, QUEUE_SCHEDULED, background_job
from ..tournaments.jobs import error_result
from . import wrapup
from .payouts import distribute_tournament_payouts


@background_job(queue=QUEUE_DEFAULT)
def distribute_payouts(tournament_id: int) -> dict:
    """Pay a completed tournament's placed teams, exactly once (see economy/payouts.py)."""
    try:
        return distribute_tournament_payouts(tournament_id)
    except ServiceError as exc:
        return error_result(exc)


@background_job(queue=QUEUE_DEFAULT)
def wrap_up_tournament(tournament_id: int) -> dict:
    """Rankings, then payouts, then mark wrapped up, for one completed tournament."""
    try:
        return wrapup.wrap_up_tournament(tournament_id)
    except ServiceError as exc:
        return error_result(exc)


@background_job(queue=QUEUE_SCHEDULED)
def check_tournament_wrapup() -> dict:
    """Wrap up every completed tournament not wrapped up yet (the hourly safety net)."""
    return wrapup.check_tournament_wrapup()
