"""The tournament page (/tournaments/<id>): status, registered teams, standings, matches
(times in the viewer's zone, each with its `match-<id>` anchor that match notifications
link to), placements and the coins each placed team was paid (or held for approval). Read-only."""
from __future__ import annotations

from flask import abort, render_template
from flask_login import current_user

from ..dbutil import get_row
from ..economy.payouts import held_payouts, tournament_payouts
from ..notifications.preferences import user_zone
from ..notifications.views import page_login_required
from ..tournaments.models import Tournament
from ..tournaments.rankings import tournament_standings
from . import bp

STATUS_LABELS = {"registration": "Registration open", "ongoing": "In progress", "completed": "Completed"}


@bp.get("/tournaments/<int:tournament_id>")
@page_login_required
def tournament(tournament_id: int):
    tournament = get_row(Tournament, tournament_id)
    if tournament is None:
        abort(404)
    matches = sorted(tournament.matches, key=lambda m: (m.scheduled_at, m.id))
    return render_template(
        "pages/tournament.html", tournament=tournament, status_label=STATUS_LABELS.get(tournament.status,
                                                                                      tournament.status),
        registrations=tournament.registrations, standings=tournament_standings(tournament), matches=matches,
        placements=tournament.placements, payouts=tournament_payouts(tournament.id), held=held_payouts(tournament.id),
        zone=user_zone(current_user))
