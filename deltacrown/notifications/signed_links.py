"""Signed links in emails (unsubscribe, invite answers): a token that is its own proof.

A token is a small dict signed with the app's SECRET_KEY (itsdangerous) under a salt
naming its purpose, so a token made for one purpose is refused by another; it carries
its signing time, and reading it checks an age limit. A link that cannot be read raises
InvalidLink (or the purpose's subclass) with a message for the page and the status to
answer with.
"""
from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer


class InvalidLink(Exception):
    """The link was altered, is too old (`expired`), names something that no longer exists,
    or no longer applies; `message` says which to the reader, `status` is the page's."""

    def __init__(self, message: str, status: int = 400, expired: bool = False):
        super().__init__(message)
        self.message = message
        self.status = status
        self.expired = expired


@dataclass(frozen=True)
class SignedLinks:
    """Tokens for one purpose (`salt`). A token that fails its signature raises `error`
    with `invalid`; one older than the age limit with `expired` and `expired_status`."""
    salt: str
    error: type[InvalidLink]
    expired: str
    invalid: str
    expired_status: int = 400

    def _serializer(self) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=self.salt)

    def dump(self, data: dict) -> str:
        return self._serializer().dumps(data)

    def peek(self, token: str):
        """The token's data without checking it (None when it cannot be decoded): only to
        choose how to check it."""
        try:
            return self._serializer().loads_unsafe(token)[1]
        except Exception:
            return None

    def load(self, token: str, max_age: int | None):
        """The token's data, signature and age checked."""
        try:
            return self._serializer().loads(token or "", max_age=max_age)
        except SignatureExpired:
            raise self.error(self.expired, status=self.expired_status, expired=True) from None
        except BadSignature:
            raise self.error(self.invalid) from None


def short_signature(purpose: str, value: str, length: int = 16) -> str:
    """A short HMAC of `value` under SECRET_KEY for `purpose`, in lower-case hex: for tokens
    that travel where case may be lost (an email address's local part, a Message-ID) and
    must stay short (a local part holds 64 characters). Compare with hmac.compare_digest."""
    import hashlib
    import hmac

    key = f"{purpose}:{current_app.config['SECRET_KEY']}".encode()
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:length]
