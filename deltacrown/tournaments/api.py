"""API: tournaments, registrations, the bracket, matches, results, completion, and awarding a
team an achievement (for a tournament or none)."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from ..api import Blueprint, api_user, id_links, link
from ..apischemas import ID, IdField, Out, Text, When
from ..dbutil import get_or_404
from ..teams.models import Team
from . import services
from .models import Match, Tournament

bp = Blueprint("tournaments_api", __name__, description="Tournaments, registrations, matches, placements, achievements")

MAX_SCORE = 1_000_000


class TournamentSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    status = fields.String()
    starts_at = Out()
    created_at = Out()
    completed_at = Out(allow_none=True)
    wrapped_up_at = Out(allow_none=True)


class RegistrationSchema(Schema):
    id = fields.Integer()
    tournament_id = fields.Integer()
    team_id = fields.Integer()
    team_name = fields.Function(lambda r: r.team.name)
    created_at = Out()


class MatchSchema(Schema):
    id = fields.Integer()
    tournament_id = fields.Integer()
    team_a_id = fields.Integer()
    team_b_id = fields.Integer()
    scheduled_at = Out()
    status = fields.String()
    score_a = fields.Integer(allow_none=True)
    score_b = fields.Integer(allow_none=True)
    winner_id = fields.Integer(allow_none=True)
    completed_at = Out(allow_none=True)


class PlacementSchema(Schema):
    place = fields.Integer()
    team_id = fields.Integer()


class TournamentDetailSchema(TournamentSchema):
    registrations = fields.List(fields.Nested(RegistrationSchema))
    matches = fields.List(fields.Nested(MatchSchema))
    placements = fields.List(fields.Nested(PlacementSchema))


class TournamentCreateSchema(Schema):
    name = Text(200, blank=False, required=True)
    starts_at = When(required=True)


class RegistrationCreateSchema(Schema):
    team_id = IdField(required=True)


class MatchCreateSchema(Schema):
    team_a_id = IdField(required=True)
    team_b_id = IdField(required=True, metadata={"description": "another team than team_a_id"})
    scheduled_at = When(required=True)


class RescheduleSchema(Schema):
    scheduled_at = When(required=True, metadata={"description": "the match's new time; the same time is a no-op"})


class ResultSchema(Schema):
    score_a = fields.Integer(strict=True, required=True, validate=validate.Range(min=0, max=MAX_SCORE))
    score_b = fields.Integer(strict=True, required=True, validate=validate.Range(min=0, max=MAX_SCORE))


class CompleteSchema(Schema):
    placements = fields.List(IdField(), required=True, validate=validate.Length(min=1, max=services.MAX_PLACES),
                             metadata={"description": "team ids: 1st, 2nd, 3rd (1 to 3 distinct registered teams)"})


class AchievementCreateSchema(Schema):
    kind = Text(64, blank=False, required=True)
    tournament_id = IdField(allow_none=True, load_default=None)


class AchievementSchema(Schema):
    id = fields.Integer()
    team_id = fields.Integer()
    kind = fields.String()
    tournament_id = fields.Integer(allow_none=True)
    earned_at = Out()


def _tournament(tournament_id: int) -> Tournament:
    return get_or_404(Tournament, tournament_id, "Tournament")


@bp.operation("POST", "/tournaments", body=TournamentCreateSchema, status=201, response=TournamentSchema, admin=True,
              links=id_links("tournament_id", get_tournament="GET /tournaments/{tournament_id}",
                             register="POST /tournaments/{tournament_id}/registrations",
                             schedule_match="POST /tournaments/{tournament_id}/matches",
                             bracket_ready="POST /tournaments/{tournament_id}/bracket-ready",
                             complete="POST /tournaments/{tournament_id}/complete")
              | {"mute": link("POST /mutes", "Mute the new tournament's notifications",
                              body={"tournament_id": "id"})})
def create(data):
    """Create a tournament (admin), open for registration."""
    return services.create_tournament(data["name"], data["starts_at"])


@bp.operation("GET", f"/tournaments/<{ID}:tournament_id>", response=TournamentDetailSchema)
def get_tournament(tournament_id):
    """A tournament with its registrations, matches and placements."""
    return _tournament(tournament_id)


@bp.operation("POST", f"/tournaments/<{ID}:tournament_id>/registrations",
              body=RegistrationCreateSchema, status=201, response=RegistrationSchema)
def register(data, tournament_id):
    """Register a team (its captain, or an admin)."""
    return services.register_team(api_user(), _tournament(tournament_id), data["team_id"])


@bp.operation("POST", f"/tournaments/<{ID}:tournament_id>/bracket-ready", response=TournamentDetailSchema, admin=True)
def bracket_ready(tournament_id):
    """Close registration and start the tournament (admin)."""
    return services.mark_bracket_ready(_tournament(tournament_id))


@bp.operation("POST", f"/tournaments/<{ID}:tournament_id>/matches",
              body=MatchCreateSchema, status=201, response=MatchSchema, admin=True,
              links=id_links("match_id", post_result="POST /matches/{match_id}/result",
                             reschedule="PATCH /matches/{match_id}"))
def schedule_match(data, tournament_id):
    """Schedule a match between two registered teams (admin)."""
    return services.schedule_match(_tournament(tournament_id), data["team_a_id"], data["team_b_id"],
                                   data["scheduled_at"])


@bp.operation("POST", f"/matches/<{ID}:match_id>/result", body=ResultSchema, response=MatchSchema, admin=True)
def post_result(data, match_id):
    """Record a match's final score (admin); winner_id is null on a draw."""
    return services.record_result(get_or_404(Match, match_id, "Match"), data["score_a"], data["score_b"])


@bp.operation("PATCH", f"/matches/<{ID}:match_id>", body=RescheduleSchema, response=MatchSchema, admin=True)
def reschedule_match(data, match_id):
    """Move a match that has not been played (admin): its teams' match notification shows the
    new time (unread again), their Discord card is edited, the reminder moves; 409 when the
    match is completed; the same time again changes nothing."""
    return services.reschedule_match(get_or_404(Match, match_id, "Match"), data["scheduled_at"])


@bp.operation("POST", f"/tournaments/<{ID}:tournament_id>/complete",
              body=CompleteSchema, response=TournamentDetailSchema, admin=True)
def complete(data, tournament_id):
    """Complete the tournament with its podium (admin); rankings and payouts run on the queue."""
    return services.complete_tournament(_tournament(tournament_id), data["placements"], actor=api_user())


@bp.operation("POST", f"/teams/<{ID}:team_id>/achievements",
              body=AchievementCreateSchema, status=201, response=AchievementSchema, admin=True)
def award_achievement(data, team_id):
    """Award an achievement (admin)."""
    return services.award_achievement(get_or_404(Team, team_id, "Team"), data["kind"], data.get("tournament_id"))
