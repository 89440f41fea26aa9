"""Same-site links: what may be redirected to or shown as a link to a player.

Login's `next`, "mark read" forms and notification links (center, emails, Discord)
must never lead off the site. A target qualifies only when it is a path on this
site as a browser reads it: browsers treat `\\` like `/`, drop tabs and newlines
inside a URL and resolve `//host` to another host, so such characters are refused
outright — also when percent-encoded, in case something decodes the target again.

And the links built once and kept (`remembered`): the same on every request under one
script root.
"""
from __future__ import annotations

import unicodedata
from urllib.parse import unquote, urlsplit


def _plain(text: str, refused_categories: str) -> bool:
    return "\\" not in text and not any(unicodedata.category(c)[0] in refused_categories for c in text)


def same_site_path(target: str | None) -> str | None:
    """`target` when it is a path on this site ("/teams/3?tab=x#y"), else None."""
    if not target or not isinstance(target, str):
        return None
    # As written: no control or format characters (tab, newline, NUL, bidi overrides, ...)
    # and no separators (space, U+2028); once decoded, an encoded space ("?q=a%20b") is fine.
    for form, refused_categories in ((target, "CZ"), (unquote(target), "C")):
        if not form.startswith("/") or form.startswith("//") or not _plain(form, refused_categories):
            return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def site_path(url: str | None, base: str) -> str | None:
    """The same-site path of a link given as a path or as an absolute URL under `base`
    (PUBLIC_BASE_URL), else None."""
    if not url:
        return None
    base = base.rstrip("/")
    if base and url.startswith(base + "/"):
        url = url[len(base):]
    return same_site_path(url)


def remembered(store: dict, key, make, limit: int):
    """`store[key]`, made by `make()` the first time. URLs built once per script root are kept
    this way; past `limit` entries (keys a client made up: a prefix a proxy passes on) the
    store starts over rather than grow without end."""
    value = store.get(key)
    if value is None:
        if len(store) >= limit:
            store.clear()
        value = store[key] = make()
    return value
