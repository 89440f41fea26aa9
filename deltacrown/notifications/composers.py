"""What each notification type says and to whom: the composers and audiences that the
type registry (types.py) names in its entries.

A composer turns a payload (an outbox event's, or the one a sender passes) into a
`Message`: title, body and url, plus the teams and players it is about. It returns
None when there is nothing to say (the invite was deleted, the match has no result);
most compose one row the payload names (`about`).
Urls are same-site paths of the player's pages: /teams/<id>, /tournaments/<id> (a match
is /tournaments/<id>#match-<id>), /invites/<id>, or the notification settings.
An audience turns a message into its recipients. Bodies are written once for every
recipient; times in them say UTC (`_when`).
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from ..accounts.models import User
from ..economy.models import Payout
from ..extensions import db
from ..teams.models import Team, TeamAchievement, TeamInvite, TeamPromotion, TeamSponsor
from ..teams.services import member_ids
from ..tournaments.models import Match, Registration, Tournament
from ..tournaments.services import registered_team_ids


@dataclass(frozen=True)
class Message:
    title: str
    body: str
    url: str | None
    team_ids: tuple[int, ...] = ()  # the teams it is about: their members, their webhooks (team_event)
    user_ids: tuple[int, ...] = ()  # the players it names: the invitee, the one paid, the one who left
    actor_id: int | None = None  # who made the change: not told about it
    dedup_key: str | None = None  # once per this key instead of once per event (e.g. per webhook URL)
    subject_id: int | None = None  # the row its type's actions act on (types.py `actions`): the invite
    # A message that is one Discord message per team webhook, edited in place (cards.py): "match:<id>".
    card: str | None = None
    tournament_id: int | None = None  # the tournament it is about (with team_ids: what a mute silences)
    # The row it was composed from (`about`), held while the message is sent: the session then
    # still has it and what it loaded, so the fan-out asks it again (a team's webhook) unread.
    subject: object = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Audience:
    description: str
    recipients: Callable[[Message, datetime | None], Iterable[int]]  # (message, as_of) -> user ids


def match_path(match) -> str:
    """A match's place on its tournament's page."""
    return f"/tournaments/{match.tournament_id}#match-{match.id}"


def _when(moment) -> str:
    return moment.astimezone(timezone.utc).strftime("%a %d %b %Y, %H:%M UTC")


# --- audiences ---------------------------------------------------------------------
# `as_of` is the time of the change (the event's): team recipients are the members
# then, not whoever joined since.

THE_USERS = Audience("the players the message names", lambda message, as_of: message.user_ids)
TEAM_MEMBERS = Audience("the members of its teams",
                        lambda message, as_of: member_ids(message.team_ids, as_of=as_of))
TEAM_CAPTAINS = Audience("the captains of its teams", lambda message, as_of: [
    db.session.get(Team, team_id).captain_id for team_id in message.team_ids])
ROSTER = Audience(
    "the team's members and the player concerned, except whoever made the change",
    lambda message, as_of: (set(member_ids(message.team_ids, as_of=as_of)) | set(message.user_ids))
    - {message.actor_id})
EVERYONE = Audience("every user, or only the users an announcement names",
                    lambda message, as_of: message.user_ids or db.session.scalars(select(User.id)).all())


# --- composers ---------------------------------------------------------------------

def about(model, key: str, *related):
    """A composer of the row that `payload[key]` names: nothing to say when it is gone.
    `related`: the relationships the message reads, loaded with the row (one statement)."""
    options = [joinedload(rel) for rel in related]

    def decorate(compose: Callable[..., Message | None]) -> Callable[[dict], Message | None]:
        @functools.wraps(compose)
        def from_payload(payload: dict) -> Message | None:
            subject = db.session.get(model, payload[key], options=options)
            message = None if subject is None else compose(subject, payload)
            return None if message is None else replace(message, subject=subject)
        return from_payload
    return decorate


@about(TeamInvite, "invite_id", TeamInvite.team)
def invite_sent(invite, payload) -> Message:
    return Message(f"{invite.team.name} invited you to join",
                   f"{invite.team.name} wants you on the team. Accept or decline the invite.",
                   f"/invites/{invite.id}", user_ids=(invite.user_id,), subject_id=invite.id)


@about(TeamInvite, "invite_id", TeamInvite.team, TeamInvite.user)
def invite_accepted(invite, payload) -> Message:
    team = invite.team
    return Message(f"{invite.user.username} accepted the invite to {team.name}",
                   f"{invite.user.username} is now on {team.name}.", f"/teams/{team.id}", team_ids=(team.id,))


@about(Team, "team_id")
def roster_changed(team, payload) -> Message:
    user_id, action, actor_id = payload["user_id"], payload["action"], payload.get("actor_id")
    who = db.session.get(User, user_id)
    actor = db.session.get(User, actor_id) if actor_id else None
    name = who.username if who else f"user {user_id}"
    sentence = {
        "joined": f"{name} joined {team.name}.",
        "added": f"{name} was added to {team.name}" + (f" by {actor.username}." if actor else "."),
        "left": f"{name} left {team.name}.",
        "removed": f"{name} was removed from {team.name}" + (f" by {actor.username}." if actor else "."),
    }.get(action, f"{name}: {action} ({team.name}).")
    return Message(f"Roster change in {team.name}", sentence, f"/teams/{team.id}", team_ids=(team.id,),
                   user_ids=(user_id,), actor_id=actor_id)


MATCH_SIDES = (Match.team_a, Match.team_b, Match.tournament)  # what a match message names


@about(Registration, "registration_id", Registration.team, Registration.tournament)
def tournament_registered(reg, payload) -> Message:
    return Message(f"{reg.team.name} is registered for {reg.tournament.name}",
                   f"Starts {_when(reg.tournament.starts_at)}.", f"/tournaments/{reg.tournament_id}",
                   team_ids=(reg.team_id,), tournament_id=reg.tournament_id)


@about(Match, "match_id", *MATCH_SIDES)
def match_scheduled(match, payload) -> Message:
    return Message(f"Match scheduled: {match.team_a.name} vs {match.team_b.name}",
                   f"{match.tournament.name}, {_when(match.scheduled_at)}.", match_path(match),
                   team_ids=(match.team_a_id, match.team_b_id), card=f"match:{match.id}",
                   tournament_id=match.tournament_id)


@about(Match, "match_id", *MATCH_SIDES)
def match_rescheduled(match, payload) -> Message | None:
    """Not a type of its own: the match_scheduled notification, rewritten in place
    (notifications/match_updates.py), and a short "Rescheduled" email."""
    if match.status != "scheduled":
        return None
    # The time it has now (not the event's, nor the one before: a digest shows the final time only).
    return Message(f"Match rescheduled: {match.team_a.name} vs {match.team_b.name}",
                   f"{match.tournament.name}, now {_when(match.scheduled_at)}.", match_path(match),
                   team_ids=(match.team_a_id, match.team_b_id), card=f"match:{match.id}",
                   tournament_id=match.tournament_id)


@about(Match, "match_id", *MATCH_SIDES)
def match_reminder(match, payload) -> Message | None:
    """Sent MATCH_REMINDER_MINUTES before the match (notifications/reminders.py)."""
    if match.status != "scheduled":
        return None
    return Message(f"Starting soon: {match.team_a.name} vs {match.team_b.name}",
                   f"{match.tournament.name}, {_when(match.scheduled_at)}. Get ready!", match_path(match),
                   team_ids=(match.team_a_id, match.team_b_id), tournament_id=match.tournament_id)


@about(Match, "match_id", *MATCH_SIDES)
def match_result(match, payload) -> Message | None:
    if match.status != "completed":
        return None
    a, b = match.team_a.name, match.team_b.name
    outcome = "Draw." if match.winner_id is None else f"{a if match.winner_id == match.team_a_id else b} won."
    return Message(f"{a} {match.score_a} : {match.score_b} {b}", f"{match.tournament.name}. {outcome}",
                   match_path(match), team_ids=(match.team_a_id, match.team_b_id), card=f"match:{match.id}",
                   tournament_id=match.tournament_id)


@about(Tournament, "tournament_id")
def bracket_ready(tournament, payload) -> Message:
    team_ids = tuple(registered_team_ids(tournament.id))
    return Message(f"The bracket for {tournament.name} is ready",
                   f"{len(team_ids)} teams are in. Check your first match.", f"/tournaments/{tournament.id}",
                   team_ids=team_ids, tournament_id=tournament.id)


@about(Team, "team_id")
def ranking_changed(team, payload) -> Message:
    old_rank, new_rank = payload["old_rank"], payload["new_rank"]
    if old_rank is None:
        body = f"{team.name} entered the rankings at #{new_rank}."
    elif new_rank is not None and new_rank < old_rank:
        body = f"{team.name} moved up from #{old_rank} to #{new_rank}."
    else:
        body = f"{team.name} moved from #{old_rank} to #{new_rank}."
    return Message(f"{team.name} is now #{new_rank}", body, f"/teams/{team.id}", team_ids=(team.id,))


@about(TeamSponsor, "sponsor_id")
def sponsor_approved(sponsor, payload) -> Message:
    return Message(f"{sponsor.name} now sponsors {sponsor.team.name}",
                   f"The sponsorship runs until {_when(sponsor.expires_at)}.", f"/teams/{sponsor.team_id}",
                   team_ids=(sponsor.team_id,))


@about(TeamPromotion, "promotion_id")
def promotion_started(promotion, payload) -> Message:
    return Message(f"Promotion live: {promotion.title}", f"Runs until {_when(promotion.ends_at)}.",
                   f"/teams/{promotion.team_id}", team_ids=(promotion.team_id,))


def payout_received(payload) -> Message:
    user_id, team_id, tournament_id = payload["user_id"], payload.get("team_id"), payload.get("tournament_id")
    place, amount = payload.get("place"), payload["amount"]
    tournament = db.session.get(Tournament, tournament_id) if tournament_id else None
    team = db.session.get(Team, team_id) if team_id else None
    where = f" in {tournament.name}" if tournament else ""
    placed = f"{team.name} placed #{place}{where}. " if team and place else ""
    return Message(f"You received {amount} coins", f"{placed}{amount} coins were added to your balance.",
                   f"/tournaments/{tournament_id}" if tournament_id else None,
                   team_ids=(team_id,) if team_id else (), user_ids=(user_id,), tournament_id=tournament_id)


def _placing(payout) -> str:
    return f"{payout.team.name} placed #{payout.place} in {payout.tournament.name}."


@about(Payout, "payout_id")
def payout_awaiting_approval(payout, payload) -> Message:
    """A held payout (PAYOUT_APPROVAL_THRESHOLD): its team's captain hears it is on its way."""
    return Message(f"Payout of {payout.amount} coins awaiting approval",
                   f"{_placing(payout)} Payouts this large are checked by a second admin before the "
                   f"{payout.amount} coins are added to your balance; you will hear when it is decided.",
                   f"/tournaments/{payout.tournament_id}", team_ids=(payout.team_id,))


