"""Email: render the notification templates (HTML + text) and send them with Flask-Mail.

Rendering is separate from sending so the admin preview can show the exact
output with sample data. HTML is written with a <style> block and inlined at
render time by css-inline (email clients drop <style>); media queries stay in a
<style> tag for clients that honour them. Jinja autoescape keeps user text inert.

Every email carries RFC 8058 one-click unsubscribe headers with a signed token
(deltacrown.notifications.unsubscribe).
"""
from __future__ import annotations

import smtplib
import socket
from dataclasses import dataclass, field
from datetime import date, datetime
from urllib.parse import quote
from zoneinfo import ZoneInfo

import css_inline
import flask_mail
from flask import current_app, render_template

from ..notifications.types import NOTIFICATION_TYPES, NotificationType
from ..notifications.unsubscribe import ALL_EMAIL, make_unsubscribe_token
from .content import NOTIFICATION_CENTER_PATH, ChannelMessage

TEMPLATE_DIR = "notifications/email"
PREFERENCES_PATH = "/settings/notifications"

_inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


class EmailSendError(Exception):
    """Sending failed; `temporary` says whether trying again later may work."""

    def __init__(self, message: str, temporary: bool):
        super().__init__(message)
        self.temporary = temporary


# --- what goes into an email ------------------------------------------------

@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str
    headers: dict = field(default_factory=dict)


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


def _local_time(user, when: datetime | None) -> str:
    if when is None:
        return ""
    try:
        zone = ZoneInfo(user.timezone or "UTC")
    except Exception:  # a bad stored zone must not stop an email
        zone = ZoneInfo("UTC")
    return when.astimezone(zone).strftime("%d %b %Y, %H:%M ") + (user.timezone or "UTC")


def _render(name: str, subject: str, context: dict) -> tuple[str, str]:
    html = render_template(f"{TEMPLATE_DIR}/{name}.html", subject=subject, **context)
    text = render_template(f"{TEMPLATE_DIR}/{name}.txt", subject=subject, **context)
    return _inliner.inline(html), text.strip() + "\n"


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


def render_single_notification(user, item: ChannelMessage) -> RenderedEmail:
    """The email for one notification; its unsubscribe link turns off that type's email."""
    context, headers = _common_context(user, item.type)
    subject = _one_line(f"{item.type_info.icon} {item.title}")
    html, text = _render("single_notification", subject, {
        **context, "item": item, "action_label": "View on DeltaCrown", "when": _local_time(user, item.created_at),
    })
    return RenderedEmail(subject=subject, html=html, text=text, headers=headers)


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


def render_daily_digest(user, digest_date: date, items: list[ChannelMessage]) -> RenderedEmail:
    """The digest email; its unsubscribe link turns off all email (the digest is email-wide)."""
    context, headers = _common_context(user, ALL_EMAIL)
    date_label = digest_date.strftime("%A %d %B %Y")
    subject = _one_line(f"Your DeltaCrown digest for {date_label}: {len(items)} update{'s' if len(items) != 1 else ''}")
    html, text = _render("daily_digest", subject, {
        **context, "groups": group_by_type(items), "count": len(items), "date_label": date_label,
    })
    return RenderedEmail(subject=subject, html=html, text=text, headers=headers)


# --- sending ------------------------------------------------------------------

class _TimedConnection(flask_mail.Connection):
    """Flask-Mail's connection with a socket timeout: a silent SMTP server must not hang a worker."""

    def configure_host(self):
        timeout = current_app.config["MAIL_TIMEOUT_SECONDS"]
        cls = smtplib.SMTP_SSL if self.mail.use_ssl else smtplib.SMTP
        host = cls(self.mail.server, self.mail.port, timeout=timeout)
        if self.mail.use_tls:
            host.starttls()
        if self.mail.username and self.mail.password:
            host.login(self.mail.username, self.mail.password)
        return host


def _smtp_code_temporary(code) -> bool:
    return isinstance(code, int) and 400 <= code < 500


def classify_smtp_error(exc: BaseException) -> EmailSendError:
    """Temporary (try again): 4xx replies, refused/dropped connections, timeouts. Else permanent."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        detail = "; ".join(f"{addr}: {code} {msg.decode(errors='replace') if isinstance(msg, bytes) else msg}"
                           for addr, (code, msg) in exc.recipients.items())
        return EmailSendError(f"SMTP recipient refused: {detail}", temporary=all(map(_smtp_code_temporary, codes)))
    if isinstance(exc, smtplib.SMTPResponseException):
        msg = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return EmailSendError(f"SMTP error {exc.smtp_code}: {msg}", temporary=_smtp_code_temporary(exc.smtp_code))
    if isinstance(exc, (smtplib.SMTPServerDisconnected, socket.timeout, TimeoutError, ConnectionError, OSError)):
        return EmailSendError(f"SMTP connection problem: {type(exc).__name__}: {exc}", temporary=True)
    if isinstance(exc, flask_mail.BadHeaderError):
        return EmailSendError("email has a header with a line break", temporary=False)
    return EmailSendError(f"SMTP error: {type(exc).__name__}: {exc}", temporary=False)


def send_rendered(to: str, rendered: RenderedEmail) -> None:
    """Send one email now; raises EmailSendError (with `temporary`) when the server says no."""
    message = flask_mail.Message(subject=rendered.subject, recipients=[to], body=rendered.text,
                                 html=rendered.html, extra_headers=dict(rendered.headers))
    try:
        with _TimedConnection(current_app.extensions["mail"]) as connection:
            connection.send(message)
    except EmailSendError:
        raise
    except (smtplib.SMTPException, OSError, flask_mail.BadHeaderError) as exc:
        raise classify_smtp_error(exc) from exc


def send_notification_email(user, to: str, item: ChannelMessage) -> None:
    send_rendered(to, render_single_notification(user, item))


def send_digest_email(user, digest_date: date, notifications) -> None:
    """Send `user` their digest for `digest_date` (their local date) listing `notifications`.

    Notifications are grouped by type in the email. Raises EmailSendError on any
    SMTP failure (`.temporary` says whether a retry may help), so the caller can
    roll back its "digest sent" mark and retry.
    """
    items = [ChannelMessage.from_notification(n) for n in notifications]
    send_rendered(user.email, render_daily_digest(user, digest_date, items))


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
        items.append(ChannelMessage(type=type_name, title=title, body=body, url="/notifications", created_at=now))
    return items
