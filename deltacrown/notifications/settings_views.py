"""The preference editor (/settings/notifications).

The form is converted to the preferences schema's dict (an unchecked box is a
channel switched off) and saved through `update_preferences(..., "editor")`,
which validates everything and records the change. A bad value (a forged type
or channel, "25:99", an unknown zone, a webhook outside DISCORD_API_BASE) is
shown next to its field, nothing is saved: 422 for htmx, the page again without.
"""
from __future__ import annotations

import functools
import math
import time
from zoneinfo import available_timezones

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_limiter.util import get_remote_address
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from sqlalchemy import select

from ..channels.discord import send_test_message
from ..channels.webhooks import webhook_url_problem
from ..accounts.services import change_email
from ..errors import InvalidInput, ServiceError
from ..extensions import db, limiter
from ..timeutil import utcnow
from . import suppression
from .models import NotificationPreference
from .mute_views import muted_list
from .preferences import SOURCE_EDITOR, recent_changes, serialize_preferences, update_preferences, user_zone
from .types import CHANNEL_LABELS, CHANNELS, CRITICAL_TYPES, IN_APP, NOTIFICATION_TYPES, TYPE_NAMES
from .views import exact_time, htmx, page_login_required, refuse_without_csrf

bp = Blueprint("notification_settings", __name__)
bp.register_error_handler(CSRFError, refuse_without_csrf)

OPT_OUT_FIELDS = {channel: f"opt_out_{channel}" for channel in CHANNELS}
CHANNELS_PREFIX = "channels."
RECENT_CHANGES = 5


def init_app(app):
    app.register_blueprint(bp)


@functools.lru_cache(maxsize=1)
def timezone_names() -> list[str]:
    return sorted(available_timezones())


def current_preferences(user) -> NotificationPreference:
    """The saved preferences, or the defaults (not added to the session: a GET writes nothing)."""
    pref = db.session.scalar(select(NotificationPreference).where(NotificationPreference.user_id == user.id))
    if pref is None:
        pref = NotificationPreference.get_or_create_for_user(user)
        db.session.expunge(pref)
    return pref


def form_to_changes(form) -> dict:
    """The editor's form as the schema's dict. Every field of the editor is sent:
    a missing checkbox means "off". Unknown types or channels are passed on, so the
    schema refuses them by name instead of them being dropped silently."""
    channels = {name: [] for name in TYPE_NAMES}
    for key in form:
        if key.startswith(CHANNELS_PREFIX):
            channels[key[len(CHANNELS_PREFIX):]] = form.getlist(key)
    # A critical type's in-app box is locked on: the editor cannot switch it off, whatever a
    # form (an old page, a hand-made post) leaves out. The API refuses it instead (422).
    for name in CRITICAL_TYPES:
        if IN_APP not in channels[name]:
            channels[name] = [IN_APP, *channels[name]]
    changes = {"channels": channels}
    for field in (*OPT_OUT_FIELDS.values(), "enable_daily_digest"):
        changes[field] = field in form
    for field in ("digest_time", "timezone"):
        if field in form:
            changes[field] = form.get(field, "").strip()
    if "discord_webhook_url" in form:
        changes["discord_webhook_url"] = form.get("discord_webhook_url", "").strip() or None
    if "quiet_hours_start" in form or "quiet_hours_end" in form:  # the "When" section
        changes["quiet_hours"] = {"start": form.get("quiet_hours_start", "").strip(),
                                  "end": form.get("quiet_hours_end", "").strip()} \
            if "quiet_hours_on" in form else None
    if "email_after_unseen_minutes" in form:
        raw = form.get("email_after_unseen_minutes", "").strip()
        changes["email_after_unseen_minutes"] = int(raw) if raw.isdigit() and len(raw) < 6 else raw
    return changes


