"""Discord cards: a message that is edited in place instead of posted again.

- A match has one card on each of its teams' webhooks: posted (`?wait=true`, its id kept)
  when the match is scheduled, edited (`PATCH {webhook}/messages/{id}`) when it is
  rescheduled and when it gets its result (score, winner, another colour). Deliveries of
  match_scheduled / match_rescheduled / match_result to a team webhook carry
  `payload["card"] = "match:<id>"` (the fan-out puts it there, service.py).
- A tournament has one standings card on the platform webhook, edited after each rankings
  recompute (`standings_updated`; match_updates.py: `queue_standings_card`). The platform's public results
  feed stays new posts.

What a card shows is rendered from the current state of its subject at send time, not from
the event that caused the send, so sends that overtake one another (a retry, two batches)
still end on the latest state; an edit that would change nothing is not made. A per-card
Redis lock keeps two sends of one card from posting it twice. A card whose message was
deleted in Discord (404 Unknown Message on the edit) is posted afresh and its new id kept;
a webhook that is gone (404 Unknown Webhook, 401) raises for the usual switch-off path
(deliveries.py). A new webhook URL for the team gets a new card.
"""
from __future__ import annotations

import hashlib
import json
import time
import uuid

from flask import current_app
from sqlalchemy import select

from ..channels import discord as discord_channel
from ..dbutil import insert_ignoring_duplicates
from ..extensions import db
from ..queue import get_redis
from ..timeutil import utcnow
from ..tournaments.models import Match, Tournament
from ..tournaments.rankings import tournament_standings
from .composers import _when, match_path
from .content import ChannelMessage
from .models import DiscordCard

LOCK_SECONDS = 120  # longer than one card's edit, repost and their rate-limit waits
LOCK_WAIT_SECONDS = 10
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class CardBusy(Exception):
    """Another send holds this card right now (retry later)."""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:64]


# --- what a card shows ---------------------------------------------------------------

def render_card(card_key: str) -> ChannelMessage | None:
    """The card as its subject is now (None: the subject is gone)."""
    kind, _, ident = (card_key or "").partition(":")
    if not ident.isdigit():
        return None
    if kind == "match":
        match = db.session.get(Match, int(ident))
        return None if match is None else _match_card(match)
    if kind == "standings":
        tournament = db.session.get(Tournament, int(ident))
        return None if tournament is None else _standings_card(tournament)
    return None


def _match_card(match: Match) -> ChannelMessage:
    a, b = match.team_a.name, match.team_b.name
    if match.status == "completed":
        outcome = "Draw." if match.winner_id is None else f"{a if match.winner_id == match.team_a_id else b} won."
        return ChannelMessage(type="match_result", title=f"{a} {match.score_a} : {match.score_b} {b}",
                              body=f"{match.tournament.name}. {outcome}", url=match_path(match),
                              created_at=match.scheduled_at,
                              fields=({"name": "Played", "value": _when(match.scheduled_at), "inline": True},
                                      {"name": "Result", "value": "Final", "inline": True}))
    return ChannelMessage(type="match_scheduled", title=f"{a} vs {b}", body=f"{match.tournament.name}.",
                          url=match_path(match), created_at=match.scheduled_at,
                          fields=({"name": "When", "value": _when(match.scheduled_at), "inline": True},
                                  {"name": "Status", "value": "Scheduled", "inline": True}))


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _standings_card(tournament: Tournament) -> ChannelMessage:
    table = tournament_standings(tournament)
    lines = [f"{_ordinal(row['position'])} {row['team'].name}: {row['points']} pts, "
             f"{row['wins']}W {row['draws']}D {row['losses']}L" for row in table]
    state = {"completed": "Final standings", "ongoing": "Standings"}.get(tournament.status, "Standings")
    return ChannelMessage(type="ranking_changed", title=f"{state}: {tournament.name}",
                          body="\n".join(lines) or "No matches played yet.", url=f"/tournaments/{tournament.id}")


# --- the send ------------------------------------------------------------------------

def _lock(key: str):
    redis = get_redis()
    lock_key, token = "dc:discord-card:" + _digest(key), uuid.uuid4().hex
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while not redis.set(lock_key, token, nx=True, ex=LOCK_SECONDS):
        if time.monotonic() > deadline:
            raise CardBusy(f"card {key} is being sent by another job")
        time.sleep(0.1)
    return lambda: redis.eval(_RELEASE, 1, lock_key, token)


def _card_row(card_key: str, target: str) -> DiscordCard:
    now = utcnow()
    insert_ignoring_duplicates(DiscordCard.__table__, [{
        "card_key": card_key, "target": target, "webhook_digest": None, "message_id": None,
        "content_digest": None, "posts": 0, "edits": 0, "created_at": now, "updated_at": now}])
    db.session.commit()
    return db.session.scalar(select(DiscordCard).where(DiscordCard.card_key == card_key,
                                                       DiscordCard.target == target)
                             .execution_options(populate_existing=True))


def send_card(card_key: str, target: str, url: str, fallback: ChannelMessage) -> tuple[str | None, str | None]:
    """Post or edit the card `card_key` on `target`'s webhook `url`: (message id, warning).
    Raises discord_channel.DiscordError (as a post does) or CardBusy."""
    release = _lock(f"{card_key}|{target}")
    try:
        row = _card_row(card_key, target)
        message = render_card(card_key) or fallback
        payload = discord_channel.build_payload(message.discord_embed())
        content = _digest(json.dumps(payload, sort_keys=True))
        hook = _digest(url)
        if row.message_id and row.webhook_digest == hook:
            if row.content_digest == content:
                return row.message_id, None  # it shows this already
            try:
                discord_channel.edit_webhook_message(url, row.message_id, payload)
            except discord_channel.DiscordError as exc:
                if not exc.message_gone:
                    raise
                current_app.logger.info("Discord card %s on %s was deleted: posting it again", card_key, target)
            else:
                row.content_digest, row.edits, row.updated_at = content, row.edits + 1, utcnow()
                db.session.commit()
                return row.message_id, None
        result = discord_channel.post_to_webhook(url, payload)
        row.message_id, row.webhook_digest, row.content_digest = result.message_id, hook, content
        row.posts, row.updated_at = row.posts + 1, utcnow()
        db.session.commit()
        return result.message_id, result.warning
    finally:
        release()
