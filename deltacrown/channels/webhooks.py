"""Which Discord webhook URLs we accept.

Only `<DISCORD_API_BASE>/webhooks/<numeric id>/<token>`: the server never posts
to an address a user chose freely (no requests to internal hosts).
"""
from __future__ import annotations

import re
from urllib.parse import urlsplit

from flask import current_app

_PATH = re.compile(r"^/webhooks/(\d{1,25})/([A-Za-z0-9_\-]{1,100})/?$")


def webhook_url_problem(url: str, api_base: str | None = None) -> str | None:
    """None when the URL is an acceptable Discord webhook URL, else why not."""
    base = (api_base or current_app.config["DISCORD_API_BASE"]).rstrip("/")
    if not isinstance(url, str) or len(url) > 500:
        return "must be a Discord webhook URL of at most 500 characters"
    try:
        parts, base_parts = urlsplit(url), urlsplit(base)
        username, password = parts.username, parts.password  # parsed lazily: may raise too
    except ValueError:
        # e.g. fullwidth characters that normalize to '/' or '@', or an unclosed '[' host
        return f"must be a Discord webhook URL under {base}/webhooks/ (this one cannot be parsed)"
    if (parts.scheme, parts.netloc.lower()) != (base_parts.scheme, base_parts.netloc.lower()) \
            or parts.query or parts.fragment or username or password:
        return f"must be a Discord webhook URL under {base}/webhooks/"
    base_path = base_parts.path.rstrip("/")
    if not parts.path.startswith(base_path + "/webhooks/") or not _PATH.match(parts.path[len(base_path):]):
        return f"must look like {base}/webhooks/<id>/<token>"
    return None
