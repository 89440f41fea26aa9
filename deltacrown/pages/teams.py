"""Team pages: a team (/teams/<id>), an invite (/invites/<id>), the player's teams (/me/teams).

Pages need a login (like the notification center). Every change goes through the
services in teams/services.py, which check who may do it and emit the outbox events
that notify the captain and members. Each form works twice: a plain POST that
redirects back with a status message, and an htmx request that gets only the changed
part back. A refused change writes nothing and says why: the page again with its 4xx
status, or for htmx the part with the message (422, which htmx swaps in).
"""
from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from sqlalchemy import or_, select

from ..accounts.models import User
from ..accounts.services import find_user
from ..dbutil import get_row
from ..errors import InvalidInput, NotFound, ServiceError
from ..extensions import db
from ..notifications.preferences import user_zone
from ..notifications.settings_views import limit_webhook_tests, try_webhook, webhook_test_refusal
from ..notifications.views import htmx, page_login_required, refuse_without_csrf
from ..teams import services as team_services
from ..teams.models import Team, TeamAchievement, TeamInvite, TeamMembership, TeamPromotion, TeamSponsor
from ..timeutil import utcnow
from ..tournaments.models import Match, Tournament
from . import bp

bp.register_error_handler(CSRFError, refuse_without_csrf)

MATCHES_SHOWN = 10
SUGGESTIONS_SHOWN = 8
SUGGEST_MIN_CHARS = 1


# --- what the pages show (reads only) ------------------------------------------

def team_or_404(team_id: int) -> Team:
    team = get_row(Team, team_id)
    if team is None:
        abort(404)
    return team


def roster(team: Team) -> list[tuple[TeamMembership, User]]:
    """Members with their users: the captain first, then by username."""
    rows = db.session.execute(
        select(TeamMembership, User).join(User, User.id == TeamMembership.user_id)
        .where(TeamMembership.team_id == team.id)
        .order_by((TeamMembership.role != "captain"), User.username)).all()
    return [(m, u) for m, u in rows]


def team_matches(team: Team) -> tuple[list[Match], list[Match]]:
    """(upcoming, recent): the next scheduled matches, soonest first; the last results, newest first."""
    mine = or_(Match.team_a_id == team.id, Match.team_b_id == team.id)
    upcoming = db.session.scalars(select(Match).where(mine, Match.status == "scheduled")
                                  .order_by(Match.scheduled_at, Match.id).limit(MATCHES_SHOWN)).all()
    recent = db.session.scalars(select(Match).where(mine, Match.status == "completed")
                                .order_by(Match.completed_at.desc(), Match.id.desc()).limit(MATCHES_SHOWN)).all()
    return list(upcoming), list(recent)


def team_achievements(team: Team) -> list[tuple[TeamAchievement, str | None]]:
    rows = db.session.execute(
        select(TeamAchievement, Tournament.name).outerjoin(Tournament, Tournament.id == TeamAchievement.tournament_id)
        .where(TeamAchievement.team_id == team.id).order_by(TeamAchievement.earned_at.desc())).all()
    return [(a, name) for a, name in rows]


def active_sponsors(team: Team) -> list[TeamSponsor]:
    return list(db.session.scalars(select(TeamSponsor).where(
        TeamSponsor.team_id == team.id, TeamSponsor.status == "approved", TeamSponsor.expires_at > utcnow())
        .order_by(TeamSponsor.name)))


def active_promotions(team: Team) -> list[TeamPromotion]:
    return list(db.session.scalars(select(TeamPromotion).where(
        TeamPromotion.team_id == team.id, TeamPromotion.status == "active").order_by(TeamPromotion.ends_at)))


def pending_invites(user_id: int, team_id: int | None = None) -> list[TeamInvite]:
    """The player's invites that can still be answered (not expired), newest first."""
    stmt = select(TeamInvite).where(TeamInvite.user_id == user_id, TeamInvite.status == "pending")
    if team_id is not None:
        stmt = stmt.where(TeamInvite.team_id == team_id)
    invites = db.session.scalars(stmt.order_by(TeamInvite.created_at.desc(), TeamInvite.id.desc()))
    return [i for i in invites if not team_services.invite_expired(i)]


