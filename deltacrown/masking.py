"""Masking secrets in text that is logged, stored or shown: one helper for every place.

Secrets that travel inside URLs, and so end up in exception messages (requests puts
the URL in its errors), access logs and error rows:

- a Discord webhook's token: `/webhooks/<id>/<token>` -> `/webhooks/<id>/***`
  (the id stays: it tells which webhook without letting anyone post to it);
- an unsubscribe link's signed token: `/unsubscribe/<token>` -> `/unsubscribe/***`;
- the password in a URL's user info (REDIS_URL, DATABASE_URL):
  `redis://:pw@host` -> `redis://:***@host`.

`mask_secrets(text)` does all three. `install_log_masking()` makes every log record
of the process pass through it (message and exception text alike), whichever logger,
handler or formatter emits it: the app's, RQ's, gunicorn's (access log included) and
Werkzeug's.
"""
from __future__ import annotations

import logging
import re
import traceback

MASK = "***"

# A path segment ends at '/', '?', '#', whitespace, a quote or a closing bracket.
_SEGMENT = r"[^/?#\s'\"<>)\]]+"
_WEBHOOK_TOKEN = re.compile(r"(/webhooks/\d+/)" + _SEGMENT)
_UNSUBSCRIBE_TOKEN = re.compile(r"(/unsubscribe/)" + _SEGMENT)
# scheme://[user]:password@  (the password may not contain '@', '/' or whitespace). Anchored
# on "://" alone: matching the scheme too would rescan each dotted word of a long line (quadratic).
_URL_PASSWORD = re.compile(r"(://[^\s:/@'\"]*:)[^\s@/'\"]+(@)")


def mask_secrets(text) -> str:
    """`text` (any value, as str) with webhook tokens, unsubscribe tokens and URL passwords masked."""
    text = text if isinstance(text, str) else str(text)
    if "/" not in text:
        return text  # nothing URL-like: the common case for log lines, kept cheap
    text = _WEBHOOK_TOKEN.sub(r"\1" + MASK, text)
    text = _UNSUBSCRIBE_TOKEN.sub(r"\1" + MASK, text)
    return _URL_PASSWORD.sub(r"\1" + MASK + r"\2", text)


class _MaskedLogRecord(logging.LogRecord):
    def getMessage(self) -> str:
        return mask_secrets(super().getMessage())


def _masking_factory(base_factory):
    def make(*args, **kwargs):
        record = base_factory(*args, **kwargs)
        record.__class__ = _MaskedLogRecord if type(record) is logging.LogRecord else record.__class__
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text when it is set: give them the masked one.
            record.exc_text = mask_secrets("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        if record.stack_info:
            record.stack_info = mask_secrets(record.stack_info)
        return record

    make.masks_secrets = True
    return make


def install_log_masking() -> None:
    """Mask secrets in every log record this process creates (idempotent)."""
    current = logging.getLogRecordFactory()
    if not getattr(current, "masks_secrets", False):
        logging.setLogRecordFactory(_masking_factory(current))
