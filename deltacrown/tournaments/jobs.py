"""Tournament jobs (thin: each calls a service and returns its JSON result).

A ServiceError (unknown tournament, not completed, ...) is a permanent answer:
the job finishes with {status: "error", error: {...}} (domain_errors="result").
Anything else (database or network trouble) raises and is retried; every
service here is safe to rerun.
"""
from ..queue import QUEUE_DEFAULT, QUEUE_SCHEDULED, background_job
from . import rankings, wrapup


@background_job(queue=QUEUE_DEFAULT, domain_errors="result")
def wrap_up_tournament(tournament_id: int) -> dict:
    """Rankings, then payouts, then mark wrapped up, for one completed tournament."""
    return wrapup.wrap_up_tournament(tournament_id)


@background_job(queue=QUEUE_SCHEDULED, domain_errors="result")
def recompute_rankings(tournament_id: int | None = None) -> dict:
    """Recompute team points, wins, losses and ranks (all teams, or one tournament's)."""
    return rankings.recompute_team_rankings(tournament_id)


@background_job(queue=QUEUE_SCHEDULED)
def check_tournament_wrapup() -> dict:
    """Wrap up every completed tournament not wrapped up yet (the hourly safety net)."""
    return wrapup.check_tournament_wrapup()
