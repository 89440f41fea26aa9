"""The notification emails: one notification, and the daily digest.

Each is rendered from its templates under notifications/email (the CSS inlined
by channels.email_render) and sent over SMTP (channels.smtp). Rendering is
separate from sending so the admin preview can show the exact output with
sample data. Every email carries RFC 8058 one-click unsubscribe headers with a
signed token (notifications.unsubscribe); a notification with actions (an invite)
carries a signed link per action (notifications.email_actions). Times are shown in the zone the caller
passes: the recipient's (preferences.user_zone).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from urllib.parse import quote
from zoneinfo import ZoneInfo

from flask import current_app

from ..channels.email_render import render_email
from ..channels.smtp import RenderedEmail, SmtpSession, send_rendered
from . import mail_headers
from .content import NOTIFICATION_CENTER_PATH, ChannelMessage
from .email_actions import action_links
from .types import NOTIFICATION_TYPES, NotificationType
from .unsubscribe import ALL_EMAIL, make_unsubscribe_token

TEMPLATE_DIR = "notifications/email"
PREFERENCES_PATH = "/settings/notifications"


def _one_line(text: str, limit: int = 200) -> str:
    # Subjects are headers: no line breaks (header injection), and a sane length.
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def unsubscribe_links(user_id: int, scope: str) -> dict:
    token = make_unsubscribe_token(user_id, scope)
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    url = f"{base}/unsubscribe/{token}"
    mailto = f"mailto:{current_app.config['UNSUBSCRIBE_MAILTO']}?subject={quote('unsubscribe ' + token)}"
    return {
        "url": url,
        "headers": {
            "List-Unsubscribe": f"<{url}>, <{mailto}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    }


def _local_time(when: datetime | None, zone: ZoneInfo) -> str:
    if when is None:
        return ""
    return when.astimezone(zone).strftime("%d %b %Y, %H:%M ") + zone.key


def _render(name: str, subject: str, context: dict) -> tuple[str, str]:
    return render_email(f"{TEMPLATE_DIR}/{name}", {"subject": subject, **context})


def _common_context(user, scope: str) -> tuple[dict, dict]:
    links = unsubscribe_links(user.id, scope)
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    label = ("Unsubscribe from all email" if scope == ALL_EMAIL
             else f"Unsubscribe from “{NOTIFICATION_TYPES[scope].label}” email")
    return {
        "user": user,
        "preferences_url": base + PREFERENCES_PATH,
        "center_url": base + NOTIFICATION_CENTER_PATH,
        "unsubscribe_url": links["url"],
        "unsubscribe_label": label,
    }, links["headers"]


def _identity(kind: str, ident: int | None) -> dict:
    """The Message-ID and return path of the email for this delivery/digest (none for a preview)."""
    if ident is None:
        return {}
    return {"message_id": mail_headers.message_id(kind, ident),
            "envelope_from": mail_headers.return_path(kind, ident)}


def render_single_notification(user, item: ChannelMessage, zone: ZoneInfo,
                               delivery_id: int | None = None) -> RenderedEmail:
    """The email for one notification, its time in `zone`; its unsubscribe link turns off that type's email.
    `delivery_id`: the Delivery it is sent for (its stable Message-ID and VERP return path)."""
    context, headers = _common_context(user, item.type)
    headers = {**headers, **mail_headers.stream_headers(mail_headers.STREAM_NOTIFICATIONS, item.type)}
    subject = _one_line(f"{item.type_info.icon} {item.title}")
    html, text = _render("single_notification", subject, {
        **context, "item": item, "action_label": "View on DeltaCrown", "when": _local_time(item.created_at, zone),
        "actions": action_links(user.id, item.type, item.subject_id),
    })
    return RenderedEmail(subject=subject, html=html, text=text, headers=headers,
                         **_identity(mail_headers.DELIVERY, delivery_id))


@dataclass(frozen=True)
class DigestGroup:
    type_info: NotificationType
    items: list


def group_by_type(items: list[ChannelMessage]) -> list[DigestGroup]:
    """Digest sections in registry order, newest first inside each."""
    groups = []
    for type_name, type_info in NOTIFICATION_TYPES.items():
        members = [i for i in items if i.type == type_name]
        if members:
            members.sort(key=lambda i: i.created_at.timestamp() if i.created_at else 0.0, reverse=True)
            groups.append(DigestGroup(type_info, members))
    return groups


def render_daily_digest(user, digest_date: date, items: list[ChannelMessage],
                        digest_id: int | None = None) -> RenderedEmail:
    """The digest email; its unsubscribe link turns off all email (the digest is email-wide).
    `digest_id`: the NotificationDigest it is sent for (its Message-ID and VERP return path)."""
    context, headers = _common_context(user, ALL_EMAIL)
    headers = {**headers, **mail_headers.stream_headers(mail_headers.STREAM_DIGEST, "daily_digest")}
    date_label = digest_date.strftime("%A %d %B %Y")
    # Muted items (their team or tournament was muted) are not "new": listed apart, not counted.
    fresh, muted = [i for i in items if not i.muted], [i for i in items if i.muted]
    subject = _one_line(f"Your DeltaCrown digest for {date_label}: {len(fresh)} update{'s' if len(fresh) != 1 else ''}")
    html, text = _render("daily_digest", subject, {
        **context, "groups": group_by_type(fresh), "count": len(fresh), "date_label": date_label,
        "muted": muted,
    })
    return RenderedEmail(subject=subject, html=html, text=text, headers=headers,
                         **_identity(mail_headers.DIGEST, digest_id))


def send_notification_email(user, to: str, item: ChannelMessage, zone: ZoneInfo,
                            delivery_id: int | None = None) -> None:
    """Send the email for one notification now; raises EmailSendError (with `temporary`, `refused`)."""
    send_rendered(to, render_single_notification(user, item, zone, delivery_id))


def _digest_items(notifications) -> list[ChannelMessage]:
    return [n if isinstance(n, ChannelMessage) else ChannelMessage.from_notification(n) for n in notifications]


def send_digest_email(user, digest_date: date, notifications, session: SmtpSession | None = None,
                      digest_id: int | None = None) -> None:
    """Send `user` their digest for `digest_date` (their local date) listing `notifications`.

    `notifications`: Notification rows or ChannelMessages; grouped by type in the
    email. `user` needs id, username and email. With `session` the email
    goes over that connection (a digest run sends a whole chunk over one).
    Raises EmailSendError on any SMTP failure (`.temporary` says whether a retry
    may help), so the caller can leave its digest claim unsent and retry.
    """
    rendered = render_daily_digest(user, digest_date, _digest_items(notifications), digest_id)
    if session is None:
        send_rendered(user.email, rendered)
    else:
        session.send(user.email, rendered)


# --- samples for the admin preview --------------------------------------------

_SAMPLE_TEXT = {
    "invite_sent": ("Team <Nova> invited you to join", "Captain @everyone says: join us for the spring cup!"),
    "match_result": ("Nova 2 – 1 Eclipse", "Final score of your quarter-final.\nGG to both teams."),
    "payout_received": ("You received 500 coins", "2nd place in Spring Cup 2026."),
    "announcement": ("Maintenance on Sunday", "The site is offline 02:00–03:00 UTC."),
}


def sample_items(now: datetime) -> list[ChannelMessage]:
    """One sample per registered type (titles include markup to show it stays text)."""
    items = []
    for type_name, type_info in NOTIFICATION_TYPES.items():
        title, body = _SAMPLE_TEXT.get(type_name, (f"Sample: {type_info.label}", type_info.description))
        # A type with actions shows its buttons (their links name no real subject: they explain themselves).
        items.append(ChannelMessage(type=type_name, title=title, body=body, url="/notifications", created_at=now,
                                    subject_id=0 if type_info.actions else None))
    return items