@about(Payout, "payout_id")
def payout_rejected(payout, payload) -> Message:
    return Message(f"Payout of {payout.amount} coins rejected",
                   f"{_placing(payout)} An admin rejected this payout, so no coins were added. "
                   f"Reason: {payout.reason}", f"/tournaments/{payout.tournament_id}", team_ids=(payout.team_id,))


def api_token_replaced(payload) -> Message:
    """An account-security notice: the player's API token was replaced (by them, or by whoever
    held their token or session)."""
    return Message("Your API token was replaced",
                   "A new API token was made for your account, so the old one stopped working and your "
                   "browser sessions were ended. If this was not you, log in again, log out everywhere and "
                   "tell an admin.",
                   "/settings/notifications", user_ids=(payload["user_id"],))


@about(TeamAchievement, "achievement_id")
def achievement_earned(achievement, payload) -> Message:
    team = achievement.team
    tournament = db.session.get(Tournament, achievement.tournament_id) if achievement.tournament_id else None
    return Message(f"{team.name} earned {achievement.kind}",
                   f"Earned in {tournament.name}." if tournament else f"Well played, {team.name}.",
                   f"/teams/{team.id}", team_ids=(team.id,), tournament_id=achievement.tournament_id)


def as_written(payload) -> Message:
    """An announcement: the sender's own words, to the users it names (all when none)."""
    return Message(payload["title"], payload.get("body") or "", payload.get("url"),
                   user_ids=tuple(payload.get("user_ids") or ()))


def webhook_disabled(payload) -> Message | None:
    """A Discord webhook that no longer exists was switched off: tell whoever set it
    (the player, or the team's captain), once per webhook URL."""
    if payload.get("team_id"):
        team = db.session.get(Team, payload["team_id"])
        if team is None:
            return None
        return Message(f"The Discord webhook of team {team.name} was switched off",
                       "Discord says the team's webhook no longer exists, so we stopped posting team news to it. "
                       "Set a new one for the team to get Discord posts again.",
                       f"/teams/{team.id}", user_ids=(team.captain_id,),
                       dedup_key=f"webhook_disabled:team:{team.id}:{payload.get('url_digest')}")
    return Message("Your Discord webhook was switched off",
                   "Discord says the webhook you set for your notifications no longer exists, so we stopped "
                   "posting to it. Set a new one in your notification settings to get Discord posts again.",
                   "/settings/notifications", user_ids=(payload["user_id"],),
                   dedup_key=f"webhook_disabled:user:{payload['user_id']}:{payload.get('url_digest')}")
