"""NotificationService: who is told what, on which channels.

Each `notify_<type>` method decides the recipients of one kind of domain change
and words the message; `notify` does the rest for any list of users:

1. reads every recipient's preferences in ONE query per chunk, as plain column
   values (users without a preference row get the registry defaults; no rows are
   created for them);
2. writes the in-app `Notification` rows in one bulk INSERT;
3. writes the `Delivery` rows in one bulk INSERT: per recipient one for email
   (target = their address) and one for Discord (only with a personal webhook,
   target "user:<id>"); and per source ONE Delivery for each team webhook
   (types flagged `team_event`, team has a webhook, target "team:<id>") and for
   the platform webhook (types flagged `public`, DISCORD_WEBHOOK_URL set,
   target "platform");
4. after commit, enqueues the new deliveries' sends: one `send_deliveries(ids)` job
   per DELIVERY_BATCH_SIZE deliveries (with one RQ job per delivery, job overhead
   dominated an announcement's time; see BENCHMARKS.md).

Rules:
- Opt-outs win: a channel is used only if the recipient chose it for the type
  and has not opted out of it globally (`NotificationPreference.get_channels_for_type`).
- The Notification row IS the in-app message: it is written only when in_app is
  among the recipient's channels. Someone with in_app off but email on gets no
  row in their notification center; their email Delivery carries the content.
  So every Delivery row carries `payload` {type, title, body, url} (and, when
  there is one, `notification_id`): a sender never needs anything else.
- Idempotency: every notification has a `dedup_key` naming its source
  ("event:<outbox id>", "announcement:<id>"), unique per user, and every delivery
  a unique key derived from it ("<source>:<channel>:user:<id>", ":team:<id>",
  ":platform"). Inserts are INSERT .. ON CONFLICT DO NOTHING (PostgreSQL and
  SQLite), so handling the same source twice writes nothing new and never fails.
- URLs are site-relative paths ("/teams/3"); senders prefix PUBLIC_BASE_URL.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import timezone

from flask import current_app
from sqlalchemy import bindparam, cast, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY

from ..accounts.models import User
from ..extensions import db
from ..timeutil import utcnow
from .models import Delivery, Notification, NotificationPreference, channels_for_type
from .types import DISCORD, EMAIL, IN_APP, get_type

log = logging.getLogger(__name__)


def _when(moment) -> str:
    """A time in a message body. Bodies are written once for every recipient, so they say
    UTC explicitly; the center shows the notification's own time in the reader's zone."""
    return moment.astimezone(timezone.utc).strftime("%a %d %b %Y, %H:%M UTC")

CHUNK_SIZE = 2000  # recipients per round of bulk statements (statements are constant per chunk)


@dataclass
class NotifyResult:
    notifications: int = 0
    delivery_ids: list[int] = field(default_factory=list)
    recipients: int = 0


def insert_ignoring_duplicates(table, rows: list[dict], returning=()):
    """Bulk INSERT .. ON CONFLICT DO NOTHING; returns the rows actually inserted (`returning`)."""
    if not rows:
        return []
    if db.session.get_bind().dialect.name == "postgresql":
        stmt, params = _unnest_insert(table, rows), None
    else:  # SQLite: SQLAlchemy's multi-row VALUES (fast there)
        stmt, params = sqlite.insert(table).on_conflict_do_nothing(), rows
    if returning:
        return db.session.execute(stmt.returning(*returning), params).all()
    db.session.execute(stmt, params)
    return []


def _unnest_insert(table, rows: list[dict]):
    """PostgreSQL: INSERT .. SELECT FROM unnest(arrays), one short statement for any number of rows.

    SQLAlchemy's multi-row VALUES for RETURNING puts a placeholder per value in the SQL, and
    psycopg parses such long statements afresh each time (it caches none past 4 KB), which
    dominated a fan-out's time (BENCHMARKS.md). Here values that differ between rows travel as one array
    per column, values shared by every row (type, title, payload, ...) as one parameter.
    """
    varying, constant = [], {}
    first = rows[0]
    for name in first:
        value = first[name]
        if all(row[name] is value or row[name] == value for row in rows):
            if value is not None:  # an omitted column is NULL
                constant[name] = value
        else:
            varying.append(name)
    columns = table.c
    if varying:
        arrays = [cast(bindparam(None, [row[name] for row in rows], type_=ARRAY(columns[name].type)),
                       ARRAY(columns[name].type)) for name in varying]
        source = func.unnest(*arrays).table_valued(*varying).render_derived()
        selected = [source.c[name] for name in varying]
    else:
        source, selected = None, []
    selected += [cast(bindparam(None, value, type_=columns[name].type), columns[name].type)
                 for name, value in constant.items()]
    query = select(*selected)
    if source is None:
        query = query.select_from(select(func.generate_series(1, len(rows))).subquery())
    else:
        query = query.select_from(source)
    return postgresql.insert(table).from_select(varying + list(constant), query, include_defaults=False) \
        .on_conflict_do_nothing()


def recipients_query():
    """(user id, email, channels, opt-out in-app, email, discord, personal webhook) per user;
    the preference columns are NULL for a user without a preference row (= defaults)."""
    pref = NotificationPreference
    return (select(User.id, User.email, pref.channels, pref.opt_out_in_app, pref.opt_out_email,
                   pref.opt_out_discord, pref.discord_webhook_url)
            .outerjoin(pref, pref.user_id == User.id))


def enqueue_sends(delivery_ids) -> None:
    """One send job per batch of deliveries (delivery_jobs.send_deliveries)."""
    from .delivery_jobs import send_deliveries

    batch_size = current_app.config["DELIVERY_BATCH_SIZE"]
    batches = [(batch,) for batch in chunked(list(delivery_ids), batch_size)]
    if batches:
        send_deliveries.enqueue_many(batches)


def chunked(items, size):
    for start in range(0, len(items), size):
        yield items[start:start + size]


class NotificationService:
    """`as_of`: the time of the change being reported (the outbox event's); team
    recipients are the members at that time, not whoever joined since."""

    def __init__(self, as_of=None):
        self.as_of = as_of

    # --- the general path -------------------------------------------------

    def notify(self, user_ids, type: str, title: str, body: str = "", url: str | None = None,
               dedup_key: str | None = None, *, event_id: int | None = None, team_ids=(),
               commit: bool = True, enqueue: bool = True) -> NotifyResult:
        """Notify these users (and the teams' / platform webhook, by the type's flags)."""
        spec = get_type(type)
        dedup_key = dedup_key or f"adhoc:{uuid.uuid4().hex}"
        message = {"type": spec.name, "title": title[:300], "body": body or "", "url": url}
        result = NotifyResult()
        ids = sorted({int(u) for u in user_ids})
        for chunk in chunked(ids, CHUNK_SIZE):
            rows = db.session.execute(recipients_query().where(User.id.in_(chunk))).all()
            self.write_for_recipients(rows, message, dedup_key, event_id, result)
        self.write_shared_deliveries(message, dedup_key, event_id, team_ids, result)
        if commit:
            db.session.commit()
            if enqueue:
                enqueue_sends(result.delivery_ids)
        return result

    def write_for_recipients(self, rows, message: dict, dedup_key: str, event_id: int | None,
                             result: NotifyResult) -> None:
        """Bulk-write notifications and personal deliveries for (user_id, email, pref) rows.

        Two INSERT statements whatever the number of rows.
        """
        type_name = message["type"]
        now = utcnow()
        notification_rows, channels_by_user, choices = [], {}, {}
        for user_id, email, chosen_map, no_in_app, no_email, no_discord, webhook in rows:
            chosen = (chosen_map or {}).get(type_name)
            # Most recipients share a handful of choices: decide each distinct one once.
            key = (None if chosen is None else tuple(chosen), bool(no_in_app), bool(no_email), bool(no_discord))
            channels = choices.get(key)
            if channels is None:
                channels = choices[key] = channels_for_type(type_name, chosen_map, no_in_app, no_email, no_discord)
            channels_by_user[user_id] = (email, webhook, channels)
            if IN_APP in channels:
                notification_rows.append({"user_id": user_id, "type": type_name, "title": message["title"],
                                          "body": message["body"], "url": message["url"], "is_read": False,
                                          "created_at": now, "read_at": None, "dedup_key": dedup_key})
        # RETURNING: the ids link personal deliveries to their notification, and count only
        # rows really inserted (a retry inserts none; executemany's rowcount is -1 on psycopg).
        inserted = insert_ignoring_duplicates(Notification.__table__, notification_rows,
                                              returning=(Notification.id, Notification.user_id))
        notification_by_user = {user_id: nid for nid, user_id in inserted}
        result.notifications += len(inserted)
        result.recipients += len(rows)

        delivery_rows = []
        for user_id, (email, webhook, channels) in channels_by_user.items():
            targets = []
            if EMAIL in channels and email:
                targets.append((EMAIL, email))
            if DISCORD in channels and webhook:
                targets.append((DISCORD, f"user:{user_id}"))
            for channel, target in targets:
                delivery_rows.append(self._delivery_row(
                    f"{dedup_key}:{channel}:user:{user_id}", channel, target, message, event_id,
                    user_id=user_id, notification_id=notification_by_user.get(user_id), now=now))
        self._insert_deliveries(delivery_rows, result)

    def write_shared_deliveries(self, message: dict, dedup_key: str, event_id: int | None, team_ids,
                                result: NotifyResult) -> None:
        """One Delivery per source for each team webhook and for the platform webhook."""
        from ..teams.models import Team

        spec = get_type(message["type"])
        now = utcnow()
        rows = []
        team_ids = sorted({int(t) for t in team_ids or ()})
        if spec.team_event and team_ids:
            with_webhook = db.session.scalars(select(Team.id).where(
                Team.id.in_(team_ids), Team.discord_webhook_url.is_not(None), Team.discord_webhook_url != ""))
            for team_id in with_webhook:
                rows.append(self._delivery_row(f"{dedup_key}:discord:team:{team_id}", DISCORD, f"team:{team_id}",
                                               message, event_id, now=now))
        if spec.public and current_app.config.get("DISCORD_WEBHOOK_URL"):
            rows.append(self._delivery_row(f"{dedup_key}:discord:platform", DISCORD, "platform", message,
                                           event_id, now=now))
        self._insert_deliveries(rows, result)

    @staticmethod
    def _delivery_row(key, channel, target, message, event_id, user_id=None, notification_id=None, now=None):
        return {"dedup_key": key, "notification_id": notification_id, "event_id": event_id, "user_id": user_id,
                "channel": channel, "target": target, "payload": message, "status": "pending", "attempts": 0,
                "last_error": None, "external_id": None, "created_at": now or utcnow(), "sent_at": None}

    @staticmethod
    def _insert_deliveries(rows, result: NotifyResult) -> None:
        inserted = insert_ignoring_duplicates(Delivery.__table__, rows, returning=(Delivery.id,))
        result.delivery_ids.extend(sorted(r[0] for r in inserted))

    # --- one method per type ------------------------------------------------

    @staticmethod
    def _source(event_id, dedup_key, fallback):
        if dedup_key:
            return dedup_key
        return f"event:{event_id}" if event_id is not None else fallback

    def _team_members(self, *team_ids):
        from ..teams.services import member_ids

        return member_ids(team_ids, as_of=self.as_of)

    def notify_invite_sent(self, invite_id: int, *, event_id=None, dedup_key=None, **kw) -> NotifyResult | None:
        from ..teams.models import TeamInvite

        invite = db.session.get(TeamInvite, invite_id)
        if invite is None:
            return None
        return self.notify([invite.user_id], "invite_sent", f"{invite.team.name} invited you to join",
                           f"{invite.team.name} wants you on the team. Accept or decline the invite.",
                           f"/teams/{invite.team_id}", self._source(event_id, dedup_key, f"invite_sent:{invite_id}"),
                           event_id=event_id, **kw)

    def notify_invite_accepted(self, invite_id: int, *, event_id=None, dedup_key=None, **kw):
        from ..teams.models import TeamInvite

        invite = db.session.get(TeamInvite, invite_id)
        if invite is None:
            return None
        team = invite.team
        return self.notify([team.captain_id], "invite_accepted",
                           f"{invite.user.username} accepted the invite to {team.name}",
                           f"{invite.user.username} is now on {team.name}.", f"/teams/{team.id}",
                           self._source(event_id, dedup_key, f"invite_accepted:{invite_id}"),
                           event_id=event_id, team_ids=[team.id], **kw)

    def notify_roster_change(self, team_id: int, user_id: int, action: str, actor_id: int | None = None, *,
                             event_id=None, dedup_key=None, **kw):
        """The team's members (and the player who was removed), except whoever made the change."""
        from ..teams.models import Team

        team = db.session.get(Team, team_id)
        if team is None:
            return None
        who = db.session.get(User, user_id)
        actor = db.session.get(User, actor_id) if actor_id else None
        name = who.username if who else f"user {user_id}"
        sentence = {
            "joined": f"{name} joined {team.name}.",
            "added": f"{name} was added to {team.name}" + (f" by {actor.username}." if actor else "."),
            "left": f"{name} left {team.name}.",
            "removed": f"{name} was removed from {team.name}" + (f" by {actor.username}." if actor else "."),
        }.get(action, f"{name}: {action} ({team.name}).")
        recipients = set(self._team_members(team.id)) | {user_id}
        recipients.discard(actor_id)
        return self.notify(recipients, "roster_changed", f"Roster change in {team.name}", sentence,
                           f"/teams/{team.id}",
                           self._source(event_id, dedup_key, f"roster_changed:{team_id}:{user_id}:{action}"),
                           event_id=event_id, team_ids=[team.id], **kw)

    def notify_tournament_registration(self, registration_id: int, *, event_id=None, dedup_key=None, **kw):
        from ..tournaments.models import Registration

        reg = db.session.get(Registration, registration_id)
        if reg is None:
            return None
        return self.notify(self._team_members(reg.team_id), "tournament_registered",
                           f"{reg.team.name} is registered for {reg.tournament.name}",
                           f"Starts {_when(reg.tournament.starts_at)}.", f"/tournaments/{reg.tournament_id}",
                           self._source(event_id, dedup_key, f"tournament_registered:{registration_id}"),
                           event_id=event_id, team_ids=[reg.team_id], **kw)

    def notify_match_scheduled(self, match_id: int, *, event_id=None, dedup_key=None, **kw):
        from ..tournaments.models import Match

        match = db.session.get(Match, match_id)
        if match is None:
            return None
        return self.notify(self._team_members(match.team_a_id, match.team_b_id), "match_scheduled",
                           f"Match scheduled: {match.team_a.name} vs {match.team_b.name}",
                           f"{match.tournament.name}, {_when(match.scheduled_at)}.",
                           f"/tournaments/{match.tournament_id}",
                           self._source(event_id, dedup_key, f"match_scheduled:{match_id}"),
                           event_id=event_id, team_ids=[match.team_a_id, match.team_b_id], **kw)

    def notify_match_result(self, match_id: int, *, event_id=None, dedup_key=None, **kw):
        from ..tournaments.models import Match

        match = db.session.get(Match, match_id)
        if match is None or match.status != "completed":
            return None
        a, b = match.team_a.name, match.team_b.name
        outcome = "Draw." if match.winner_id is None else \
            f"{a if match.winner_id == match.team_a_id else b} won."
        return self.notify(self._team_members(match.team_a_id, match.team_b_id), "match_result",
                           f"{a} {match.score_a} : {match.score_b} {b}", f"{match.tournament.name}. {outcome}",
                           f"/tournaments/{match.tournament_id}",
                           self._source(event_id, dedup_key, f"match_result:{match_id}"),
                           event_id=event_id, team_ids=[match.team_a_id, match.team_b_id], **kw)

    def notify_bracket_ready(self, tournament_id: int, *, event_id=None, dedup_key=None, **kw):
        from ..tournaments.models import Tournament
        from ..tournaments.services import registered_team_ids

        tournament = db.session.get(Tournament, tournament_id)
        if tournament is None:
            return None
        team_ids = registered_team_ids(tournament.id)
        return self.notify(self._team_members(*team_ids), "bracket_ready",
                           f"The bracket for {tournament.name} is ready",
                           f"{len(team_ids)} teams are in. Check your first match.",
                           f"/tournaments/{tournament.id}",
                           self._source(event_id, dedup_key, f"bracket_ready:{tournament_id}"),
                           event_id=event_id, team_ids=team_ids, **kw)

    def notify_ranking_changed(self, team_id: int, old_rank: int | None, new_rank: int | None, *,
                               event_id=None, dedup_key=None, **kw):
        from ..teams.models import Team

        team = db.session.get(Team, team_id)
        if team is None:
            return None
        if old_rank is None:
            body = f"{team.name} entered the rankings at #{new_rank}."
        elif new_rank is not None and new_rank < old_rank:
            body = f"{team.name} moved up from #{old_rank} to #{new_rank}."
        else:
            body = f"{team.name} moved from #{old_rank} to #{new_rank}."
        return self.notify(self._team_members(team.id), "ranking_changed", f"{team.name} is now #{new_rank}",
                           body, f"/teams/{team.id}",
                           self._source(event_id, dedup_key, f"ranking_changed:{team_id}:{old_rank}:{new_rank}"),
                           event_id=event_id, team_ids=[team.id], **kw)

    def notify_sponsor_approved(self, sponsor_id: int, *, event_id=None, dedup_key=None, **kw):
        from ..teams.models import TeamSponsor

        sponsor = db.session.get(TeamSponsor, sponsor_id)
        if sponsor is None:
            return None
        return self.notify(self._team_members(sponsor.team_id), "sponsor_approved",
                           f"{sponsor.name} now sponsors {sponsor.team.name}",
                           f"The sponsorship runs until {_when(sponsor.expires_at)}.",
                           f"/teams/{sponsor.team_id}",
                           self._source(event_id, dedup_key, f"sponsor_approved:{sponsor_id}"),
                           event_id=event_id, team_ids=[sponsor.team_id], **kw)

    def notify_promotion_started(self, promotion_id: int, *, event_id=None, dedup_key=None, **kw):
        from ..teams.models import TeamPromotion

        promotion = db.session.get(TeamPromotion, promotion_id)
        if promotion is None:
            return None
        return self.notify(self._team_members(promotion.team_id), "promotion_started",
                           f"Promotion live: {promotion.title}",
                           f"Runs until {_when(promotion.ends_at)}.", f"/teams/{promotion.team_id}",
                           self._source(event_id, dedup_key, f"promotion_started:{promotion_id}"),
                           event_id=event_id, team_ids=[promotion.team_id], **kw)

    def notify_payout_received(self, user_id: int, team_id: int | None = None, tournament_id: int | None = None,
                               place: int | None = None, amount: int = 0, transaction_id: int | None = None, *,
                               event_id=None, dedup_key=None, **kw):
        from ..teams.models import Team
        from ..tournaments.models import Tournament

        tournament = db.session.get(Tournament, tournament_id) if tournament_id else None
        team = db.session.get(Team, team_id) if team_id else None
        where = f" in {tournament.name}" if tournament else ""
        placed = f"{team.name} placed #{place}{where}. " if team and place else ""
        return self.notify([user_id], "payout_received", f"You received {amount} coins",
                           f"{placed}{amount} coins were added to your balance.",
                           f"/tournaments/{tournament_id}" if tournament_id else None,
                           self._source(event_id, dedup_key, f"payout_received:{transaction_id or user_id}"),
                           event_id=event_id, team_ids=[team_id] if team_id else (), **kw)

    def notify_achievement_earned(self, achievement_id: int, *, event_id=None, dedup_key=None, **kw):
        from ..teams.models import TeamAchievement
        from ..tournaments.models import Tournament

        achievement = db.session.get(TeamAchievement, achievement_id)
        if achievement is None:
            return None
        team = achievement.team
        tournament = db.session.get(Tournament, achievement.tournament_id) if achievement.tournament_id else None
        return self.notify(self._team_members(team.id), "achievement_earned",
                           f"{team.name} earned {achievement.kind}",
                           f"Earned in {tournament.name}." if tournament else f"Well played, {team.name}.",
                           f"/teams/{team.id}",
                           self._source(event_id, dedup_key, f"achievement_earned:{achievement_id}"),
                           event_id=event_id, team_ids=[team.id], **kw)
