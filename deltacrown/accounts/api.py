"""API: users (admins create them) and the caller's own account."""
from __future__ import annotations

from marshmallow import Schema, fields

from ..api import Blueprint, api_user
from ..apischemas import Out, Text
from .services import create_user, rotate_api_token

bp = Blueprint("users_api", __name__, description="Users and API tokens")


class UserSchema(Schema):
    id = fields.Integer()
    username = fields.String()
    email = fields.String()
    is_admin = fields.Boolean()
    timezone = fields.String()
    created_at = Out()


class UserCreatedSchema(UserSchema):
    api_token = fields.String(metadata={"description": "shown only this once; only its hash is stored"})


class ApiTokenSchema(Schema):
    api_token = fields.String(required=True,
                              metadata={"description": "the new token, shown only this once; only its hash is stored"})


class UserCreateSchema(Schema):
    username = Text(32, required=True)
    email = Text(254, required=True)
    password = Text(200, min_length=8, required=True)
    is_admin = fields.Boolean(load_default=False)
    timezone = Text(64, load_default="UTC", metadata={"description": "IANA time zone", "example": "Europe/Berlin"})


@bp.operation("POST", "/users", body=UserCreateSchema, status=201, response=UserCreatedSchema, admin=True)
def create(data):
    """Create a user (admin); the answer holds their API token, once."""
    user, token, _ = create_user(data["username"], data["email"], password=data["password"],
                                 is_admin=data["is_admin"], timezone=data["timezone"])
    user.api_token = token  # shown in this answer only; never stored
    return user


@bp.operation("GET", "/me", response=UserSchema)
def me():
    """The caller."""
    return api_user()


@bp.operation("POST", "/me/token", response=ApiTokenSchema)
def rotate_token():
    """Replace the caller's API token: the answer holds the new one, once; the token used for
    this request stops working at once, and the caller's browser sessions end."""
    return {"api_token": rotate_api_token(api_user())}
