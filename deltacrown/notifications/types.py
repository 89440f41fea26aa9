"""The one registry of notification types: a type is declared by its entry in `_TYPES`.

An entry holds everything about a type: label and description (preference editor,
center), default channels, email icon, Discord colour, the public / team_event
flags (platform and team webhook posts), who receives it (`audience`), what it
says (`compose`, payload -> title/body/url; composers.py) and what the player can do
about it right where they read it (`actions` on its `subject`; actions.py).
Everything that knows about types reads it from here.

The database does not list the types (no CHECK constraint on `notifications.type`):
the fan-out engine refuses a type that is not in this registry, so adding a type is
one entry here and no migration. A type is never removed while notifications of it
exist; retiring one means a data migration for its rows first.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import actions, composers
from .actions import Action, Subject
from .composers import EVERYONE, ROSTER, TEAM_CAPTAINS, TEAM_MEMBERS, THE_USERS, Audience, Message

IN_APP = "in_app"
EMAIL = "email"
DISCORD = "discord"
CHANNELS = (IN_APP, EMAIL, DISCORD)
CHANNEL_LABELS = {IN_APP: "In-app", EMAIL: "Email", DISCORD: "Discord"}


@dataclass(frozen=True, kw_only=True)
class NotificationType:
    name: str
    label: str
    description: str
    default_channels: tuple[str, ...]
    icon: str  # a single emoji: readable in email, Discord and the center alike
    colour: int  # Discord embed colour
    audience: Audience  # who receives it
    compose: Callable[[dict], Message | None]  # payload -> what it says (None: nothing to say)
    public: bool = False  # also posted to the platform webhook (DISCORD_WEBHOOK_URL)
    team_event: bool = False  # also posted once to the team's webhook, if it has one
    # Critical: cannot be silenced entirely. Always written in-app (opt-outs and mutes do not
    # stop it, the API refuses to remove in_app from it), never held by quiet hours.
    critical: bool = False
    critical_reason: str = ""  # why, shown beside the locked box in the preference editor
    # Buttons on the notification (center, API, email), acting on its subject (Notification.subject_id,
    # set by the composer); offered only while the subject is open (`subject.open_ids`).
    actions: tuple[Action, ...] = ()
    subject: Subject | None = None

    def action(self, name: str) -> Action | None:
        return next((a for a in self.actions if a.name == name), None)


_TYPES = (
    NotificationType(name="invite_sent", label="Team invite", description="A team invited you to join.",
                     default_channels=(IN_APP, EMAIL), icon="✉️", colour=0x5865F2,
                     audience=THE_USERS, compose=composers.invite_sent,
                     actions=actions.INVITE_ACTIONS, subject=actions.INVITE),
    NotificationType(name="invite_accepted", label="Invite accepted",
                     description="A player accepted your team's invite.",
                     default_channels=(IN_APP, EMAIL), icon="🤝", colour=0x57F287, team_event=True,
                     audience=TEAM_CAPTAINS, compose=composers.invite_accepted),
    NotificationType(name="roster_changed", label="Roster change", description="Someone joined or left your team.",
                     default_channels=(IN_APP,), icon="👥", colour=0x99AAB5, team_event=True,
                     audience=ROSTER, compose=composers.roster_changed),
    NotificationType(name="tournament_registered", label="Tournament registration",
                     description="Your team entered a tournament.",
                     default_channels=(IN_APP, EMAIL), icon="📝", colour=0x3498DB, team_event=True,
                     audience=TEAM_MEMBERS, compose=composers.tournament_registered),
    NotificationType(name="match_scheduled", label="Match scheduled",
                     description="Your team has a new match on the calendar.",
                     default_channels=(IN_APP, EMAIL), icon="📅", colour=0x3498DB, team_event=True,
                     audience=TEAM_MEMBERS, compose=composers.match_scheduled),
    NotificationType(name="match_reminder", label="Match reminder",
                     description="Your team's match starts soon (sent once, before the match; it follows reschedules).",
                     default_channels=(IN_APP, EMAIL), icon="⏰", colour=0xF39C12, team_event=True,
                     audience=TEAM_MEMBERS, compose=composers.match_reminder),
    NotificationType(name="match_result", label="Match result", description="The final score of your team's match.",
                     default_channels=(IN_APP, EMAIL), icon="🏁", colour=0xE67E22, public=True, team_event=True,
                     audience=TEAM_MEMBERS, compose=composers.match_result),
    NotificationType(name="bracket_ready", label="Bracket ready",
                     description="A tournament you entered has its bracket.",
                     default_channels=(IN_APP, EMAIL), icon="🗂️", colour=0x9B59B6, public=True,
                     audience=TEAM_MEMBERS, compose=composers.bracket_ready),
    NotificationType(name="ranking_changed", label="Ranking change", description="Your team moved in the rankings.",
                     default_channels=(IN_APP,), icon="📈", colour=0x1ABC9C, team_event=True,
                     audience=TEAM_MEMBERS, compose=composers.ranking_changed),
    NotificationType(name="sponsor_approved", label="Sponsor approved",
                     description="A sponsorship for your team was approved.",
                     default_channels=(IN_APP, EMAIL), icon="💼", colour=0xF1C40F, team_event=True,
                     audience=TEAM_MEMBERS, compose=composers.sponsor_approved),
    NotificationType(name="promotion_started", label="Promotion started",
                     description="A promotion for your team went live.",
                     default_channels=(IN_APP,), icon="📣", colour=0xE91E63, team_event=True,
                     audience=TEAM_MEMBERS, compose=composers.promotion_started),
    NotificationType(name="payout_received", label="Payout received",
                     description="You were paid coins for a tournament placing.",
                     default_channels=(IN_APP, EMAIL), icon="🪙", colour=0xF1C40F, public=True,
                     audience=THE_USERS, compose=composers.payout_received, critical=True,
                     critical_reason="Coins were moved on your account: you are always told in the app."),
    NotificationType(name="payout_awaiting_approval", label="Payout awaiting approval",
                     description="A large payout for your team's placing waits for an admin's approval.",
                     default_channels=(IN_APP, EMAIL), icon="⏳", colour=0xF39C12, critical=True,
                     audience=TEAM_CAPTAINS, compose=composers.payout_awaiting_approval,
                     critical_reason="Coins for your team wait on an admin: you are always told in the app."),
    NotificationType(name="payout_rejected", label="Payout rejected",
                     description="An admin rejected a payout for your team's placing, and said why.",
                     default_channels=(IN_APP, EMAIL), icon="🚫", colour=0xE74C3C, critical=True,
                     audience=TEAM_CAPTAINS, compose=composers.payout_rejected,
                     critical_reason="Coins for your team were refused: you are always told in the app."),
    NotificationType(name="achievement_earned", label="Achievement earned",
                     description="Your team earned an achievement.",
                     default_channels=(IN_APP, EMAIL), icon="🏆", colour=0xFFD700, public=True, team_event=True,
                     audience=TEAM_MEMBERS, compose=composers.achievement_earned),
    NotificationType(name="announcement", label="Announcement", description="News from the DeltaCrown team.",
                     default_channels=(IN_APP, EMAIL), icon="📢", colour=0xED4245, public=True,
                     audience=EVERYONE, compose=composers.as_written),
    NotificationType(name="webhook_disabled", label="Discord webhook switched off",
                     description="A Discord webhook you set up stopped existing, so we stopped posting to it.",
                     default_channels=(IN_APP,), icon="⚠️", colour=0x95A5A6,
                     audience=THE_USERS, compose=composers.webhook_disabled, critical=True,
                     critical_reason="A setting of yours stopped working: you are always told in the app."),
    NotificationType(name="api_token_replaced", label="API token replaced",
                     description="A new API token was made for your account (an account-security notice).",
                     default_channels=(IN_APP, EMAIL), icon="🔑", colour=0xED4245,
                     audience=THE_USERS, compose=composers.api_token_replaced, critical=True,
                     critical_reason="It is about your account's security: you are always told in the app."),
)

NOTIFICATION_TYPES: dict[str, NotificationType] = {t.name: t for t in _TYPES}
TYPE_NAMES: tuple[str, ...] = tuple(NOTIFICATION_TYPES)


CRITICAL_TYPES: tuple[str, ...] = tuple(t.name for t in _TYPES if t.critical)


def get_type(name: str) -> NotificationType:
    try:
        return NOTIFICATION_TYPES[name]
    except KeyError:
        raise ValueError(f"unknown notification type {name!r}") from None


def default_channels() -> dict[str, list[str]]:
    return {t.name: list(t.default_channels) for t in _TYPES}
