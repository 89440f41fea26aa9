"""The pages around notification emails: the unsubscribe link's page (and its one-click
POST), the page an emailed action button opens (Accept / Decline an invite: a GET shows
it, a POST does it) and the admin preview of every email with sample data."""
from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, abort, render_template
from flask_login import current_user, login_required

from ..extensions import csrf
from ..timeutil import utcnow
from . import emails
from .email_actions import ACTION_PATH, InvalidActionLink, apply_link, read_link
from .content import ChannelMessage
from .preferences import user_zone
from .types import NOTIFICATION_TYPES
from .unsubscribe import InvalidUnsubscribeToken, apply_unsubscribe, read_unsubscribe_token

bp = Blueprint("notification_emails", __name__)

PREFERENCES_URL = emails.PREFERENCES_PATH


def init_app(app):
    app.register_blueprint(bp)


def _invalid(exc: InvalidUnsubscribeToken):
    return render_template("notifications/unsubscribe.html", error=exc.message, expired=exc.expired,
                           preferences_url=PREFERENCES_URL), 400


@bp.get("/unsubscribe/<token>")
def unsubscribe_page(token: str):
    """Say what the link turns off and ask to confirm; a GET never changes anything
    (link scanners and mail clients prefetch links)."""
    try:
        request_ = read_unsubscribe_token(token)
    except InvalidUnsubscribeToken as exc:
        return _invalid(exc)
    return render_template("notifications/unsubscribe.html", unsubscribe=request_, token=token,
                           already_off=request_.is_already_off(), done=False,
                           preferences_url=PREFERENCES_URL)


@bp.post("/unsubscribe/<token>")
@csrf.exempt  # the signed token is the proof; mail clients POST here without a session (RFC 8058)
def unsubscribe_confirm(token: str):
    """The confirm button and the one-click POST (body `List-Unsubscribe=One-Click`) alike."""
    try:
        request_ = apply_unsubscribe(token)
    except InvalidUnsubscribeToken as exc:
        return _invalid(exc)
    return render_template("notifications/unsubscribe.html", unsubscribe=request_, done=True,
                           preferences_url=PREFERENCES_URL)


def _invalid_link(exc: InvalidActionLink):
    return render_template("notifications/email_action.html", error=exc.message), exc.status


@bp.get(f"{ACTION_PATH}/<token>")
def email_action_page(token: str):
    """Say what the button does and ask to confirm with one button; a GET never acts (link
    scanners and mail clients open links on their own)."""
    try:
        link = read_link(token)
    except InvalidActionLink as exc:
        return _invalid_link(exc)
    return render_template("notifications/email_action.html", link=link, token=token)


@bp.post(f"{ACTION_PATH}/<token>")
@csrf.exempt  # the signed link is the proof (bound to user, invite and action); no login needed
def email_action_confirm(token: str):
    try:
        link, result = apply_link(token)
    except InvalidActionLink as exc:
        return _invalid_link(exc)
    return render_template("notifications/email_action.html", link=link, result=result)


# The preview frames the rendered email, whose CSS is inline (style="..."): allow inline
# styles on this admin page only; scripts stay 'self' and the frame is sandboxed.
_PREVIEW_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                "object-src 'none'; base-uri 'self'; frame-ancestors 'none'; form-action 'self'")


@bp.get("/admin/email-preview")
@login_required
def email_preview():
    if not current_user.is_admin:
        abort(403)
    user = current_user._get_current_object()
    zone = user_zone(user)
    now = utcnow()
    items = emails.sample_items(now)
    # Sample ids (0) show the Message-ID and VERP return path each email gets from its delivery/digest.
    previews = [("Single notification: " + item.type_info.label, f"single-{item.type}",
                 emails.render_single_notification(user, item, zone, delivery_id=0)) for item in items]
    digest_items = [ChannelMessage(i.type, i.title, i.body, i.url, now - timedelta(minutes=n * 7))
                    for n, i in enumerate(items + items[:3])]
    previews.insert(0, ("Daily digest", "daily-digest", emails.render_daily_digest(user, now.date(), digest_items, digest_id=0)))
    response = render_template("admin/email_preview.html", previews=previews, types=NOTIFICATION_TYPES)
    return response, 200, {"Content-Security-Policy": _PREVIEW_CSP}
