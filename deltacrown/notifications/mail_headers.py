"""What identifies an email we send, and the headers a careful bulk sender sets.

Each email is tied to what it delivers by a short signed token: `d<delivery id>-<signature>`
for a notification email (a Delivery row), `g<digest id>-<signature>` for a daily digest
(a NotificationDigest row). The token appears twice:

- in the return path (VERP): MAIL_BOUNCE_ADDRESS `bounces@example.com` becomes
  `bounces+d42-0123456789abcdef@example.com`, so a bounce, which goes to the return path,
  names the email it is about even when the receiving server quotes nothing of it;
- in the Message-ID, `<dc.d42-0123456789abcdef@example.com>`: the same for every try of a
  delivery (a retry reuses it), and what a complaint (ARF) or a DSN quotes of the original.

The signature (HMAC under SECRET_KEY, lower-case hex: a local part may lose its case) means
a forged bounce cannot name an email of someone else's.

Headers (RFC 2919 List-Id per mail stream, Google's Feedback-ID, RFC 3834 Auto-Submitted,
Precedence: bulk for the digest only) are added by `stream_headers`.
"""
from __future__ import annotations

import hmac
import re

from flask import current_app
from flask_mail import sanitize_address

from .signed_links import short_signature

DELIVERY, DIGEST = "d", "g"  # what a token names
STREAM_NOTIFICATIONS, STREAM_DIGEST = "notifications", "digest"
_PURPOSE = "email-identity"
TOKEN_PATTERN = re.compile(r"\b([dg])(\d{1,18})-([0-9a-f]{16})\b", re.I)


def token(kind: str, ident: int) -> str:
    return f"{kind}{int(ident)}-{short_signature(_PURPOSE, f'{kind}{int(ident)}')}"


def read_token(text: str) -> tuple[str, int] | None:
    """(kind, id) of the first genuine token in `text` (an address, a Message-ID, a header), or None."""
    for match in TOKEN_PATTERN.finditer(text or ""):
        kind, ident, signature = match.group(1).lower(), match.group(2), match.group(3).lower()
        if hmac.compare_digest(signature, short_signature(_PURPOSE, f"{kind}{int(ident)}")):
            return kind, int(ident)
    return None


def mail_domain() -> str:
    """The domain of our Message-IDs and List-Ids: MAIL_BOUNCE_ADDRESS's, else the sender's."""
    config = current_app.config
    address = config.get("MAIL_BOUNCE_ADDRESS") or sanitize_address(config.get("MAIL_DEFAULT_SENDER") or "")
    domain = address.rpartition("@")[2].strip(" >").lower()
    return domain or "deltacrown.local"


def message_id(kind: str, ident: int) -> str:
    return f"<dc.{token(kind, ident)}@{mail_domain()}>"


def return_path(kind: str, ident: int) -> str | None:
    """bounces+<token>@domain, or None without MAIL_BOUNCE_ADDRESS (the sender's address is used)."""
    bounce = current_app.config.get("MAIL_BOUNCE_ADDRESS")
    if not bounce:
        return None
    local, _, domain = bounce.partition("@")
    return f"{local}+{token(kind, ident)}@{domain}"


def stream_headers(stream: str, type_name: str) -> dict:
    """List-Id, Feedback-ID, Auto-Submitted (and Precedence: bulk for the digest)."""
    domain = mail_domain()
    headers = {
        "List-Id": f"DeltaCrown {stream} <{stream}.{domain}>",
        # campaign:customer:mailtype:sender: a provider's feedback loop reports complaints per value.
        "Feedback-ID": f"{type_name}:{stream}:deltacrown:{domain}",
        "Auto-Submitted": "auto-generated",
    }
    if stream == STREAM_DIGEST:
        headers["Precedence"] = "bulk"
    return headers
