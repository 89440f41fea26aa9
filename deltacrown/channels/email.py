"""Email: render the notification templates (HTML + text) and send them over SMTP.

Rendering is separate from sending so the admin preview can show the exact
output with sample data. HTML is written with a <style> block and inlined at
render time by css-inline (email clients drop <style>); media queries stay in a
<style> tag for clients that honour them (once per template, see below). Jinja
autoescape keeps user text inert. Flask-Mail holds the SMTP settings (MAIL_*);
the messages are built and sent here (SmtpSession), several over one connection
when a caller has many (the daily digest).

Every email carries RFC 8058 one-click unsubscribe headers with a signed token
(deltacrown.notifications.unsubscribe).

TLS (MAIL_USE_TLS: STARTTLS, MAIL_USE_SSL: TLS from the start) verifies the
server's certificate and host name, against the system's CAs or MAIL_TLS_CA_FILE;
the SMTP login is refused without TLS unless MAIL_ALLOW_PLAINTEXT_AUTH is set.
"""
from __future__ import annotations

import functools
import re
import smtplib
import socket
import ssl
import uuid
import weakref
from dataclasses import dataclass, field
from datetime import date, datetime
from email.header import Header
from email.utils import formatdate, make_msgid
from urllib.parse import quote
from zoneinfo import ZoneInfo

import css_inline
import flask_mail
from flask import current_app, render_template

from ..notifications.types import NOTIFICATION_TYPES, NotificationType
from ..notifications.unsubscribe import ALL_EMAIL, make_unsubscribe_token
from ..notifications.content import NOTIFICATION_CENTER_PATH, ChannelMessage

TEMPLATE_DIR = "notifications/email"
CRLF = "\r\n"
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


# --- CSS inlined once per template ------------------------------------------------
#
# Inlining a rendered email costs more than rendering it, yet every email from one template gets
# the same style attributes: they depend on the elements and classes, which the
# template fixes, not on the values filled in. So the HTML template (its
# `{% extends %}` resolved) is inlined once, with each Jinja tag swapped for a
# plain-text slot, and the result is compiled as the template to render. The
# email reads exactly as inline(render(...)) would (same elements, attributes
# and text; byte for byte unless a value holds a quote or a CR): Jinja writes
# &#34; where the inliner's serialiser writes " or &quot;, and a CR LF in a
# value is left to the MIME line ends instead of being made LF by the parser.
# Templates this cannot handle safely (nested blocks, blocks the layout lacks,
# a slot the HTML parser would move, e.g. a loop between table rows) are
# inlined per email as before.

_JINJA_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_EXTENDS = re.compile(r'\s*\{%-?\s*extends\s+"([^"]+)"\s*-?%\}')
_BLOCK = re.compile(r"\{%\s*block\s+(\w+)\s*%\}(.*?)\{%\s*endblock\s*%\}", re.S)
_SLOT = re.compile(r"jinjaslot(\d{5})x")


class _NotFlat(Exception):
    pass


def _flatten(env, name: str, uptodate: list) -> str:
    """The template's source with one level of `{% extends %}` resolved (simple blocks only)."""
    source, _, is_current = env.loader.get_source(env, name)
    uptodate.append(is_current)
    if not env.keep_trailing_newline:  # as Jinja's lexer does
        source = re.sub(r"(\r\n|\r|\n)\Z", "", source)
    m = _EXTENDS.match(source)
    if not m:
        return source
    parent = _flatten(env, m.group(1), uptodate)
    blocks = dict(_BLOCK.findall(source))
    parent_blocks = dict(_BLOCK.findall(parent))
    outside = _BLOCK.sub("", source[m.end():])
    if (outside.strip() or not set(blocks) <= set(parent_blocks)
            or any("{% block" in body or "super()" in body for body in (*blocks.values(), *parent_blocks.values()))):
        raise _NotFlat(name)
    return _BLOCK.sub(lambda b: blocks.get(b.group(1), b.group(2)), parent)


def _preinline(env, name: str):
    """(template with the CSS inlined, uptodate checks), or (None, checks) to inline per email."""
    uptodate: list = []
    try:
        source = _flatten(env, name, uptodate)
    except _NotFlat:
        return None, uptodate
    tags: list[str] = []

    def slot(match):
        tags.append(match.group(0))
        return f"jinjaslot{len(tags) - 1:05d}x"

    if _SLOT.search(source):
        return None, uptodate
    inlined = _inliner.inline(_JINJA_TAG.sub(slot, source))
    if [int(n) for n in _SLOT.findall(inlined)] != list(range(len(tags))):
        return None, uptodate  # the parser moved or dropped a tag: its place is not what the template says
    return env.from_string(_SLOT.sub(lambda m: tags[int(m.group(1))], inlined)), uptodate


_preinlined: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # jinja env -> {name: (template, checks)}


def _render_html(name: str, context: dict) -> str:
    env = current_app.jinja_env
    per_env = _preinlined.setdefault(env, {})
    cached = per_env.get(name)
    if cached is None or (env.auto_reload and not all(c is None or c() for c in cached[1])):
        cached = per_env[name] = _preinline(env, name)
    template = cached[0]
    if template is None:
        return _inliner.inline(render_template(name, **context))
    current_app.update_template_context(context)
    return template.render(context)


