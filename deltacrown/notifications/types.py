"""The one registry of notification types.

Everything that knows about types reads it from here: the preference model's
defaults, the API's validation, the preference editor's rows, the email icon
and the Discord colour. Adding a type is one entry in `_TYPES`.
"""
from __future__ import annotations

from dataclasses import dataclass

IN_APP = "in_app"
EMAIL = "email"
DISCORD = "discord"
CHANNELS = (IN_APP, EMAIL, DISCORD)
CHANNEL_LABELS = {IN_APP: "In-app", EMAIL: "Email", DISCORD: "Discord"}


@dataclass(frozen=True)
class NotificationType:
    name: str
    label: str
    description: str
    default_channels: tuple[str, ...]
    icon: str  # a single emoji: readable in email, Discord and the center alike
    colour: int  # Discord embed colour
    public: bool = False  # also posted to the platform webhook (DISCORD_WEBHOOK_URL)
    team_event: bool = False  # also posted once to the team's webhook, if it has one


_TYPES = (
    NotificationType("invite_sent", "Team invite", "A team invited you to join.",
                     (IN_APP, EMAIL), "✉️", 0x5865F2),
    NotificationType("invite_accepted", "Invite accepted", "A player accepted your team's invite.",
                     (IN_APP, EMAIL), "🤝", 0x57F287, team_event=True),
    NotificationType("roster_changed", "Roster change", "Someone joined or left your team.",
                     (IN_APP,), "👥", 0x99AAB5, team_event=True),
    NotificationType("tournament_registered", "Tournament registration", "Your team entered a tournament.",
                     (IN_APP, EMAIL), "📝", 0x3498DB, team_event=True),
    NotificationType("match_scheduled", "Match scheduled", "Your team has a new match on the calendar.",
                     (IN_APP, EMAIL), "📅", 0x3498DB, team_event=True),
    NotificationType("match_result", "Match result", "The final score of your team's match.",
                     (IN_APP, EMAIL), "🏁", 0xE67E22, public=True, team_event=True),
    NotificationType("bracket_ready", "Bracket ready", "A tournament you entered has its bracket.",
                     (IN_APP, EMAIL), "🗂️", 0x9B59B6, public=True),
    NotificationType("ranking_changed", "Ranking change", "Your team moved in the rankings.",
                     (IN_APP,), "📈", 0x1ABC9C, team_event=True),
    NotificationType("sponsor_approved", "Sponsor approved", "A sponsorship for your team was approved.",
                     (IN_APP, EMAIL), "💼", 0xF1C40F, team_event=True),
    NotificationType("promotion_started", "Promotion started", "A promotion for your team went live.",
                     (IN_APP,), "📣", 0xE91E63, team_event=True),
    NotificationType("payout_received", "Payout received", "You were paid coins for a tournament placing.",
                     (IN_APP, EMAIL), "🪙", 0xF1C40F, public=True),
    NotificationType("achievement_earned", "Achievement earned", "Your team earned an achievement.",
                     (IN_APP, EMAIL), "🏆", 0xFFD700, public=True, team_event=True),
    NotificationType("announcement", "Announcement", "News from the DeltaCrown team.",
                     (IN_APP, EMAIL), "📢", 0xED4245, public=True),
    NotificationType("webhook_disabled", "Discord webhook switched off",
                     "A Discord webhook you set up stopped existing, so we stopped posting to it.",
                     (IN_APP,), "⚠️", 0x95A5A6),
)

NOTIFICATION_TYPES: dict[str, NotificationType] = {t.name: t for t in _TYPES}
TYPE_NAMES: tuple[str, ...] = tuple(NOTIFICATION_TYPES)


def get_type(name: str) -> NotificationType:
    try:
        return NOTIFICATION_TYPES[name]
    except KeyError:
        raise ValueError(f"unknown notification type {name!r}") from None


def default_channels() -> dict[str, list[str]]:
    return {t.name: list(t.default_channels) for t in _TYPES}
