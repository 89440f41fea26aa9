"""Teams: creating them, their rosters, invites, webhook, sponsors, promotions.

Awarding an achievement can name a tournament, so it is in tournaments/services.py.

Every function checks permissions and state first and raises a ServiceError
before writing anything; each change commits together with its outbox event
(`emit`), so the notification pipeline hears of exactly the committed changes.
"""
from __future__ import annotations

from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select

from ..accounts.models import User
from ..channels.webhooks import webhook_url_problem
from ..dbutil import commit, flush, get_or_404, is_db_id, not_found, transition
from ..errors import Conflict, Forbidden, InvalidInput, NotFound
from ..extensions import db
from ..outbox.services import emit
from ..timeutil import utcnow
from .models import Team, TeamInvite, TeamMembership, TeamPromotion, TeamSponsor


def is_captain(user, team: Team) -> bool:
    return user is not None and team.captain_id == user.id


def require_captain_or_admin(user, team: Team) -> None:
    if not (user.is_admin or is_captain(user, team)):
        raise Forbidden("Only the team's captain or an admin may do this.")


def membership(team_id: int, user_id: int) -> TeamMembership | None:
    return db.session.scalar(select(TeamMembership).where(TeamMembership.team_id == team_id,
                                                         TeamMembership.user_id == user_id))


def member_ids(team_ids, as_of=None) -> list[int]:
    """Distinct user ids of every member of these teams (one query); with `as_of`, only
    those who had joined by then (a player who joins later is not told of older news)."""
    team_ids = list(team_ids)
    if not team_ids:
        return []
    stmt = select(TeamMembership.user_id).where(TeamMembership.team_id.in_(team_ids))
    if as_of is not None:
        stmt = stmt.where(TeamMembership.joined_at <= as_of)
    return list(db.session.scalars(stmt.distinct().order_by(TeamMembership.user_id)))


# --- teams -------------------------------------------------------------------

def create_team(name: str, captain_id: int, tag: str | None = None) -> Team:
    name = (name or "").strip()
    if not name:
        raise InvalidInput("name: must not be blank", fields={"name": "must not be blank"})
    captain = get_or_404(User, captain_id, "User", field="captain_id")
    if db.session.scalar(select(Team.id).where((Team.name == name) | (func.lower(Team.name) == name.lower()))):
        raise Conflict(f"A team named {name!r} exists already.", fields={"name": "taken"})
    team = Team(name=name, tag=tag or None, captain_id=captain.id, points=0, wins=0, losses=0)
    db.session.add(team)
    flush()
    db.session.add(TeamMembership(team_id=team.id, user_id=captain.id, role="captain", joined_at=utcnow()))
    commit()
    return team


def set_discord_webhook(actor, team: Team, url: str | None) -> Team:
    require_captain_or_admin(actor, team)
    if url:
        problem = webhook_url_problem(url)
        if problem:
            raise InvalidInput(f"url: {problem}", fields={"url": problem})
    team.discord_webhook_url = url or None
    commit()
    return team


# --- invites and members ------------------------------------------------------

def invites_live_since(now=None):
    """A pending invite sent before this has expired (INVITE_EXPIRY_DAYS), swept or not."""
    return (now or utcnow()) - timedelta(days=current_app.config["INVITE_EXPIRY_DAYS"])


def invite_expired(invite: TeamInvite) -> bool:
    return invite.status == "expired" or (invite.status == "pending" and invite.created_at < invites_live_since())


def invite_user(actor, team: Team, user_id: int) -> TeamInvite:
    require_captain_or_admin(actor, team)
    # The invitee, whether they are on the team and whether a live invite waits for them: one
    # read (an invite is the hot write of the API: every statement shows in its latency).
    row = db.session.execute(select(
        User,
        select(TeamMembership.id).where(TeamMembership.team_id == team.id, TeamMembership.user_id == User.id)
        .exists(),
        select(TeamInvite.id).where(TeamInvite.team_id == team.id, TeamInvite.user_id == User.id,
                                    TeamInvite.status == "pending", TeamInvite.created_at >= invites_live_since())
        .exists(),
    ).where(User.id == user_id)).first() if is_db_id(user_id) else None
    if row is None:
        raise not_found("User", user_id, field="user_id")
    user, is_member, already_invited = row
    if is_member:
        raise Conflict(f"{user.username} is already on {team.name}.", fields={"user_id": "already a member"})
    if already_invited:
        raise Conflict(f"{user.username} already has a pending invite to {team.name}.",
                       fields={"user_id": "already invited"})
    invite = TeamInvite(team_id=team.id, user_id=user.id, invited_by_id=actor.id, status="pending",
                        created_at=utcnow())
    db.session.add(invite)
    flush()
    emit("invite_sent", invite_id=invite.id)
    commit(keep_loaded=True)
    return invite


