"""Signed action links in emails: one user, one notification type's subject (the invite),
one action (accept or decline).

The link is the only proof its POST carries (no login, no session, no CSRF token), so it
is signed with the app's SECRET_KEY (itsdangerous, own salt) over the user, the type,
the subject and the action: changing any breaks the signature. It lives as long as the
subject does (the type's `subject.link_max_age`: an invite's INVITE_EXPIRY_DAYS), and an
answered subject refuses it, so a used link cannot act twice. Reading a link (`read_link`)
changes nothing: the confirm page shows it and a POST runs it (`apply_link`).
"""
from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from sqlalchemy import false, func, update

from ..accounts.models import User
from ..errors import ServiceError
from ..extensions import db
from ..timeutil import utcnow
from .actions import Action, ActionResult
from .models import Notification
from .signed_links import InvalidLink, SignedLinks
from .types import NOTIFICATION_TYPES, NotificationType

_SALT = "deltacrown.email-action.v1"
ACTION_PATH = "/email-actions"


class InvalidActionLink(InvalidLink):
    """The link was altered or names something that no longer exists (400), is too old
    (410), or its action no longer applies (409: the invite was answered or expired)."""


_LINKS = SignedLinks(
    _SALT, InvalidActionLink, expired_status=410,
    expired="This link has expired, and so has the invite it answers. Ask the team's captain for a new invite.",
    invalid="This link is not valid (it may have been cut off or changed). "
            "Open the link from the email again, or answer in your notifications.")


@dataclass(frozen=True)
class ActionLink:
    user: User
    type_info: NotificationType
    action: Action
    subject_id: int

    @property
    def description(self) -> str:
        """What it acts on, in words for the page: "the invite to join Crimson Hawks"."""
        return self.type_info.subject.describe(self.subject_id)


def make_action_token(user_id: int, type_name: str, subject_id: int, action_name: str) -> str:
    spec = NOTIFICATION_TYPES[type_name]
    if spec.action(action_name) is None:
        raise ValueError(f"{type_name} has no action {action_name!r}")
    return _LINKS.dump({"u": int(user_id), "t": type_name, "s": int(subject_id), "a": action_name})


def action_links(user_id: int, type_name: str, subject_id: int | None) -> list[dict]:
    """[{"name", "label", "url"}] for the email of a notification of this type (none without a subject)."""
    spec = NOTIFICATION_TYPES[type_name]
    if not spec.actions or subject_id is None:
        return []
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    return [{"name": a.name, "label": a.label,
             "url": f"{base}{ACTION_PATH}/{make_action_token(user_id, type_name, subject_id, a.name)}"}
            for a in spec.actions]


def _max_age_seconds(token: str) -> int | None:
    """The age limit of the type the token names (read without trusting it: the signature
    is checked right after, with this limit)."""
    data = _LINKS.peek(token)
    type_name = data.get("t") if isinstance(data, dict) else None
    spec = NOTIFICATION_TYPES.get(type_name) if isinstance(type_name, str) else None
    if spec is None or spec.subject is None:
        return None
    return int(spec.subject.link_max_age().total_seconds())


def read_link(token: str, check_open: bool = True) -> ActionLink:
    """Check signature, age, and (with `check_open`) that the action still applies; raises
    InvalidActionLink with a readable message. Writes nothing."""
    data = _LINKS.load(token, _max_age_seconds(token or ""))
    if not isinstance(data, dict) or not all(isinstance(data.get(k), t) for k, t in
                                             (("u", int), ("t", str), ("s", int), ("a", str))):
        raise InvalidActionLink("This link is not valid.")
    spec = NOTIFICATION_TYPES.get(data["t"])
    action = spec.action(data["a"]) if spec is not None else None
    if action is None:
        raise InvalidActionLink("This link is for something we no longer offer.")
    user = db.session.get(User, data["u"])
    if user is None:
        raise InvalidActionLink("This link is for an account that no longer exists.")
    link = ActionLink(user=user, type_info=spec, action=action, subject_id=data["s"])
    if check_open:
        problem = spec.subject.problem(link.subject_id)
        if problem:
            raise InvalidActionLink(problem, status=409)
    return link


def apply_link(token: str) -> tuple[ActionLink, ActionResult]:
    """Run the link's action for its user and mark the notifications about it read, in one
    commit; InvalidActionLink (nothing written) when it no longer applies."""
    link = read_link(token, check_open=False)
    try:
        db.session.execute(update(Notification).where(
            Notification.user_id == link.user.id, Notification.type == link.type_info.name,
            Notification.subject_id == link.subject_id, Notification.is_read == false(),
        ).values(is_read=True, read_at=utcnow(), seen_at=func.coalesce(Notification.seen_at, utcnow()))
            .execution_options(synchronize_session=False))  # read implies seen
        result = link.action.handler(link.subject_id, link.user)  # the domain service commits
        db.session.commit()
    except ServiceError as exc:  # Conflict: answered or expired meanwhile
        db.session.rollback()
        raise InvalidActionLink(exc.message, status=exc.status) from None
    except Exception:
        db.session.rollback()
        raise
    return link, result
