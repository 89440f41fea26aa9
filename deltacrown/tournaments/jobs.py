"""Tournament jobs (thin: each calls a service and returns its JSON result).

A ServiceError (unknown tournament, not completed, ...) is a permanent answer:
the job finishes with {status: "error", error: {...}} (domain_errors="result").
Anything else (database or network trouble) raises and is retried; every
service here is safe to rerun.
"""
from ..queue import QUEUE_SCHEDULED, background_job
from . import rankings


@background_job(queue=QUEUE_SCHEDULED, domain_errors="result")
def recompute_rankings(tournament_id: int | None = None) -> dict:
    """Recompute team points, wins, losses and ranks (all teams, or one tournament's)."""
    result = rankings.recompute_team_rankings(tournament_id)
    rankings.announce_standings(result)  # the standings cards follow (reactions)
    return result