def can_manage(user, team: Team) -> bool:
    return bool(user.is_admin or team_services.is_captain(user, team))


def _region_context(team: Team, status_message: str | None = None, problem: str | None = None,
                    username: str = "", webhook_result: tuple[str, bool] | None = None) -> dict:
    """What the part of the page that the forms change shows (members, invite, webhook)."""
    members = roster(team)
    return {
        "team": team,
        "members": members,
        "is_member": any(u.id == current_user.id for _, u in members),
        "can_manage": can_manage(current_user, team),
        "status_message": status_message,
        "problem": problem,
        "username": username,
        "webhook_result": webhook_result,
    }


def _team_page(team: Team, status: int = 200, **region) -> tuple[str, int]:
    upcoming, recent = team_matches(team)
    return render_template(
        "pages/team.html", **_region_context(team, **region), zone=user_zone(current_user), upcoming=upcoming,
        recent=recent, achievements=team_achievements(team), sponsors=active_sponsors(team),
        promotions=active_promotions(team), my_invites=pending_invites(current_user.id, team.id)), status


# --- a team -------------------------------------------------------------------

@bp.get("/teams/<int:team_id>")
@page_login_required
def team(team_id: int):
    return _team_page(team_or_404(team_id))


def _changed(team: Team, message: str):
    """A change was made: the region with the message (htmx), or back to the page."""
    if htmx:
        return render_template("pages/_team_region.html", **_region_context(team, status_message=message))
    flash(message)
    return redirect(url_for("pages.team", team_id=team.id), 303)


def _refused(team: Team, message: str, status: int, username: str = ""):
    """Nothing was changed: say why, where the player acted."""
    db.session.rollback()
    if htmx:
        return render_template("pages/_team_region.html",
                               **_region_context(team, problem=message, username=username)), 422
    return _team_page(team, status, problem=message, username=username)


@bp.post("/teams/<int:team_id>/invite")
@page_login_required
def invite(team_id: int):
    team = team_or_404(team_id)
    username = (request.form.get("username") or "").strip()
    if not username:
        return _refused(team, "Enter the username of the player to invite.", 422)
    user = find_user(username)
    if user is None:
        return _refused(team, f"There is no player called “{username[:64]}”; check the spelling.", 422, username)
    try:
        team_services.invite_user(current_user, team, user.id)
    except ServiceError as exc:
        return _refused(team, exc.message, exc.status, username)
    return _changed(team, f"Invited {user.username} to {team.name}; they will be notified.")


@bp.post("/teams/<int:team_id>/members/<int:user_id>/remove")
@page_login_required
def remove_member(team_id: int, user_id: int):
    team = team_or_404(team_id)
    user = get_row(User, user_id)
    if user is None:
        return _refused(team, f"User {user_id} is not a member of {team.name}.", NotFound.status)
    return _remove(team, user, f"Removed {user.username} from {team.name}.")


@bp.post("/teams/<int:team_id>/leave")
@page_login_required
def leave(team_id: int):
    team = team_or_404(team_id)
    return _remove(team, current_user, f"You left {team.name}.")


def _remove(team: Team, user, done: str):
    """Take `user` off the team (the service says whether the current user may)."""
    try:
        team_services.remove_member(current_user, team, user.id)
    except ServiceError as exc:
        return _refused(team, exc.message, exc.status)
    return _changed(team, done)


@bp.post("/teams/<int:team_id>/webhook")
@page_login_required
def set_webhook(team_id: int):
    """Save the URL in the form, or clear it ("Clear webhook", or an empty field)."""
    team = team_or_404(team_id)
    url = None if request.form.get("action") == "clear" else (request.form.get("discord_webhook_url") or "").strip()
    try:
        team_services.set_discord_webhook(current_user, team, url or None)
    except InvalidInput as exc:
        return _refused(team, f"Not saved: the webhook URL {exc.fields.get('url', exc.message)}.", exc.status)
    except ServiceError as exc:
        return _refused(team, exc.message, exc.status)
    return _changed(team, f"{team.name}'s Discord webhook is {'saved' if url else 'cleared'}.")


def _webhook_test_result(team: Team, result: str, ok: bool, status: int):
    if htmx:
        return render_template("notifications/_webhook_test_result.html", webhook_result=(result, ok)), status
    return _team_page(team, status, webhook_result=(result, ok))