def _render(name: str, subject: str, context: dict) -> tuple[str, str]:
    html = _render_html(f"{TEMPLATE_DIR}/{name}.html", {"subject": subject, **context})
    text = render_template(f"{TEMPLATE_DIR}/{name}.txt", subject=subject, **context)
    return html, text.strip() + "\n"


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
#
# The MIME message is written here rather than by Flask-Mail: its Message runs
# every header through the email package's header parser and folder twice (more
# work than rendering and sending together). What goes out is
# what Flask-Mail would build for the same RenderedEmail, minus its empty
# multipart/mixed wrapper: a multipart/alternative of the text and the HTML
# part, UTF-8, 8bit, CRLF line ends, the same Subject/From/To/Date/Message-ID
# headers. One difference on purpose: Flask-Mail's policy turned the long
# List-Unsubscribe header into RFC 2047 encoded words, which RFC 2369 readers
# do not decode; here it is folded at its ", " between the two URLs.
# Flask-Mail still supplies the settings (MAIL_*) and the address sanitising.

_MAX_HEADER_LINE = 78


def _check_header(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise EmailSendError("email has a header with a line break", temporary=False)
    return value


def _header(name: str, value: str) -> str:
    """`Name: value` (CRLF-terminated); non-ASCII as RFC 2047 words, long lists folded at ", "."""
    _check_header(value)
    if not value.isascii():
        return f"{name}: {Header(value, 'utf-8', header_name=name).encode(linesep=CRLF)}{CRLF}"
    line = f"{name}: {value}"
    if len(line) <= _MAX_HEADER_LINE or ", " not in value:
        return line + CRLF
    return f"{name}: " + f",{CRLF} ".join(value.split(", ")) + CRLF


def _body(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", CRLF)


def mime_message(sender: str, to: str, rendered: RenderedEmail, message_id_domain: str | None = None) -> bytes:
    """The message as sent: `sender` and `to` already sanitised (flask_mail.sanitize_address)."""
    boundary = f"=_{uuid.uuid4().hex}"
    parts = [
        f'Content-Type: multipart/alternative; boundary="{boundary}"{CRLF}MIME-Version: 1.0{CRLF}',
        _header("Subject", rendered.subject) if rendered.subject else "",
        _header("From", sender),
        _header("To", to),
        _header("Date", formatdate(localtime=True)),
        _header("Message-ID", make_msgid(domain=message_id_domain or _fqdn())),
        *(_header(k, v) for k, v in rendered.headers.items()),
    ]
    for subtype, content in (("plain", rendered.text), ("html", rendered.html)):
        parts.append(f"{CRLF}--{boundary}{CRLF}Content-Type: text/{subtype}; charset=\"utf-8\"{CRLF}"
                     f"MIME-Version: 1.0{CRLF}Content-Transfer-Encoding: 8bit{CRLF}{CRLF}{_body(content)}")
    parts.append(f"{CRLF}--{boundary}--{CRLF}")
    return "".join(parts).encode("utf-8")


@functools.lru_cache(maxsize=1)
def _fqdn() -> str:
    return socket.getfqdn()  # what make_msgid() looks up on every call


def _tls_context() -> ssl.SSLContext:
    """Verifies the server's certificate and host name: against the system's CAs, or only
    against MAIL_TLS_CA_FILE when set. (smtplib's own default context verifies nothing.)"""
    return ssl.create_default_context(cafile=current_app.config.get("MAIL_TLS_CA_FILE") or None)


def _open_smtp(mail) -> smtplib.SMTP:
    """A connection to MAIL_SERVER with a socket timeout: a silent SMTP server must not hang a worker.

    The opening is ours, not Flask-Mail's: its Connection gives smtplib no TLS context,
    so the certificate would go unchecked.
    """
    config = current_app.config
    encrypted = mail.use_ssl or mail.use_tls
    login = bool(mail.username and mail.password)
    if login and not encrypted and not config.get("MAIL_ALLOW_PLAINTEXT_AUTH"):
        # The environment check stops a process with this setup at start; this covers config set in code.
        raise EmailSendError("refusing to log in to the SMTP server without TLS (the password would travel in "
                             "clear text): set MAIL_USE_TLS or MAIL_USE_SSL, or MAIL_ALLOW_PLAINTEXT_AUTH=true",
                             temporary=False)
    timeout = config["MAIL_TIMEOUT_SECONDS"]
    if mail.use_ssl:
        host = smtplib.SMTP_SSL(mail.server, mail.port, timeout=timeout, context=_tls_context())
    else:
        host = smtplib.SMTP(mail.server, mail.port, timeout=timeout)
    try:
        if mail.use_tls and not mail.use_ssl:
            host.starttls(context=_tls_context())
        if login:
            host.login(mail.username, mail.password)
    except BaseException:
        host.close()
        raise
    return host


def _smtp_code_temporary(code) -> bool:
    return isinstance(code, int) and 400 <= code < 500


def classify_smtp_error(exc: BaseException) -> EmailSendError:
    """Temporary (try again): 4xx replies, refused/dropped connections, timeouts. Else permanent."""
    if isinstance(exc, EmailSendError):
        return exc
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        detail = "; ".join(f"{addr}: {code} {msg.decode(errors='replace') if isinstance(msg, bytes) else msg}"
                           for addr, (code, msg) in exc.recipients.items())
        return EmailSendError(f"SMTP recipient refused: {detail}", temporary=all(map(_smtp_code_temporary, codes)))
    if isinstance(exc, smtplib.SMTPResponseException):
        msg = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return EmailSendError(f"SMTP error {exc.smtp_code}: {msg}", temporary=_smtp_code_temporary(exc.smtp_code))
    if isinstance(exc, ssl.SSLCertVerificationError):
        # Temporary: a renewed certificate or a fixed MAIL_TLS_CA_FILE lets a later try through.
        return EmailSendError(f"SMTP server certificate not trusted ({exc.verify_message or exc}); if it is signed "
                              f"by a private CA, set MAIL_TLS_CA_FILE", temporary=True)
    if isinstance(exc, (smtplib.SMTPServerDisconnected, socket.timeout, TimeoutError, ConnectionError, OSError)):
        return EmailSendError(f"SMTP connection problem: {type(exc).__name__}: {exc}", temporary=True)
    if isinstance(exc, flask_mail.BadHeaderError):
        return EmailSendError("email has a header with a line break", temporary=False)
    return EmailSendError(f"SMTP error: {type(exc).__name__}: {exc}", temporary=False)


def _connection_still_usable(exc: BaseException) -> bool:
    # A refusal is an answer: smtplib has sent RSET and the session goes on. 421 means
    # the server is closing it; anything else (disconnect, timeout, OSError) broke it.
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code != 421 for code, _ in exc.recipients.values())
    return isinstance(exc, smtplib.SMTPResponseException) and exc.smtp_code != 421


class SmtpSession:
    """Send several emails over one SMTP connection: `with SmtpSession() as s: s.send(to, rendered)`.

    The connection opens on the first send. Each `send` raises EmailSendError
    (`temporary` as classify_smtp_error says) for that email only: after a
    refusal the connection goes on; after a broken connection it is dropped and
    the next send opens a new one. A failed email is never resent here (after a
    dropped connection nobody knows whether the server kept it); the caller
    decides. With MAIL_SUPPRESS_SEND the message is built and nothing is sent.
    """

    def __init__(self):
        self._mail = current_app.extensions["mail"]
        self._sender = flask_mail.sanitize_address(self._mail.default_sender)
        self._host: smtplib.SMTP | None = None
        self._sent_on_host = 0
        self.sent = 0

    def __enter__(self) -> "SmtpSession":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def send(self, to: str, rendered: RenderedEmail) -> None:
        to_header = flask_mail.sanitize_address(_check_header(to))
        data = mime_message(self._sender, to_header, rendered)
        if self._mail.suppress:
            self.sent += 1
            return
        try:
            if self._host is None:
                self._host = _open_smtp(self._mail)
                self._sent_on_host = 0
            self._host.sendmail(self._sender, [to_header], data)
        except (smtplib.SMTPException, OSError) as exc:
            if not _connection_still_usable(exc):
                self._drop()
            raise classify_smtp_error(exc) from exc
        self.sent += 1
        self._sent_on_host += 1
        if self._mail.max_emails and self._sent_on_host >= self._mail.max_emails:
            self.close()  # MAIL_MAX_EMAILS per connection; the next send opens a new one

    def close(self) -> None:
        """QUIT politely; the emails are already accepted, so a failing QUIT changes nothing."""
        host, self._host = self._host, None
        if host is not None:
            try:
                host.quit()
            except (smtplib.SMTPException, OSError):
                host.close()

    def _drop(self) -> None:
        host, self._host = self._host, None
        if host is not None:
            host.close()


def send_rendered(to: str, rendered: RenderedEmail) -> None:
    """Send one email now; raises EmailSendError (with `temporary`) when the server says no."""
    with SmtpSession() as session:
        session.send(to, rendered)


def send_notification_email(user, to: str, item: ChannelMessage) -> None:
    send_rendered(to, render_single_notification(user, item))


def _digest_items(notifications) -> list[ChannelMessage]:
    return [n if isinstance(n, ChannelMessage) else ChannelMessage.from_notification(n) for n in notifications]


def send_digest_email(user, digest_date: date, notifications, session: SmtpSession | None = None) -> None:
    """Send `user` their digest for `digest_date` (their local date) listing `notifications`.

    `notifications`: Notification rows or ChannelMessages; grouped by type in the
    email. `user` needs id, username, email and timezone. With `session` the email
    goes over that connection (a digest run sends a whole chunk over one).
    Raises EmailSendError on any SMTP failure (`.temporary` says whether a retry
    may help), so the caller can leave its digest claim unsent and retry.
    """
    rendered = render_daily_digest(user, digest_date, _digest_items(notifications))
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
        items.append(ChannelMessage(type=type_name, title=title, body=body, url="/notifications", created_at=now))
    return items
