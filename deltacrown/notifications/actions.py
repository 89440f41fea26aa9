"""What a notification's actions do: the handlers a type's registry entry binds to its
actions (types.py `actions`), and the subject they act on (`subject`).

A notification with actions stores the id of its subject (`Notification.subject_id`,
for invite_sent the invite). The subject says which of a batch of ids can still be
acted on (`open_ids`: the center and the API list actions only for those), why one
cannot any more (`problem`), how long an emailed action link lives (`link_max_age`)
and, for the email confirm page, what it is (`describe`). A handler gets the subject
id and the acting user and goes through the domain's own service (teams.services for
invites, which commits and notifies the captain); it raises Conflict when the action no
longer applies, before writing anything.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import select

from ..errors import Conflict
from ..extensions import db
from ..teams import services as teams
from ..teams.models import TeamInvite


@dataclass(frozen=True)
class ActionResult:
    status: str  # what the subject became, e.g. "accepted"
    message: str  # what the player is told, e.g. "You joined Crimson Hawks"


@dataclass(frozen=True)
class Action:
    name: str  # in the URL: /notifications/{id}/actions/{name}
    label: str  # on the button
    handler: Callable[[int, object], ActionResult]  # (subject id, acting user) -> result; Conflict when closed


@dataclass(frozen=True)
class Subject:
    """What a type's actions act on."""
    open_ids: Callable[[Iterable[int]], set[int]]  # of these ids, those whose actions still apply
    problem: Callable[[int], str | None]  # why its actions no longer apply (None: they do)
    describe: Callable[[int], str]  # e.g. "the invite to join Crimson Hawks"
    link_max_age: Callable[[], timedelta]  # how long an emailed action link is good for


# --- team invites ----------------------------------------------------------------

def _invite(invite_id: int) -> TeamInvite:
    invite = db.session.get(TeamInvite, invite_id)
    if invite is None:
        raise Conflict("This invite no longer exists.")
    return invite


def open_invites(invite_ids: Iterable[int]) -> set[int]:
    ids = sorted({int(i) for i in invite_ids})
    if not ids:
        return set()
    invites = db.session.scalars(select(TeamInvite).where(TeamInvite.id.in_(ids), TeamInvite.status == "pending"))
    return {i.id for i in invites if not teams.invite_expired(i)}


def invite_problem(invite_id: int) -> str | None:
    invite = db.session.get(TeamInvite, invite_id)
    if invite is None:
        return "This invite no longer exists."
    if teams.invite_expired(invite):
        return "This invite has expired; ask the captain for a new one."
    if invite.status != "pending":
        return f"This invite was already {invite.status}."
    return None


def describe_invite(invite_id: int) -> str:
    invite = db.session.get(TeamInvite, invite_id)
    return f"the invite to join {invite.team.name}" if invite else "an invite that no longer exists"


def invite_link_max_age() -> timedelta:
    """Emailed answers live as long as the invite does."""
    return timedelta(days=current_app.config["INVITE_EXPIRY_DAYS"])


def accept_invite(invite_id: int, user) -> ActionResult:
    invite = _invite(invite_id)
    teams.accept_invite(user, invite)
    return ActionResult("accepted", f"You joined {invite.team.name}")


def decline_invite(invite_id: int, user) -> ActionResult:
    teams.decline_invite(user, _invite(invite_id))
    return ActionResult("declined", "Declined")


INVITE = Subject(open_ids=open_invites, problem=invite_problem, describe=describe_invite,
                 link_max_age=invite_link_max_age)
INVITE_ACTIONS = (Action("accept", "Accept", accept_invite), Action("decline", "Decline", decline_invite))