def _flatten_errors(value) -> str:
    """Schema errors can nest (channels → type → key/value); one readable line."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "; ".join(_flatten_errors(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(_flatten_errors(v) for v in value.values())
    return str(value)


def field_errors(exc: InvalidInput) -> dict[str, str]:
    return {name: _flatten_errors(message) for name, message in exc.fields.items()}


def _describe_value(field: str, value) -> str:
    if isinstance(value, list):
        return ", ".join(CHANNEL_LABELS.get(c, c) for c in value) or "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if value in (None, ""):
        return "none"
    if field == "quiet_hours" and isinstance(value, dict):
        return f"{value.get('start')}–{value.get('end')}"
    if field == "discord_webhook_url":
        return "set"  # the token in the URL is a secret; do not print it back
    return str(value)


FIELD_LABELS = {
    "opt_out_email": "Email opt-out", "opt_out_in_app": "In-app opt-out", "opt_out_discord": "Discord opt-out",
    "enable_daily_digest": "Daily digest", "digest_time": "Digest time", "timezone": "Time zone",
    "discord_webhook_url": "Discord webhook", "quiet_hours": "Quiet hours",
    "email_after_unseen_minutes": "Email only if unseen after (minutes)",
}


def describe_change(field: str, old_new) -> str:
    old, new = (list(old_new) + [None, None])[:2]
    if field.startswith(CHANNELS_PREFIX):
        type_name = field[len(CHANNELS_PREFIX):]
        label = NOTIFICATION_TYPES[type_name].label if type_name in NOTIFICATION_TYPES else type_name
        label = f"{label} channels"
    else:
        label = FIELD_LABELS.get(field, field)
    return f"{label}: {_describe_value(field, old)} → {_describe_value(field, new)}"


def suppression_banner(user, zone) -> str | None:
    """Why mail to the user's address stopped, when it is on the suppression list."""
    listed = suppression.active_suppression(user.email)
    if listed is None:
        return None
    address, when = suppression.masked(listed.email), exact_time(listed.created_at, zone)
    if listed.reason == "complaint":
        return (f"Email from us to {address} was reported as spam on {when}, so we stopped sending it. "
                f"Change the address below to get email again.")
    if listed.reason == "soft_bounce" and listed.until is not None:
        return (f"Mail to {address} bounced several times (last on {when}); we try again after "
                f"{exact_time(listed.until, zone)}. Check the address.")
    return f"Mail to {address} bounced on {when}; check the address. Changing it below lets email through again."


def _render(values: dict, errors: dict | None = None, saved_at=None, status: int = 200,
            webhook_result: tuple[str, bool] | None = None, partial: bool = False, email_error: str | None = None):
    user = current_user
    zone = user_zone(user)
    context = {
        "values": values,
        "errors": errors or {},
        "types": NOTIFICATION_TYPES,
        "channels": CHANNELS,
        "channel_labels": CHANNEL_LABELS,
        "opt_out_fields": OPT_OUT_FIELDS,
        "timezones": timezone_names(),
        "changes": recent_changes(user, RECENT_CHANGES),
        "describe_change": describe_change,
        "zone": zone,
        "saved_at": exact_time(saved_at, zone) if saved_at else None,
        "webhook_result": webhook_result,
        "suppressed": suppression_banner(user, zone),
        "email_error": email_error,
        "muted": muted_list(user),  # the "Muted" section (mute_views.py)
    }
    template = "notifications/_settings_editor.html" if partial else "notifications/settings.html"
    return render_template(template, **context), status


def _submitted_values(changes: dict, saved: dict) -> dict:
    """What the player typed, to show back with the errors (known types only in the grid)."""
    values = dict(saved)
    values.update({k: v for k, v in changes.items() if k != "channels"})
    values["channels"] = {name: [c for c in changes["channels"].get(name, []) if c in CHANNELS]
                          for name in TYPE_NAMES}
    return values


@bp.get("/settings/notifications")
@page_login_required
def edit():
    return _render(serialize_preferences(current_preferences(current_user)))


