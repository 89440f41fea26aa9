"""Tournaments: creation, registration, the bracket, matches, results, completion, and team
achievements (which may name a tournament).

State machine: registration -> ongoing (bracket ready) -> completed. Each change
commits with its outbox event; completing a tournament emits
`tournament_completed`, whose handler enqueues the wrap-up job (rankings and
payouts), so the request does not wait for it.
"""
from __future__ import annotations

from sqlalchemy import select

from ..dbutil import commit, flush, get_or_404, transition
from ..errors import Conflict, Forbidden, InvalidInput
from ..extensions import db
from ..outbox.services import emit
from ..teams.models import Team, TeamAchievement
from ..teams.services import is_captain
from ..timeutil import utcnow
from .models import Match, Placement, Registration, Tournament
from .reminders import cancel_reminders, plan_reminder

MAX_PLACES = 3


def create_tournament(name: str, starts_at) -> Tournament:
    name = (name or "").strip()
    if not name:
        raise InvalidInput("name: must not be blank", fields={"name": "must not be blank"})
    tournament = Tournament(name=name, status="registration", starts_at=starts_at, created_at=utcnow())
    db.session.add(tournament)
    commit()
    return tournament


def registered_team_ids(tournament_id: int) -> set[int]:
    return set(db.session.scalars(select(Registration.team_id).where(Registration.tournament_id == tournament_id)))


def register_team(actor, tournament: Tournament, team_id: int) -> Registration:
    team = get_or_404(Team, team_id, "Team", field="team_id")
    if not (actor.is_admin or is_captain(actor, team)):
        raise Forbidden("Only the team's captain or an admin may register it.")
    if tournament.status != "registration":
        raise Conflict(f"Registration is closed: the tournament is {tournament.status}.")
    if team.id in registered_team_ids(tournament.id):
        raise Conflict(f"{team.name} is already registered for {tournament.name}.",
                       fields={"team_id": "already registered"})
    registration = Registration(tournament_id=tournament.id, team_id=team.id, created_at=utcnow())
    db.session.add(registration)
    flush()
    emit("tournament_registered", registration_id=registration.id)
    commit()
    return registration


def mark_bracket_ready(tournament: Tournament) -> Tournament:
    if tournament.status != "registration":
        raise Conflict(f"The bracket can only be set during registration; the tournament is {tournament.status}.")
    if len(registered_team_ids(tournament.id)) < 2:
        raise Conflict("A bracket needs at least two registered teams.")
    transition(tournament, "registration", "The bracket was set meanwhile.", status="ongoing")
    emit("bracket_ready", tournament_id=tournament.id)
    commit()
    return tournament


def schedule_match(tournament: Tournament, team_a_id: int, team_b_id: int, scheduled_at) -> Match:
    if team_a_id == team_b_id:
        raise InvalidInput("team_b_id: a team cannot play itself", fields={"team_b_id": "must differ from team_a_id"})
    team_a = get_or_404(Team, team_a_id, "Team", field="team_a_id")
    team_b = get_or_404(Team, team_b_id, "Team", field="team_b_id")
    if tournament.status == "completed":
        raise Conflict("The tournament is completed; no more matches.")
    registered = registered_team_ids(tournament.id)
    missing = {f: f"{t.name} is not registered" for f, t in (("team_a_id", team_a), ("team_b_id", team_b))
               if t.id not in registered}
    if missing:
        raise Conflict("Both teams must be registered for the tournament.", fields=missing)
    match = Match(tournament_id=tournament.id, team_a_id=team_a.id, team_b_id=team_b.id,
                  scheduled_at=scheduled_at, status="scheduled")
    db.session.add(match)
    flush()
    plan_reminder(match)
    emit("match_scheduled", match_id=match.id)
    commit()
    return match


