"""CSRF: every state-changing page request needs the token; htmx sends it in a
header (X-CSRFToken, from the page's meta tag), plain forms in a hidden field."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from deltacrown.extensions import db
from deltacrown.notifications.models import Notification, NotificationPreferenceChange

from .conftest import HX, csrf_from


@pytest.fixture
def app_config():
    return {"WTF_CSRF_ENABLED": True}


@pytest.fixture
def player(client, users):
    """Log in through the real form (which itself needs the token); returns (id, token)."""
    uid = users.create("alice")
    login_page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', login_page).group(1)
    response = client.post("/login", data={"username": "alice", "password": "alice-password", "csrf_token": token})
    assert response.status_code == 302
    return uid, csrf_from(client.get("/notifications").get_data(as_text=True))


def _unread(app, uid):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Notification)
                                 .where(Notification.user_id == uid, Notification.is_read.is_(False)))


def test_posts_without_the_token_are_refused_and_change_nothing(app, client, player, notify):
    uid, _ = player
    (nid,) = notify(uid, url="/x")
    for path in (f"/notifications/{nid}/read", f"/notifications/{nid}/open", "/notifications/read-all",
                 "/notifications/clear-read"):
        for headers in ({}, HX, {**HX, "X-CSRFToken": "forged"}):
            assert client.post(path, headers=headers).status_code == 400, path
    assert _unread(app, uid) == 1
    page = client.post(f"/notifications/{nid}/read").get_data(as_text=True)
    assert "Nothing was changed" in page and "Reload the page and try again" in page
    response = client.post("/settings/notifications", data={"digest_time": "10:00"}, headers=HX)
    assert response.status_code == 400
    assert client.post("/settings/notifications/discord-test", data={"discord_webhook_url": ""}).status_code == 400
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(NotificationPreferenceChange)) == 0


def test_htmx_header_token_is_accepted(app, client, player, notify):
    uid, token = player
    (nid,) = notify(uid)
    response = client.post(f"/notifications/{nid}/read", headers={**HX, "X-CSRFToken": token})
    assert response.status_code == 200
    assert _unread(app, uid) == 0
    notify(uid, 2)
    assert client.post("/notifications/read-all", headers={**HX, "X-CSRFToken": token}).status_code == 200
    assert _unread(app, uid) == 0


def test_form_field_token_is_accepted(app, client, player, notify):
    uid, token = player
    (nid,) = notify(uid)
    response = client.post(f"/notifications/{nid}/read", data={"csrf_token": token})
    assert response.status_code == 303 and _unread(app, uid) == 0
    page = client.get("/settings/notifications").get_data(as_text=True)
    form_token = re.search(r'id="prefs-form".*?name="csrf_token" value="([^"]+)"', page, re.S).group(1)
    response = client.post("/settings/notifications",
                           data={"csrf_token": form_token, "digest_time": "10:00", "timezone": "UTC"})
    assert response.status_code == 303
