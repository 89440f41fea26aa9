"""Sending email over SMTP: one rendered email (subject, HTML, text, headers) to one address.

Flask-Mail holds the SMTP settings (MAIL_*); the MIME message is built and sent
here (SmtpSession), several over one connection when a caller has many (the
daily digest). Errors are classified as temporary (worth a retry: 4xx replies, refused or
dropped connections, timeouts) or permanent (EmailSendError.temporary); a permanent refusal
of the recipient or the message (5xx at RCPT or DATA) is a bounce (EmailSendError.refused,
with the server's code and reply), which the caller must never retry.

A RenderedEmail may carry its own Message-ID (e.g. stable across retries) and return path
(MAIL FROM, e.g. a VERP address that names the email); this module does not know what they mean.

TLS (MAIL_USE_TLS: STARTTLS, MAIL_USE_SSL: TLS from the start) verifies the
server's certificate and host name, against the system's CAs or MAIL_TLS_CA_FILE;
the SMTP login is refused without TLS unless MAIL_ALLOW_PLAINTEXT_AUTH is set.
"""
from __future__ import annotations

import functools
import smtplib
import socket
import ssl
import uuid
from dataclasses import dataclass, field
from email.header import Header
from email.utils import formatdate, make_msgid

import flask_mail
from flask import current_app

CRLF = "\r\n"


class EmailSendError(Exception):
    """Sending failed; `temporary` says whether trying again later may work.

    `refused`: the receiving server refused the recipient or the message for good (a 5xx at
    RCPT or DATA): a bounce of that address, never worth another try. `code` and `reply` are
    the server's answer (e.g. 550, "5.1.1 No such user here") when there was one.
    """

    def __init__(self, message: str, temporary: bool, refused: bool = False, code: int | None = None,
                 reply: str | None = None):
        super().__init__(message)
        self.temporary = temporary
        self.refused = refused and not temporary
        self.code = code
        self.reply = reply


@dataclass(frozen=True)
class RenderedEmail:
    """One email as it goes out: `headers` are extra ones (e.g. List-Unsubscribe).

    `message_id`: the Message-ID to use (e.g. one stable per delivery, so a retry reuses it);
    a fresh one when None. `envelope_from`: the return path (MAIL FROM) bounces go to; the
    sender's address when None.
    """
    subject: str
    html: str
    text: str
    headers: dict = field(default_factory=dict)
    message_id: str | None = None
    envelope_from: str | None = None


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
        _header("Message-ID", rendered.message_id or make_msgid(domain=message_id_domain or _fqdn())),
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


def _smtp_code_permanent(code) -> bool:
    return isinstance(code, int) and 500 <= code < 600


def _text(msg) -> str:
    return msg.decode(errors="replace") if isinstance(msg, bytes) else str(msg)


def classify_smtp_error(exc: BaseException) -> EmailSendError:
    """Temporary (try again): 4xx replies, refused/dropped connections, timeouts. Else permanent."""
    if isinstance(exc, EmailSendError):
        return exc
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        replies = [_text(msg) for _, msg in exc.recipients.values()]
        detail = "; ".join(f"{addr}: {code} {_text(msg)}" for addr, (code, msg) in exc.recipients.items())
        temporary = all(map(_smtp_code_temporary, codes))
        # A 5xx at RCPT: the address is refused for good (a bounce).
        return EmailSendError(f"SMTP recipient refused: {detail}", temporary=temporary,
                              refused=not temporary and all(_smtp_code_permanent(c) for c in codes),
                              code=codes[0] if codes else None, reply=replies[0] if replies else None)
    if isinstance(exc, smtplib.SMTPResponseException):
        msg = _text(exc.smtp_error)
        # A 5xx to DATA refuses this message for good (a bounce); a 5xx to MAIL FROM is about
        # our sender, and one to HELO/AUTH about our setup: permanent failures, not bounces.
        refused = isinstance(exc, smtplib.SMTPDataError) and _smtp_code_permanent(exc.smtp_code)
        return EmailSendError(f"SMTP error {exc.smtp_code}: {msg}", temporary=_smtp_code_temporary(exc.smtp_code),
                              refused=refused, code=exc.smtp_code, reply=msg)
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
            self._host.sendmail(rendered.envelope_from or self._sender, [to_header], data)
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

