"""API: the caller's mutes (a team or a tournament, for a while or until unmuted); see mutes.py."""
from __future__ import annotations

from marshmallow import Schema, fields

from ..api import Blueprint, api_user, id_links, register_blueprint
from ..apischemas import ID, IdField, Out, When
from . import mutes
from .preferences import SOURCE_API

bp = Blueprint("mutes_api", __name__, description="Mutes: silence a team or a tournament for a while")


class MuteSchema(Schema):
    id = fields.Integer()
    team_id = fields.Integer(allow_none=True)
    tournament_id = fields.Integer(allow_none=True)
    until = Out(allow_none=True, metadata={"description": "when it ends; null: until unmuted"})


class MuteListSchema(Schema):
    items = fields.List(fields.Nested(MuteSchema))


class MuteCreateSchema(Schema):
    team_id = IdField(load_default=None, allow_none=True,
                      metadata={"description": "the team to mute (or tournament_id, not both)"})
    tournament_id = IdField(load_default=None, allow_none=True,
                            metadata={"description": "the tournament to mute (or team_id, not both)"})
    until = When(required=True, allow_none=True,
                 metadata={"description": "when the mute ends (in the future), or null: until unmuted"})


@bp.operation("GET", "/mutes", response=MuteListSchema)
def list_mutes():
    """The caller's mutes in force, newest first."""
    return {"items": [mutes.serialize_mute(m) for m in mutes.active_mutes(api_user().id)]}


@bp.operation("POST", "/mutes", body=MuteCreateSchema, status=201, response=MuteSchema,
              links=id_links("mute_id", unmute="DELETE /mutes/{mute_id}"))
def create_mute(data):
    """Mute a team or a tournament until `until` (null: until unmuted). While muted, notifications about
    it are written in-app already seen and sent by neither email nor personal Discord; critical types are
    never muted. Muting the same team or tournament again replaces the end. 422 for both or neither id,
    an unknown id, or an end not in the future."""
    row = mutes.mute(api_user().id, team_id=data["team_id"], tournament_id=data["tournament_id"],
                     until=data["until"], source=SOURCE_API)
    return mutes.serialize_mute(row)


@bp.operation("DELETE", f"/mutes/<{ID}:mute_id>", status=204)
def delete_mute(mute_id):
    """Unmute (404 if it is not one of the caller's mutes)."""
    mutes.unmute(api_user().id, mute_id, source=SOURCE_API)
    return None


def init_app(app):
    register_blueprint(app, bp)
    # Say in the document what create_mute enforces: exactly one of team_id and tournament_id,
    # as a number (a client generating requests from the document then sends valid ones).
    schema = app.extensions["deltacrown_api"].spec.components.schemas.get("MuteCreate")
    if schema is not None and "oneOf" not in schema:
        schema["oneOf"] = [{"required": [given], "properties": {given: {"type": "integer"}},
                            "not": {"required": [other]}}
                           for given, other in (("team_id", "tournament_id"), ("tournament_id", "team_id"))]
