"""Tournament jobs (thin: each calls a service and returns its JSON result).

A ServiceError (unknown tournament, not completed, ...) is a permanent answer,
not a transient fault: the job finishes with {status: "error", error: {...}}
instead of failing, so RQ does not retry it five times. Anything else (database
or network trouble) raises and is retried; every service here is safe to rerun.
"""
from ..errors import ServiceError
from ..queue import QUEUE_SCHEDULED, background_job
from . import rankings


def error_result(exc: ServiceError) -> dict:
    return {"status": "error", **exc.to_dict()}


@background_job(queue=QUEUE_SCHEDULED)
def recompute_rankings(tournament_id: int | None = None) -> dict:
    """Recompute team points, wins, losses and ranks (all teams, or one tournament's)."""
    try:
        return rankings.recompute_team_rankings(tournament_id)
    except ServiceError as exc:
        return error_result(exc)
