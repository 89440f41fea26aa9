"""Signed unsubscribe links: one user, one notification type (or all email).

The token is the only proof a one-click unsubscribe carries (no session, no
CSRF token: mail clients POST it on their own, RFC 8058), so it is signed with
the app's SECRET_KEY (itsdangerous, own salt) over the user id and the scope.
Changing either breaks the signature: a token cannot be forged, nor pointed at
another user or another type.
"""
from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from ..accounts.models import User
from ..extensions import db
from .models import NotificationPreference
from .preferences import SOURCE_UNSUBSCRIBE, shown_channels, update_preferences
from .signed_links import InvalidLink, SignedLinks
from .types import EMAIL, NOTIFICATION_TYPES

ALL_EMAIL = "all"
_SALT = "deltacrown.unsubscribe.v1"


class InvalidUnsubscribeToken(InvalidLink):
    """The link was altered, is too old, or names something that no longer exists (400)."""


_LINKS = SignedLinks(
    _SALT, InvalidUnsubscribeToken,
    expired="This unsubscribe link has expired. You can still turn email off in your notification settings.",
    invalid="This unsubscribe link is not valid (it may have been cut off or changed). "
            "Open the link from the email again, or turn email off in your notification settings.")


@dataclass(frozen=True)
class UnsubscribeRequest:
    user: User
    scope: str  # a notification type name, or ALL_EMAIL

    @property
    def is_all(self) -> bool:
        return self.scope == ALL_EMAIL

    @property
    def description(self) -> str:
        """What confirming turns off, in words for the page."""
        if self.is_all:
            return "all email from DeltaCrown (in-app and Discord notifications stay on)"
        return f"email for “{NOTIFICATION_TYPES[self.scope].label}” notifications"

    def is_already_off(self) -> bool:
        pref = NotificationPreference.get_or_create_for_user(self.user)
        if pref.opt_out_email:
            return True
        return not self.is_all and EMAIL not in pref.chosen_channels(self.scope)


def make_unsubscribe_token(user_id: int, scope: str) -> str:
    """A token turning off email of type `scope` (or ALL_EMAIL) for this user."""
    if scope != ALL_EMAIL and scope not in NOTIFICATION_TYPES:
        raise ValueError(f"unknown unsubscribe scope {scope!r}")
    return _LINKS.dump({"u": int(user_id), "t": scope})


def read_unsubscribe_token(token: str) -> UnsubscribeRequest:
    """Check the signature and age; raises InvalidUnsubscribeToken with a readable message."""
    max_age = current_app.config["UNSUBSCRIBE_TOKEN_MAX_AGE_DAYS"] * 24 * 60 * 60
    data = _LINKS.load(token, max_age)
    if not isinstance(data, dict) or not isinstance(data.get("u"), int) or not isinstance(data.get("t"), str):
        raise InvalidUnsubscribeToken("This unsubscribe link is not valid.")
    scope = data["t"]
    if scope != ALL_EMAIL and scope not in NOTIFICATION_TYPES:
        raise InvalidUnsubscribeToken("This unsubscribe link is for a kind of email we no longer send.")
    user = db.session.get(User, data["u"])
    if user is None:
        raise InvalidUnsubscribeToken("This unsubscribe link is for an account that no longer exists.")
    return UnsubscribeRequest(user=user, scope=scope)


def apply_unsubscribe(token: str) -> UnsubscribeRequest:
    """Turn the email the token names off (idempotent); recorded with source "unsubscribe"."""
    request = read_unsubscribe_token(token)
    if request.is_all:
        changes = {"opt_out_email": True}
    else:
        pref = NotificationPreference.get_or_create_for_user(request.user)
        # shown_channels: a critical type keeps in_app even if an older choice left it out
        remaining = [c for c in shown_channels(pref, request.scope) if c != EMAIL]
        changes = {"channels": {request.scope: remaining}}
    update_preferences(request.user, changes, SOURCE_UNSUBSCRIBE)
    return request
