"""What a player is told (Notification), how they want it (NotificationPreference),
what went out on each channel (Delivery), and their daily digests."""
from __future__ import annotations

from datetime import date, datetime, time

from sqlalchemy import (JSON, Boolean, CheckConstraint, Column, Date, ForeignKey, Index, String,
                        Table, Text, Time, UniqueConstraint, select, text)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..dbutil import sql_in
from ..extensions import db
from ..timeutil import UTCDateTime, utcnow
from .types import CHANNELS, DISCORD, EMAIL, IN_APP, NOTIFICATION_TYPES

# bounced: the receiving server refused the address (a 5xx at RCPT/DATA) or a bounce came back
# for it later; suppressed: not sent because the address is on the suppression list.
DELIVERY_STATUSES = ("pending", "sent", "failed", "bounced", "suppressed", "skipped")
DEFAULT_DIGEST_TIME = time(8, 0)


class Notification(db.Model):
    __tablename__ = "notifications"
    __table_args__ = (
        # "a user's newest first" and "a user's unread" (keyset pagination on id).
        Index("ix_notifications_user_id_id", "user_id", "id"),
        Index("ix_notifications_user_id_is_read_id", "user_id", "is_read", "id"),
        # The snooze sweep (every minute) finds the few snoozed rows without reading them all.
        Index("ix_notifications_snoozed_until", "snoozed_until"),
        # The nav badge's count of unseen ones, on every page: read from this index alone.
        Index("ix_notifications_unseen", "user_id", "snoozed_until",
              postgresql_where=text("seen_at IS NULL AND archived_at IS NULL"),
              sqlite_where=text("seen_at IS NULL AND archived_at IS NULL")),
        # A handler that runs twice for the same source writes nothing new.
        UniqueConstraint("user_id", "dedup_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))  # a registry type (types.py), checked by the fan-out
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text, default="")
    url: Mapped[str | None] = mapped_column(String(500))
    is_read: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # What produced it, e.g. "event:42" or "announcement:7"; unique per user.
    dedup_key: Mapped[str | None] = mapped_column(String(100))
    # The row it is about, for a type that declares actions (invite_sent: the invite's id);
    # its type says which table. No foreign key: it names different tables per type, and a
    # notification outlives what it reports (an action on a missing subject is refused).
    subject_id: Mapped[int | None] = mapped_column()
    # Attention: seen = shown to the user (the badge counts unseen); read = opened or marked
    # read; archived = put away (out of the default list); snoozed = hidden from lists and
    # counts until then, when it comes back unread and unseen.
    seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    snoozed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user = relationship("User")

    # The actions that still apply, filled in by center.attach_actions (not a column).
    available_actions: tuple = ()


class NotificationPreference(db.Model):
    """One row per user. `channels` holds the player's choice per type; a type
    missing from it falls back to the registry's default channels."""

    __tablename__ = "notification_preferences"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    channels: Mapped[dict] = mapped_column(JSON, default=dict)
    opt_out_email: Mapped[bool] = mapped_column(Boolean, default=False)
    opt_out_in_app: Mapped[bool] = mapped_column(Boolean, default=False)
    opt_out_discord: Mapped[bool] = mapped_column(Boolean, default=False)
    enable_daily_digest: Mapped[bool] = mapped_column(Boolean, default=True)
    digest_time: Mapped[time] = mapped_column(Time, default=DEFAULT_DIGEST_TIME)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    discord_webhook_url: Mapped[str | None] = mapped_column(String(500))
    # Quiet hours in the user's zone (both set or both None; may span midnight): emails and
    # personal Discord messages falling inside are held until the end, critical types excepted.
    quiet_hours_start: Mapped[time | None] = mapped_column(Time)
    quiet_hours_end: Mapped[time | None] = mapped_column(Time)
    # Send an email only if its in-app copy is still unseen after this many minutes (0: at once).
    email_after_unseen_minutes: Mapped[int] = mapped_column(default=0, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    user = relationship("User")

    @classmethod
    def get_or_create_for_user(cls, user) -> "NotificationPreference":
        """The user's preferences, created with defaults (in the session) if missing."""
        pref = db.session.scalar(select(cls).where(cls.user_id == user.id))
        if pref is None:
            pref = cls(user_id=user.id, channels={}, timezone=user.timezone or "UTC",
                       opt_out_email=False, opt_out_in_app=False, opt_out_discord=False,
                       enable_daily_digest=True, digest_time=DEFAULT_DIGEST_TIME)
            db.session.add(pref)
        return pref

    def chosen_channels(self, type_name: str) -> list[str]:
        """The channels the player picked for a type, before global opt-outs."""
        return chosen_channels(self.channels, type_name)

    def get_channels_for_type(self, type_name: str) -> list[str]:
        """The channels a notification of this type goes to; global opt-outs win."""
        return channels_for_type(type_name, self.channels, self.opt_out_in_app, self.opt_out_email,
                                 self.opt_out_discord)


# The same rules on plain column values, for the fan-out, which reads preferences as rows
# (building an ORM object per recipient was a third of an announcement's time).
def chosen_channels(channels: dict | None, type_name: str) -> list[str]:
    chosen = (channels or {}).get(type_name)
    if chosen is None:
        chosen = NOTIFICATION_TYPES[type_name].default_channels
    return [c for c in CHANNELS if c in chosen]


def channels_for_type(type_name: str, channels: dict | None, opt_out_in_app, opt_out_email,
                      opt_out_discord) -> list[str]:
    """Global opt-outs win over the per-type choice. A user without a preference row
    (all None) has the registry defaults."""
    opted_out = {IN_APP: bool(opt_out_in_app), EMAIL: bool(opt_out_email), DISCORD: bool(opt_out_discord)}
    if NOTIFICATION_TYPES[type_name].critical:
        opted_out[IN_APP] = False
        return [c for c in CHANNELS if (c == IN_APP or c in chosen_channels(channels, type_name)) and not opted_out[c]]
    return [c for c in chosen_channels(channels, type_name) if not opted_out[c]]


class NotificationPreferenceChange(db.Model):
    """Audit trail: every change of preferences, what changed and the path it came by."""

    __tablename__ = "notification_preference_changes"
    __table_args__ = (Index("ix_notification_preference_changes_user_id_id", "user_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(32))  # "editor", "api", "unsubscribe", ...
    changes: Mapped[dict] = mapped_column(JSON)  # {field: [old, new]}
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


notification_digest_items = Table(
    "notification_digest_items",
    db.Model.metadata,
    Column("digest_id", ForeignKey("notification_digests.id", ondelete="CASCADE"), primary_key=True),
    Column("notification_id", ForeignKey("notifications.id", ondelete="CASCADE"), primary_key=True),
)


class NotificationDigest(db.Model):
    __tablename__ = "notification_digests"
    __table_args__ = (UniqueConstraint("user_id", "digest_date"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    digest_date: Mapped[date] = mapped_column(Date)  # the user's local date
    is_sent: Mapped[bool] = mapped_column(Boolean, default=False)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    notifications = relationship("Notification", secondary=notification_digest_items)


class Delivery(db.Model):
    """One message on one external channel to one target: the delivery ledger.

    Usually tied to a notification (a player's email or personal webhook); team and
    platform webhook posts are per event, so they carry the event and a payload.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        CheckConstraint(sql_in("status", DELIVERY_STATUSES), name="status"),
        CheckConstraint(sql_in("channel", CHANNELS), name="channel"),
        Index("ix_deliveries_channel_status", "channel", "status"),
        # The delivery rates of the last 24 hours / 7 days (ops), and retention, read by age.
        Index("ix_deliveries_created_at", "created_at"),
        # Partial: the minute sweeps of sends whose job was lost (held and never tried) read the
        # few pending rows, however long the sent history grows.
        Index("ix_deliveries_pending", "created_at", postgresql_where=text("status = 'pending'"),
              sqlite_where=text("status = 'pending'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # e.g. "n:12:email:alice@example.com" or "e:7:discord:team:3"; unique so that
    # creating the same delivery twice is impossible.
    dedup_key: Mapped[str] = mapped_column(String(300), unique=True)
    notification_id: Mapped[int | None] = mapped_column(ForeignKey("notifications.id", ondelete="CASCADE"), index=True)
    # Indexed: the event's deliveries are looked up when it is handled, and deleting an
    # old event (retention) makes PostgreSQL find the rows that reference it.
    event_id: Mapped[int | None] = mapped_column(ForeignKey("outbox_events.id", ondelete="SET NULL"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(500))  # address, or webhook owner like "team:3"
    payload: Mapped[dict | None] = mapped_column(JSON)  # type/title/body/url when no notification
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    # When it was last claimed for a send: a retry is due from then (service._resend_lost_retries).
    last_tried_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    external_id: Mapped[str | None] = mapped_column(String(100))  # e.g. Discord message id
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Not before this time (quiet hours, or an email waiting to see whether the in-app copy
    # is seen first); None: at once.
    send_after: Mapped[datetime | None] = mapped_column(UTCDateTime)

    notification = relationship("Notification")


class Mute(db.Model):
    """A user silencing a team or a tournament until `until` (None: until unmuted). While it
    lasts, notifications about it are written in-app already seen and not sent by email or
    personal Discord."""

    __tablename__ = "mutes"
    __table_args__ = (
        CheckConstraint("(team_id IS NULL) <> (tournament_id IS NULL)", name="one_subject"),
        Index("ix_mutes_user_id", "user_id"),
        # One mute per player and subject, whoever races to write it (a NULL is never equal, so
        # a tournament's mute does not collide with another tournament's over team_id).
        Index("uq_mutes_user_team", "user_id", "team_id", unique=True),
        Index("uq_mutes_user_tournament", "user_id", "tournament_id", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    tournament_id: Mapped[int | None] = mapped_column(ForeignKey("tournaments.id", ondelete="CASCADE"))
    until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# --- email suppression: addresses that bounced or complained -----------------------

SUPPRESSION_REASONS = ("bounce", "soft_bounce", "complaint")
EMAIL_EVENT_KINDS = ("bounce", "complaint")


class EmailSuppression(db.Model):
    """An address that gets no email: it bounced (permanently, or softly three times in a week:
    then `until` a week later) or its owner complained. Lifted by an admin, or by the user
    changing their address; the row stays as history (`lifted_at`)."""

    __tablename__ = "email_suppressions"
    __table_args__ = (
        CheckConstraint(sql_in("reason", SUPPRESSION_REASONS), name="reason"),
        # At most one unlifted row per address: two bounces racing each other cannot list it twice.
        Index("uq_email_suppressions_active_email", "email", unique=True,
              sqlite_where=text("lifted_at IS NULL"), postgresql_where=text("lifted_at IS NULL")),
        Index("ix_email_suppressions_user_id", "user_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254))  # lower case
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    reason: Mapped[str] = mapped_column(String(16))
    code: Mapped[str | None] = mapped_column(String(32))  # SMTP reply or DSN status, e.g. "550 5.1.1"
    detail: Mapped[str | None] = mapped_column(Text)  # the server's words
    source: Mapped[str] = mapped_column(String(16))  # smtp, dsn, arf, api
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    until: Mapped[datetime | None] = mapped_column(UTCDateTime)  # None: until lifted
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lifted_by: Mapped[str | None] = mapped_column(String(100))  # "admin:3", "address changed", "expired"


class EmailEvent(db.Model):
    """One bounce or complaint, recorded once (`dedup_key` unique: the same report twice is one
    event): the ledger the bounce and complaint rates are counted from."""

    __tablename__ = "email_events"
    __table_args__ = (
        CheckConstraint(sql_in("kind", EMAIL_EVENT_KINDS), name="kind"),
        Index("ix_email_events_created_at", "created_at"),
        Index("ix_email_events_email_created_at", "email", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(300), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    permanent: Mapped[bool] = mapped_column(Boolean, default=True)
    email: Mapped[str] = mapped_column(String(254))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # What it is about (no foreign keys: retention deletes deliveries and digests, the ledger stays).
    delivery_id: Mapped[int | None] = mapped_column()
    digest_id: Mapped[int | None] = mapped_column()
    source: Mapped[str] = mapped_column(String(16))  # smtp, dsn, arf, api
    code: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DiscordCard(db.Model):
    """One Discord message that is edited in place instead of posted again (cards.py): a
    match's card on each of its teams' webhooks, a tournament's standings on the platform's."""

    __tablename__ = "discord_cards"
    __table_args__ = (UniqueConstraint("card_key", "target"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    card_key: Mapped[str] = mapped_column(String(100))  # "match:<id>" or "standings:<tournament id>"
    target: Mapped[str] = mapped_column(String(50))  # "team:<id>" or "platform"
    # The webhook it was posted to (sha256 of the URL, cut): a new webhook gets a new card.
    webhook_digest: Mapped[str | None] = mapped_column(String(64))
    message_id: Mapped[str | None] = mapped_column(String(100))
    content_digest: Mapped[str | None] = mapped_column(String(64))  # what it shows: no edit if unchanged
    posts: Mapped[int] = mapped_column(default=0)
    edits: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
