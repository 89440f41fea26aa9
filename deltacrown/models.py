"""Imports every model so that Alembic and `db.create_all()` see all tables."""
from .accounts.models import User  # noqa: F401
from .dedup import DedupKey  # noqa: F401
from .economy.models import CoinTransaction, Payout  # noqa: F401
from .notifications.models import (Delivery, DiscordCard, EmailEvent, EmailSuppression, Mute,  # noqa: F401
                                   Notification, NotificationDigest, NotificationPreference,
                                   NotificationPreferenceChange)
from .outbox.models import OutboxEvent  # noqa: F401
from .teams.models import (Team, TeamAchievement, TeamInvite, TeamMembership,  # noqa: F401
                           TeamPromotion, TeamSponsor)
from .tournaments.models import Match, MatchReminder, Placement, Registration, Tournament  # noqa: F401
