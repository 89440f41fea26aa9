"""Reading and changing a player's notification preferences.

One schema validates every way in (API, preference editor, unsubscribe link);
every change is recorded in NotificationPreferenceChange with its source, so a
player or support can see why an email stopped.
"""
from __future__ import annotations

import re
from datetime import time
from zoneinfo import ZoneInfo

from marshmallow import Schema, ValidationError, fields, validate, validates
from sqlalchemy import select

from ..accounts.services import TIMEZONES, is_valid_timezone
from ..channels.webhooks import webhook_url_problem
from ..errors import InvalidInput
from ..extensions import db
from ..timeutil import first_zone
from .models import NotificationPreference, NotificationPreferenceChange
from .held import EMAIL_DELAYS
from .types import CHANNELS, CRITICAL_TYPES, IN_APP, NOTIFICATION_TYPES, TYPE_NAMES

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")

SOURCE_API = "api"
SOURCE_EDITOR = "editor"
SOURCE_UNSUBSCRIBE = "unsubscribe"
SOURCE_SYSTEM = "system"  # e.g. a webhook switched off after Discord said it is gone


class PreferencesSchema(Schema):
    """Any subset of the preference fields."""

    channels = fields.Dict(
        keys=fields.String(validate=validate.OneOf(TYPE_NAMES, error="unknown notification type {input!r}")),
        values=fields.List(fields.String(validate=validate.OneOf(CHANNELS, error="unknown channel {input!r}"))),
        metadata={"description": "channels per notification type: in_app, email, discord",
                  # the keys' rule, for the document (OpenAPI 3.0 cannot say it of a map's keys)
                  "properties": {name: {"type": "array", "items": {"type": "string", "enum": list(CHANNELS)}}
                                 for name in TYPE_NAMES},
                  "additionalProperties": False},
    )
    opt_out_email = fields.Boolean()
    opt_out_in_app = fields.Boolean()
    opt_out_discord = fields.Boolean()
    enable_daily_digest = fields.Boolean()
    digest_time = fields.String(metadata={"description": "HH:MM, 24-hour, in `timezone`", "example": "08:00",
                                          "pattern": _HHMM.pattern})
    timezone = fields.String(metadata={"description": "IANA time zone", "example": "Europe/Berlin",
                                       "enum": TIMEZONES})
    discord_webhook_url = fields.String(allow_none=True, metadata={
        "description": "<DISCORD_API_BASE>/webhooks/<id>/<token> (at most 500 characters), or null or \"\" to remove"})

    quiet_hours = fields.Dict(allow_none=True, metadata={
        "description": "hold email and personal Discord sends inside this window of the user's day (it may "
                       "span midnight) until it ends; critical types are not held; null: off",
        "properties": {"start": {"type": "string", "pattern": _HHMM.pattern, "example": "22:00"},
                       "end": {"type": "string", "pattern": _HHMM.pattern, "example": "08:00"}},
        "required": ["start", "end"], "additionalProperties": False})
    email_after_unseen_minutes = fields.Integer(
        strict=True, validate=validate.OneOf(EMAIL_DELAYS, error="must be one of 0, 5, 15, 60, 240"),
        metadata={"description": "send a notification's email only if its in-app copy is still unseen after "
                                 "this many minutes (0: at once)", "enum": list(EMAIL_DELAYS)})

    @validates("quiet_hours")
    def _quiet_hours(self, value, **kwargs):
        if value is None:
            return
        if set(value) != {"start", "end"}:
            raise ValidationError('quiet_hours must be {"start": "HH:MM", "end": "HH:MM"} or null')
        for key in ("start", "end"):
            if not isinstance(value[key], str) or not _HHMM.match(value[key]):
                raise ValidationError(f"quiet_hours.{key} must be HH:MM between 00:00 and 23:59")
        if value["start"] == value["end"]:
            raise ValidationError("quiet_hours: start and end must differ")

    @validates("digest_time")
    def _digest_time(self, value, **kwargs):
        if not _HHMM.match(value or ""):
            raise ValidationError("digest_time must be HH:MM between 00:00 and 23:59")

    @validates("timezone")
    def _timezone(self, value, **kwargs):
        if not is_valid_timezone(value or ""):
            raise ValidationError(f"unknown IANA time zone {value!r}")

    @validates("discord_webhook_url")
    def _webhook(self, value, **kwargs):
        if value is not None and value != "":
            problem = webhook_url_problem(value)
            if problem:
                raise ValidationError(problem)


def shown_channels(pref: NotificationPreference, type_name: str) -> list[str]:
    """The channels of a type as the player sees them: a critical type's always hold in_app."""
    chosen = pref.chosen_channels(type_name)
    if type_name in CRITICAL_TYPES and IN_APP not in chosen:
        chosen = [c for c in CHANNELS if c == IN_APP or c in chosen]
    return chosen


