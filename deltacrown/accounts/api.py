"""API: users (admins create them) and the caller's own account."""
from __future__ import annotations

from marshmallow import Schema, fields

from ..api import Blueprint, api_user, link
from ..apischemas import Out, Text
from .services import TIMEZONES, USERNAME_PATTERN, create_user, rotate_api_token

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


# What the document can add to format "email" about the domains marshmallow's Email accepts.
EMAIL_DOMAIN_PATTERN = r"^.+@(localhost|\[[^\]]+\]|[^@]+\.[^@.]{2,}\.?)$"


class UserCreateSchema(Schema):
    # The service's rules (accounts.services.create_user), stated for the document.
    username = Text(32, min_length=3, required=True,
                    metadata={"pattern": USERNAME_PATTERN, "description": "3 to 32 letters, digits, '.', '_' or '-'"})
    email = Text(254, required=True, metadata={"format": "email", "pattern": EMAIL_DOMAIN_PATTERN,
                                               "description": "the domain needs a top-level part of 2 or more "
                                                              "characters (or is localhost, or [an IP address])"})
    password = Text(200, min_length=8, required=True)
    is_admin = fields.Boolean(load_default=False)
    timezone = Text(64, load_default="UTC", metadata={"description": "IANA time zone", "example": "Europe/Berlin",
                                                      "enum": TIMEZONES})


@bp.operation("POST", "/users", body=UserCreateSchema, status=201, response=UserCreatedSchema, admin=True,
              links={"coins": link("GET /users/{user_id}/coins", user_id="id"),
                     "create_team": link("POST /teams", "a team captained by this user", body={"captain_id": "id"})})
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