def too_many_webhook_tests(error):
    """The shared test-message budget is spent: say so where the button is."""
    team = get_row(Team, (request.view_args or {}).get("team_id") or 0)
    if team is None:
        return render_template("notifications/_webhook_test_result.html",
                               webhook_result=(webhook_test_refusal(error), False)), 429
    return _webhook_test_result(team, webhook_test_refusal(error), False, 429)


@bp.post("/teams/<int:team_id>/webhook/test")
@page_login_required
@limit_webhook_tests
def test_webhook(team_id: int):
    """Post a short test message to the webhook URL in the form (or the team's saved one)."""
    team = team_or_404(team_id)
    if not can_manage(current_user, team):
        return _webhook_test_result(team, "Only the team's captain or an admin may do this.", False, 403)
    url = (request.form.get("discord_webhook_url") or "").strip() or team.discord_webhook_url or ""
    result, ok, status = try_webhook(url)
    return _webhook_test_result(team, result, ok, status)


bp.register_error_handler(429, too_many_webhook_tests)


@bp.get("/users/suggest")
@page_login_required
def suggest_users():
    """Usernames starting with what was typed (the invite box's suggestions), as a <datalist>."""
    typed = (request.args.get("q") or request.args.get("username") or "").strip()[:64]
    names: list[str] = []
    if len(typed) >= SUGGEST_MIN_CHARS:
        names = list(db.session.scalars(
            select(User.username).where(User.username.ilike(f"{_escape_like(typed)}%", escape="\\"))
            .order_by(User.username).limit(SUGGESTIONS_SHOWN)))
    return render_template("pages/_suggestions.html", names=names)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# --- an invite ------------------------------------------------------------------

def own_invite_or_404(invite_id: int) -> TeamInvite:
    """Only the invitee sees an invite; anyone else (admins too) gets 404, so its existence is not told."""
    invite = get_row(TeamInvite, invite_id)
    if invite is None or invite.user_id != current_user.id:
        abort(404)
    return invite


def _invite_context(invite: TeamInvite, status_message: str | None = None, problem: str | None = None) -> dict:
    inviter = db.session.get(User, invite.invited_by_id) if invite.invited_by_id else None
    return {"invite": invite, "team": invite.team, "inviter": inviter, "zone": user_zone(current_user),
            "expired": team_services.invite_expired(invite), "status_message": status_message,
            "problem": problem}


@bp.get("/invites/<int:invite_id>")
@page_login_required
def invite_page(invite_id: int):
    return render_template("pages/invite.html", **_invite_context(own_invite_or_404(invite_id)))


def _answer(invite_id: int, service, done: str):
    invite = own_invite_or_404(invite_id)
    team_name = invite.team.name
    try:
        service(current_user, invite)
    except ServiceError as exc:
        db.session.rollback()
        invite = own_invite_or_404(invite_id)
        if htmx:
            return render_template("pages/_invite_answer.html", **_invite_context(invite, problem=exc.message)), 422
        return render_template("pages/invite.html", **_invite_context(invite, problem=exc.message)), exc.status
    message = done.format(team=team_name)
    if htmx:
        return render_template("pages/_invite_answer.html", **_invite_context(invite, status_message=message))
    flash(message)
    return redirect(url_for("pages.invite_page", invite_id=invite.id), 303)


@bp.post("/invites/<int:invite_id>/accept")
@page_login_required
def accept_invite(invite_id: int):
    return _answer(invite_id, team_services.accept_invite, "You joined {team}.")


@bp.post("/invites/<int:invite_id>/decline")
@page_login_required
def decline_invite(invite_id: int):
    return _answer(invite_id, team_services.decline_invite, "Declined: you did not join {team}.")


# --- the player's teams ------------------------------------------------------------

@bp.get("/me/teams")
@page_login_required
def my_teams():
    rows = db.session.execute(
        select(TeamMembership, Team).join(Team, Team.id == TeamMembership.team_id)
        .where(TeamMembership.user_id == current_user.id).order_by(Team.name)).all()
    return render_template("pages/my_teams.html", memberships=rows, invites=pending_invites(current_user.id),
                           zone=user_zone(current_user))