def serialize_preferences(pref: NotificationPreference) -> dict:
    return {
        "critical": list(CRITICAL_TYPES),
        "channels": {name: shown_channels(pref, name) for name in TYPE_NAMES},
        "opt_out_email": pref.opt_out_email,
        "opt_out_in_app": pref.opt_out_in_app,
        "opt_out_discord": pref.opt_out_discord,
        "enable_daily_digest": pref.enable_daily_digest,
        "digest_time": pref.digest_time.strftime("%H:%M"),
        "timezone": pref.timezone,
        "discord_webhook_url": pref.discord_webhook_url,
        "quiet_hours": None if pref.quiet_hours_start is None or pref.quiet_hours_end is None else
        {"start": pref.quiet_hours_start.strftime("%H:%M"), "end": pref.quiet_hours_end.strftime("%H:%M")},
        "email_after_unseen_minutes": pref.email_after_unseen_minutes or 0,
    }


def validate_preferences(data: dict) -> dict:
    """Validate raw input with the schema; raises InvalidInput naming each bad field."""
    try:
        return PreferencesSchema().load(data, partial=True)
    except ValidationError as exc:
        fields_ = {k: (v[0] if isinstance(v, list) and v and isinstance(v[0], str) else v)
                   for k, v in exc.messages.items()}
        raise InvalidInput("Invalid preferences: " + ", ".join(sorted(fields_)), fields=fields_) from None


def critical_problems(channels: dict) -> dict[str, str]:
    """{"channels.<type>": why} for each critical type whose channels leave out in_app."""
    return {f"channels.{name}": f"in_app cannot be removed from {NOTIFICATION_TYPES[name].label}: "
                                f"{NOTIFICATION_TYPES[name].critical_reason}"
            for name, chosen in channels.items() if name in CRITICAL_TYPES and IN_APP not in chosen}


def update_preferences(user, changes: dict, source: str) -> NotificationPreference:
    """Apply validated `changes` (any subset), record what changed, and commit.

    `changes` is validated here too, so callers cannot skip validation. Removing in_app from
    a critical type is refused (InvalidInput naming `channels.<type>`) and nothing is written.
    """
    changes = validate_preferences(changes)
    if problems := critical_problems(changes.get("channels") or {}):
        raise InvalidInput("Invalid preferences: " + ", ".join(sorted(problems)), fields=problems)
    pref = NotificationPreference.get_or_create_for_user(user)
    before = serialize_preferences(pref)
    if "channels" in changes:
        merged = dict(pref.channels or {})
        for type_name, chosen in changes["channels"].items():
            merged[type_name] = [c for c in CHANNELS if c in set(chosen)]
        pref.channels = merged
    for flag in ("opt_out_email", "opt_out_in_app", "opt_out_discord", "enable_daily_digest", "timezone"):
        if flag in changes:
            setattr(pref, flag, changes[flag])
    if "digest_time" in changes:
        hours, minutes = map(int, changes["digest_time"].split(":"))
        pref.digest_time = time(hours, minutes)
    if "discord_webhook_url" in changes:
        pref.discord_webhook_url = changes["discord_webhook_url"] or None
    if "quiet_hours" in changes:
        window = changes["quiet_hours"]
        pref.quiet_hours_start, pref.quiet_hours_end = (None, None) if window is None else (
            _clock(window["start"]), _clock(window["end"]))
    if "email_after_unseen_minutes" in changes:
        pref.email_after_unseen_minutes = changes["email_after_unseen_minutes"]
    after = serialize_preferences(pref)
    diff = {}
    for key in after:
        if key == "critical":
            continue
        if key == "channels":
            for type_name in TYPE_NAMES:
                old, new = before["channels"][type_name], after["channels"][type_name]
                if old != new:
                    diff[f"channels.{type_name}"] = [old, new]
        elif before[key] != after[key]:
            diff[key] = [before[key], after[key]]
    if diff:
        db.session.add(NotificationPreferenceChange(user_id=user.id, source=source, changes=diff))
    db.session.commit()
    return pref


def _clock(hhmm: str) -> time:
    hours, minutes = map(int, hhmm.split(":"))
    return time(hours, minutes)


def recent_changes(user, limit: int = 5) -> list[NotificationPreferenceChange]:
    from sqlalchemy import select

    return list(db.session.scalars(
        select(NotificationPreferenceChange).where(NotificationPreferenceChange.user_id == user.id)
        .order_by(NotificationPreferenceChange.id.desc()).limit(limit)))


def user_zone(user, preference_zone: str | None = ...) -> ZoneInfo:
    """The zone every time shown to `user` is in: the one chosen in the notification
    preferences, else the account's, else UTC (unknown names are passed over).

    Callers that already read the preference's zone (a batch) pass it as
    `preference_zone` and save the query.
    """
    if preference_zone is ...:
        preference_zone = db.session.scalar(select(NotificationPreference.timezone)
                                            .where(NotificationPreference.user_id == user.id))
    return first_zone(preference_zone, getattr(user, "timezone", None))