@bp.post("/settings/notifications")
@page_login_required
def save():
    changes = form_to_changes(request.form)
    try:
        pref = update_preferences(current_user, changes, SOURCE_EDITOR)
    except InvalidInput as exc:
        db.session.rollback()
        saved = serialize_preferences(current_preferences(current_user))
        return _render(_submitted_values(changes, saved), field_errors(exc), status=422, partial=bool(htmx))
    if htmx:
        return _render(serialize_preferences(pref), saved_at=utcnow(), partial=True)
    flash("Your notification settings are saved.")
    return redirect(url_for(".edit"), 303)


@bp.post("/settings/notifications/email")
@page_login_required
def change_email_address():
    """A new email address: validated and unique; the old address's suppression is lifted with it."""
    user = current_user._get_current_object()
    try:
        old = change_email(user, request.form.get("email", ""), commit=False)
    except ServiceError as exc:
        db.session.rollback()
        message = next(iter(exc.fields.values()), exc.message) if exc.fields else exc.message
        return _render(serialize_preferences(current_preferences(user)), status=exc.status,
                       email_error=f"Not changed: {message}.")
    if old.lower() != user.email:
        suppression.lift_address(old, "address changed")
    db.session.commit()
    flash(f"Your email address is now {user.email}.")
    return redirect(url_for(".edit"), 303)


def _webhook_test_user() -> str:
    # Counted per person (their id), whichever address or session they click from.
    if current_user.is_authenticated:
        return f"webhook-test-user:{current_user.id}"
    return "webhook-test-ip:" + get_remote_address()


def _reached_discord(response) -> bool:
    # A URL refused before sending (422) costs nothing: only tries that may reach Discord count.
    return response.status_code != 422


def _webhook_test_result(result: str, ok: bool, status: int, url: str):
    if htmx:
        return render_template("notifications/_webhook_test_result.html", webhook_result=(result, ok)), status
    values = serialize_preferences(current_preferences(current_user))
    values["discord_webhook_url"] = url
    return _render(values, webhook_result=(result, ok), status=status)


# One budget of test messages per person, shared by every page with a "send a test
# message" button (this editor, a team's page): only tries that may reach Discord count.
limit_webhook_tests = limiter.shared_limit(lambda: current_app.config["WEBHOOK_TEST_RATE_LIMIT"],
                                           scope="webhook-test", key_func=_webhook_test_user,
                                           deduct_when=_reached_discord)


def webhook_test_refusal(error) -> str:
    """What to tell a person whose test message the rate limit refused (a 429)."""
    limit = getattr(error, "limit", None)
    if limit is None:
        rate = "only a few test messages at a time"
    else:
        item = limit.limit
        per = item.GRANULARITY.name if item.multiples == 1 else f"{item.multiples} {item.GRANULARITY.name}s"
        rate = f"{item.amount} test message{'s' if item.amount != 1 else ''} per {per}"
    current = limiter.current_limit
    wait = f"in {max(1, math.ceil(current.reset_at - time.time()))} s" if current else "in a little while"
    return f"Not sent: you can send {rate}. Please try again {wait}; your saved settings are unaffected."


def try_webhook(url: str) -> tuple[str, bool, int]:
    """Send the test message to `url` if it may be sent: (message, whether Discord took it, status)."""
    if not url:
        return "Enter a Discord webhook URL first.", False, 422
    if problem := webhook_url_problem(url):
        return f"Not sent: the webhook URL {problem}.", False, 422
    result, ok = send_test_message(url)
    return result, ok, 200


@bp.errorhandler(429)
def too_many_webhook_tests(error):
    """Only the test button is rate limited here: say how many are allowed and when to try again."""
    url = (request.form.get("discord_webhook_url") or "").strip()
    return _webhook_test_result(webhook_test_refusal(error), False, 429, url)


@bp.post("/settings/notifications/discord-test")
@page_login_required
@limit_webhook_tests
def discord_test():
    """Post a short test message to the webhook URL in the form (or the saved one)."""
    url = (request.form.get("discord_webhook_url") or "").strip() \
        or current_preferences(current_user).discord_webhook_url or ""
    result, ok, status = try_webhook(url)
    return _webhook_test_result(result, ok, status, url)