def _check_invite_answer(actor, invite: TeamInvite) -> None:
    if actor.id != invite.user_id:
        raise Forbidden("Only the invited player may answer this invite.")
    if invite_expired(invite):
        raise Conflict("This invite has expired; ask the captain for a new one.")
    if invite.status != "pending":
        raise Conflict(f"This invite was already {invite.status}.")


def accept_invite(actor, invite: TeamInvite) -> TeamInvite:
    _check_invite_answer(actor, invite)
    if membership(invite.team_id, invite.user_id):
        raise Conflict("You are already on this team.")
    transition(invite, "pending", "This invite was answered meanwhile.", status="accepted", responded_at=utcnow())
    db.session.add(TeamMembership(team_id=invite.team_id, user_id=invite.user_id, role="member",
                                  joined_at=invite.responded_at))
    emit("invite_accepted", invite_id=invite.id)
    emit("roster_changed", team_id=invite.team_id, user_id=invite.user_id, action="joined", actor_id=actor.id)
    commit()
    return invite


def decline_invite(actor, invite: TeamInvite) -> TeamInvite:
    _check_invite_answer(actor, invite)
    transition(invite, "pending", "This invite was answered meanwhile.", status="declined", responded_at=utcnow())
    commit(keep_loaded=True)  # the UPDATE set what the answer shows: no read after the commit
    return invite


def add_member(actor, team: Team, user_id: int) -> TeamMembership:
    require_captain_or_admin(actor, team)
    user = get_or_404(User, user_id, "User", field="user_id")
    if membership(team.id, user.id):
        raise Conflict(f"{user.username} is already on {team.name}.", fields={"user_id": "already a member"})
    member = TeamMembership(team_id=team.id, user_id=user.id, role="member", joined_at=utcnow())
    db.session.add(member)
    emit("roster_changed", team_id=team.id, user_id=user.id, action="added", actor_id=actor.id)
    commit()
    return member


def remove_member(actor, team: Team, user_id: int) -> None:
    if not (actor.is_admin or is_captain(actor, team) or actor.id == user_id):
        raise Forbidden("Only the team's captain, an admin or the member themself may do this.")
    member = membership(team.id, user_id) if is_db_id(user_id) else None
    if member is None:
        raise NotFound(f"User {user_id} is not a member of {team.name}.")
    if user_id == team.captain_id:
        raise Conflict("The captain cannot leave or be removed; make someone else captain first.")
    db.session.delete(member)
    emit("roster_changed", team_id=team.id, user_id=user_id,
         action="left" if actor.id == user_id else "removed", actor_id=actor.id)
    commit()


# --- sponsors, promotions ------------------------------------------------------

def create_sponsor(actor, team: Team, name: str, expires_at) -> TeamSponsor:
    require_captain_or_admin(actor, team)
    if not (name or "").strip():
        raise InvalidInput("name: must not be blank", fields={"name": "must not be blank"})
    if expires_at <= utcnow():
        raise InvalidInput("expires_at: must be in the future", fields={"expires_at": "must be in the future"})
    sponsor = TeamSponsor(team_id=team.id, name=name.strip(), status="pending", expires_at=expires_at,
                          created_at=utcnow())
    db.session.add(sponsor)
    commit()
    return sponsor


def approve_sponsor(sponsor: TeamSponsor) -> TeamSponsor:
    if sponsor.status != "pending":
        raise Conflict(f"This sponsor is {sponsor.status}, not pending.")
    if sponsor.expires_at <= utcnow():
        raise Conflict("This sponsorship has already ended; it cannot be approved.")
    transition(sponsor, "pending", "This sponsor was handled meanwhile.", status="approved", approved_at=utcnow())
    emit("sponsor_approved", sponsor_id=sponsor.id)
    commit()
    return sponsor


def create_promotion(team: Team, title: str, starts_at, ends_at) -> TeamPromotion:
    """A scheduled promotion; the process-promotions job starts it (and emits promotion_started)."""
    if not (title or "").strip():
        raise InvalidInput("title: must not be blank", fields={"title": "must not be blank"})
    if ends_at <= starts_at:
        raise InvalidInput("ends_at: must be after starts_at", fields={"ends_at": "must be after starts_at"})
    if ends_at <= utcnow():
        raise InvalidInput("ends_at: must be in the future", fields={"ends_at": "must be in the future"})
    promotion = TeamPromotion(team_id=team.id, title=title.strip(), status="scheduled", starts_at=starts_at,
                              ends_at=ends_at, created_at=utcnow())
    db.session.add(promotion)
    commit()
    return promotion
