"""API: teams, rosters, invites, the team webhook, sponsors, promotions.

Awarding a team an achievement is in tournaments/api.py (it may name a tournament)."""
from __future__ import annotations

from marshmallow import Schema, fields

from ..api import Blueprint, api_user, id_links, link
from ..apischemas import ID, IdField, Out, Text, When
from ..dbutil import get_or_404
from . import services
from .models import Team, TeamInvite, TeamSponsor

bp = Blueprint("teams_api", __name__, description="Teams, rosters, invites, sponsors, promotions")


class MemberSchema(Schema):
    user_id = fields.Integer()
    username = fields.Function(lambda m: m.user.username)
    role = fields.String()
    joined_at = Out()


class TeamSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    tag = fields.String(allow_none=True)
    captain_id = fields.Integer()
    points = fields.Integer()
    wins = fields.Integer()
    losses = fields.Integer()
    rank = fields.Integer(allow_none=True)
    has_discord_webhook = fields.Function(lambda t: bool(t.discord_webhook_url))
    created_at = Out()


class TeamDetailSchema(TeamSchema):
    members = fields.Function(lambda t: MemberSchema(many=True).dump(
        sorted(t.memberships, key=lambda m: (m.role != "captain", m.id))))


class TeamCreateSchema(Schema):
    name = Text(100, blank=False, required=True)
    tag = Text(16, allow_none=True, load_default=None)
    captain_id = IdField(required=True)


class WebhookSchema(Schema):
    url = fields.String(required=True, allow_none=True,
                        metadata={"description": "<DISCORD_API_BASE>/webhooks/<id>/<token>, or null to remove"})


class UserIdSchema(Schema):
    user_id = IdField(required=True)


class InviteSchema(Schema):
    id = fields.Integer()
    team_id = fields.Integer()
    user_id = fields.Integer()
    invited_by_id = fields.Integer(allow_none=True)
    status = fields.String()
    created_at = Out()
    responded_at = Out(allow_none=True)


class SponsorCreateSchema(Schema):
    name = Text(100, blank=False, required=True)
    expires_at = When(required=True, metadata={"description": "must be in the future"})


class SponsorSchema(Schema):
    id = fields.Integer()
    team_id = fields.Integer()
    name = fields.String()
    status = fields.String()
    created_at = Out()
    approved_at = Out(allow_none=True)
    expires_at = Out()


class PromotionCreateSchema(Schema):
    title = Text(200, blank=False, required=True)
    starts_at = When(required=True)
    ends_at = When(required=True, metadata={"description": "must be after starts_at and in the future"})


class PromotionSchema(Schema):
    id = fields.Integer()
    team_id = fields.Integer()
    title = fields.String()
    status = fields.String()
    starts_at = Out()
    ends_at = Out()
    created_at = Out()


def _team(team_id: int) -> Team:
    return get_or_404(Team, team_id, "Team")


@bp.operation("POST", "/teams", body=TeamCreateSchema, status=201, response=TeamDetailSchema, admin=True,
              links={**id_links("team_id", get_team="GET /teams/{team_id}",
                                set_webhook="PUT /teams/{team_id}/discord-webhook",
                                invite="POST /teams/{team_id}/invites", add_member="POST /teams/{team_id}/members",
                                create_sponsor="POST /teams/{team_id}/sponsors",
                                create_promotion="POST /teams/{team_id}/promotions",
                                award_achievement="POST /teams/{team_id}/achievements"),
                     "mute": link("POST /mutes", "Mute the new team's notifications", body={"team_id": "id"})})
def create_team(data):
    """Create a team (admin); the captain becomes its first member."""
    return services.create_team(data["name"], data["captain_id"], data.get("tag"))


@bp.operation("GET", f"/teams/<{ID}:team_id>", response=TeamDetailSchema)
def get_team(team_id):
    """A team with its members."""
    return _team(team_id)


@bp.operation("PUT", f"/teams/<{ID}:team_id>/discord-webhook", body=WebhookSchema, response=TeamDetailSchema)
def set_webhook(data, team_id):
    """Set or remove the team's Discord webhook (captain or admin)."""
    return services.set_discord_webhook(api_user(), _team(team_id), data["url"])


@bp.operation("POST", f"/teams/<{ID}:team_id>/invites", body=UserIdSchema, status=201, response=InviteSchema, 
              links=id_links("invite_id", accept="POST /invites/{invite_id}/accept",
                             decline="POST /invites/{invite_id}/decline"))
def invite(data, team_id):
    """Invite a player (captain or admin)."""
    return services.invite_user(api_user(), _team(team_id), data["user_id"])


@bp.operation("POST", f"/invites/<{ID}:invite_id>/accept", response=InviteSchema)
def accept_invite(invite_id):
    """Accept an invite (the invited player); they join the team."""
    return services.accept_invite(api_user(), get_or_404(TeamInvite, invite_id, "Invite"))


@bp.operation("POST", f"/invites/<{ID}:invite_id>/decline", response=InviteSchema)
def decline_invite(invite_id):
    """Decline an invite (the invited player)."""
    return services.decline_invite(api_user(), get_or_404(TeamInvite, invite_id, "Invite"))


@bp.operation("POST", f"/teams/<{ID}:team_id>/members", body=UserIdSchema, status=201, response=MemberSchema, links={
    "remove_member": link("DELETE /teams/{team_id}/members/{user_id}", team_id="$request.path.team_id",
                          user_id="user_id"),
})
def add_member(data, team_id):
    """Add a player directly (captain or admin)."""
    return services.add_member(api_user(), _team(team_id), data["user_id"])


@bp.operation("DELETE", f"/teams/<{ID}:team_id>/members/<{ID}:user_id>", status=204)
def remove_member(team_id, user_id):
    """Remove a member (captain or admin), or leave (the member)."""
    services.remove_member(api_user(), _team(team_id), user_id)


@bp.operation("POST", f"/teams/<{ID}:team_id>/sponsors", body=SponsorCreateSchema, status=201, response=SponsorSchema,
              links=id_links("sponsor_id", approve="POST /sponsors/{sponsor_id}/approve"))
def create_sponsor(data, team_id):
    """Propose a sponsor (captain or admin); an admin approves it."""
    return services.create_sponsor(api_user(), _team(team_id), data["name"], data["expires_at"])


@bp.operation("POST", f"/sponsors/<{ID}:sponsor_id>/approve", response=SponsorSchema, admin=True)
def approve_sponsor(sponsor_id):
    """Approve a pending sponsor (admin)."""
    return services.approve_sponsor(get_or_404(TeamSponsor, sponsor_id, "Sponsor"))


@bp.operation("POST", f"/teams/<{ID}:team_id>/promotions",
              body=PromotionCreateSchema, status=201, response=PromotionSchema, admin=True)
def create_promotion(data, team_id):
    """Schedule a promotion (admin); it starts by itself at starts_at."""
    return services.create_promotion(_team(team_id), data["title"], data["starts_at"], data["ends_at"])
