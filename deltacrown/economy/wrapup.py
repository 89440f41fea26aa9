"""Tournament wrap-up: after completion, update rankings, pay the winners, mark it done.

It lives with the payouts because it runs the tournaments part's rankings and then
the payouts: the part that uses both sits above both.

Completing a tournament (API) enqueues `wrap_up_tournament` at once; the hourly
`check_tournament_wrapup` is the safety net that wraps up any completed
tournament still not wrapped up (Redis was down, the job failed for good, ...).

Every step is safe to repeat, so the wrap-up is too: the ranking recompute
writes only rows whose values differ, the payout is guarded by its dedup key
(`already_distributed` on a rerun is fine), and `wrapped_up_at` is set with a
conditional UPDATE that only the first run changes. A run killed between steps
simply does the remaining steps again next time.
"""
from __future__ import annotations

from sqlalchemy import select, update

from ..errors import Conflict, NotFound, ServiceError
from ..extensions import db
from ..timeutil import utcnow
from ..tournaments.models import Tournament
from ..tournaments.rankings import announce_standings, recompute_team_rankings
from .payouts import distribute_tournament_payouts


def wrap_up_tournament(tournament_id: int) -> dict:
    """Rankings for this tournament's teams, then payouts, then mark it wrapped up.

    Returns {status: "wrapped_up" | "already_wrapped_up", tournament_id, rankings, payouts}.
    Raises NotFound for an unknown tournament, Conflict if it is not completed.
    """
    tournament = db.session.get(Tournament, tournament_id)
    if tournament is None:
        raise NotFound(f"tournament {tournament_id} does not exist")
    if tournament.status != "completed":
        raise Conflict(f"tournament {tournament_id} is not completed (status: {tournament.status})")
    if tournament.wrapped_up_at is not None:
        return {"status": "already_wrapped_up", "tournament_id": tournament_id,
                "wrapped_up_at": tournament.wrapped_up_at.isoformat()}
    db.session.rollback()  # end the read transaction; each step runs its own

    rankings = recompute_team_rankings(tournament_id)
    announce_standings(rankings)  # the tournament's standings card shows the final table
    payouts = distribute_tournament_payouts(tournament_id)

    now = utcnow()
    marked = db.session.execute(
        update(Tournament).where(Tournament.id == tournament_id, Tournament.wrapped_up_at.is_(None))
        .values(wrapped_up_at=now)
    ).rowcount
    db.session.commit()
    return {"status": "wrapped_up" if marked else "already_wrapped_up", "tournament_id": tournament_id,
            "rankings": rankings, "payouts": {"status": payouts["status"], "payouts": payouts["payouts"]}}


def pending_wrapup_ids() -> list[int]:
    """Completed tournaments not yet wrapped up, oldest first."""
    return list(db.session.scalars(
        select(Tournament.id).where(Tournament.status == "completed", Tournament.wrapped_up_at.is_(None))
        .order_by(Tournament.id)
    ))


def check_tournament_wrapup() -> dict:
    """Wrap up every completed tournament that is not wrapped up yet.

    One tournament that cannot be wrapped up (e.g. completed without placements)
    is reported in `failed` and does not stop the others. Returns
    {status: "ok", checked, wrapped_up: [ids], failed: [{tournament_id, error}]}.
    """
    ids = pending_wrapup_ids()
    db.session.rollback()
    wrapped, failed = [], []
    for tournament_id in ids:
        try:
            result = wrap_up_tournament(tournament_id)
        except ServiceError as exc:
            db.session.rollback()
            failed.append({"tournament_id": tournament_id, "error": exc.message})
            continue
        if result["status"] == "wrapped_up":
            wrapped.append(tournament_id)
    return {"status": "ok", "checked": len(ids), "wrapped_up": wrapped, "failed": failed}
