"""Fixtures for the player-page tests (center, badge, preference editor)."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest

from deltacrown.extensions import db
from deltacrown.notifications.models import Notification
from deltacrown.timeutil import utcnow

# What htmx sends with every request it makes.
HX = {"HX-Request": "true"}


@pytest.fixture
def notify(app):
    """`notify(user_id, count=1, type=..., **fields)` inserts notifications, oldest first; returns ids."""

    def create(user_id: int, count: int = 1, type: str = "announcement", minutes_apart: int = 1, **fields):
        ids = []
        with app.app_context():
            start = utcnow() - timedelta(minutes=minutes_apart * count)
            for i in range(count):
                n = Notification(user_id=user_id, type=type, title=fields.get("title", f"{type} #{i}"),
                                 body=fields.get("body", ""), url=fields.get("url"),
                                 is_read=fields.get("is_read", False),
                                 created_at=start + timedelta(minutes=minutes_apart * i))
                if n.is_read:  # read implies seen
                    n.read_at = n.seen_at = n.created_at
                db.session.add(n)
                db.session.flush()
                ids.append(n.id)
            db.session.commit()
        return ids

    return create


@pytest.fixture
def alice(users, auth):
    """A logged-in player."""
    uid = users.create("alice")
    auth.login("alice")
    return uid


def csrf_from(html: str) -> str:
    match = re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
    assert match, "page has no csrf-token meta tag"
    return match.group(1)