def reschedule_match(match: Match, scheduled_at) -> Match:
    """Move a match that has not been played: its reminder moves with it (same transaction),
    and `match_rescheduled` tells its teams. The same time again changes nothing."""
    if match.status == "completed":
        raise Conflict("This match already has a result; it can no longer be rescheduled.")
    if match.tournament.status == "completed":
        raise Conflict("The tournament is completed; its matches can no longer move.")
    if match.scheduled_at == scheduled_at:
        return match
    previous = match.scheduled_at
    transition(match, "scheduled", "This match got a result meanwhile.", scheduled_at=scheduled_at)
    plan_reminder(match)
    emit("match_rescheduled", match_id=match.id, previous_at=previous.isoformat(),
         scheduled_at=scheduled_at.isoformat())
    commit()
    return match


def record_result(match: Match, score_a: int, score_b: int) -> Match:
    if match.status == "completed":
        raise Conflict("This match already has a result.")
    if match.tournament.status == "completed":
        raise Conflict("The tournament is completed; results can no longer change.")
    winner_id = match.team_a_id if score_a > score_b else match.team_b_id if score_b > score_a else None
    transition(match, "scheduled", "This match got a result meanwhile.", score_a=score_a, score_b=score_b,
               winner_id=winner_id, status="completed", completed_at=utcnow())
    cancel_reminders(match_id=match.id)
    emit("match_result", match_id=match.id)
    commit()
    return match


def complete_tournament(tournament: Tournament, placements: list[int], actor=None) -> Tournament:
    """Close the tournament with its podium (team ids, 1st first); wrap-up runs on the queue.
    `actor`: the admin completing it, recorded as `completed_by_id` (the four-eyes rule of
    held payouts keeps that admin from approving them)."""
    if not 1 <= len(placements) <= MAX_PLACES:
        raise InvalidInput("placements: give 1 to 3 team ids, first place first",
                           fields={"placements": "1 to 3 team ids"})
    if tournament.status == "completed":
        raise Conflict("The tournament is already completed.")
    if tournament.status != "ongoing":
        raise Conflict("The tournament has not started: mark its bracket ready first.")
    if len(set(placements)) != len(placements):
        raise Conflict("A team can take only one place.", fields={"placements": "repeated team"})
    unregistered = [t for t in placements if t not in registered_team_ids(tournament.id)]
    if unregistered:
        raise Conflict(f"Not registered for this tournament: {unregistered}",
                       fields={"placements": f"teams not registered: {unregistered}"})
    transition(tournament, "ongoing", "The tournament was completed meanwhile.", status="completed",
               completed_at=utcnow(), completed_by_id=actor.id if actor is not None else None)
    for place, team_id in enumerate(placements, start=1):
        db.session.add(Placement(tournament_id=tournament.id, team_id=team_id, place=place))
    cancel_reminders(tournament_id=tournament.id)
    emit("tournament_completed", tournament_id=tournament.id)
    commit()
    return tournament


def award_achievement(team: Team, kind: str, tournament_id: int | None = None) -> TeamAchievement:
    """Award `team` the achievement `kind`, for a tournament or none; each (team, kind,
    tournament) once."""
    kind = (kind or "").strip()
    if not kind:
        raise InvalidInput("kind: must not be blank", fields={"kind": "must not be blank"})
    if tournament_id is not None:
        get_or_404(Tournament, tournament_id, "Tournament", field="tournament_id")
    # The unique constraint does not cover tournament_id NULL (NULLs are distinct), so check too.
    if db.session.scalar(select(TeamAchievement.id).where(
            TeamAchievement.team_id == team.id, TeamAchievement.kind == kind,
            TeamAchievement.tournament_id.is_(None) if tournament_id is None
            else TeamAchievement.tournament_id == tournament_id)):
        raise Conflict(f"{team.name} already has the achievement {kind!r}" +
                       (f" for tournament {tournament_id}." if tournament_id else "."))
    achievement = TeamAchievement(team_id=team.id, kind=kind, tournament_id=tournament_id, earned_at=utcnow())
    db.session.add(achievement)
    flush()
    emit("achievement_earned", achievement_id=achievement.id)
    commit()
    return achievement
