"""The preference editor without a browser: the grid, saving by htmx and by a
plain form post, field errors for forged or bad input (nothing saved), the
change history, and the Discord test button against a loopback stand-in."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select

from deltacrown.extensions import db
from deltacrown.notifications.models import (
    NotificationPreference,
    NotificationPreferenceChange,
)
from deltacrown.notifications.types import NOTIFICATION_TYPES
from tests.support.processes import free_port

from .conftest import HX


class _FakeDiscord(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.received.append((self.path, json.loads(body or b"null")))
        path = self.path.split("?")[0]
        status = 404 if "/gone/" in path or path.endswith("/404/tok") else 204
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_discord():
    """A real HTTP server on loopback standing in for Discord's webhook endpoint."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeDiscord)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.base = f"http://127.0.0.1:{server.server_port}/api"
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def app_config(fake_discord):
    return {"DISCORD_API_BASE": fake_discord.base}


def full_form(**overrides) -> dict:
    """What the editor posts for the default preferences, with `overrides`."""
    form = {f"channels.{name}": list(t.default_channels) for name, t in NOTIFICATION_TYPES.items()}
    form.update({"enable_daily_digest": "1", "digest_time": "08:00", "timezone": "UTC", "discord_webhook_url": ""})
    form.update(overrides)
    return {k: v for k, v in form.items() if v is not None}


def _pref(app, uid):
    with app.app_context():
        pref = db.session.scalar(select(NotificationPreference).where(NotificationPreference.user_id == uid))
        db.session.expunge(pref)
        return pref


def _change_count(app):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(NotificationPreferenceChange))


def test_logged_out_goes_to_login_and_back(client):
    response = client.get("/settings/notifications")
    assert response.status_code == 302 and response.headers["Location"] == "/login?next=/settings/notifications"
    assert client.post("/settings/notifications", data=full_form()).status_code == 302


def test_grid_has_every_type_by_every_channel(client, alice):
    html = client.get("/settings/notifications").get_data(as_text=True).replace("&#39;", "'")
    for name, t in NOTIFICATION_TYPES.items():
        assert t.description in html
        for channel in ("in_app", "email", "discord"):
            if t.critical and channel == "in_app":  # locked on (tests/pages/test_attention_settings.py)
                assert f'id="ch-{name}-in_app" checked disabled' in html
                continue
            box = f'id="ch-{name}-{channel}" name="channels.{name}" value="{channel}"'
            assert box in html
            assert f'<label for="ch-{name}-{channel}"' in html  # every box has a label
    assert 'type="time" id="digest_time" name="digest_time" value="08:00"' in html
    assert '<datalist id="timezone-list">' in html and '<option value="Europe/Berlin">' in html
    assert "(off: opted out)" in html and "No changes yet." in html


def test_plain_form_post_saves_and_redirects(app, client, alice):
    form = full_form(**{"channels.announcement": ["email"], "channels.match_result": None,
                        "opt_out_discord": "1", "digest_time": "19:30", "timezone": "Europe/Berlin"})
    del form["enable_daily_digest"]
    response = client.post("/settings/notifications", data=form)
    assert response.status_code == 303 and response.headers["Location"] == "/settings/notifications"
    pref = _pref(app, alice)
    assert pref.get_channels_for_type("announcement") == ["email"]
    assert pref.get_channels_for_type("match_result") == []  # unchecked boxes = channel off
    assert pref.chosen_channels("invite_sent") == ["in_app", "email"]
    assert pref.opt_out_discord and not pref.enable_daily_digest
    assert pref.digest_time.strftime("%H:%M") == "19:30" and pref.timezone == "Europe/Berlin"
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Your notification settings are saved." in html
    # the change is recorded, with its source, and the editor shows it
    with app.app_context():
        change = db.session.scalar(select(NotificationPreferenceChange))
        assert change.source == "editor"
        assert change.changes["channels.announcement"] == [["in_app", "email"], ["email"]]
    assert "via <strong>this page</strong>" in html
    assert "Announcement channels: In-app, Email → Email" in html
    assert "Match result channels: In-app, Email → none" in html
    assert "Time zone: UTC → Europe/Berlin" in html


def test_htmx_save_returns_the_editor_with_saved_confirmation(app, client, alice):
    response = client.post("/settings/notifications", data=full_form(**{"channels.announcement": ["email"]}),
                           headers=HX)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "<html" not in html and html.lstrip().startswith('<div id="prefs-editor">')
    assert "✓ Saved" in html and "Announcement channels: In-app, Email → Email" in html
    assert _pref(app, alice).get_channels_for_type("announcement") == ["email"]


@pytest.mark.parametrize("overrides, field, message", [
    ({"channels.bogus_type": ["email"]}, "channels", "unknown notification type 'bogus_type'"),
    ({"channels.announcement": ["email", "sms"]}, "channels", "unknown channel 'sms'"),
    ({"digest_time": "25:99"}, "digest_time", "HH:MM between 00:00 and 23:59"),
    ({"timezone": "Mars/Olympus_Mons"}, "timezone", "unknown IANA time zone 'Mars/Olympus_Mons'"),
    ({"discord_webhook_url": "https://evil.example/api/webhooks/1/abc"}, "discord_webhook_url",
     "must be a Discord webhook URL under"),
])
def test_bad_input_is_shown_on_the_page_and_nothing_is_saved(app, client, alice, overrides, field, message):
    before = _pref(app, alice)
    form = full_form(**{"channels.invite_sent": ["email"], "opt_out_email": "1", **overrides})
    for headers in (HX, {}):  # htmx: the editor partial; plain post: the whole page
        response = client.post("/settings/notifications", data=form, headers=headers)
        assert response.status_code == 422
        html = response.get_data(as_text=True)
        assert "Nothing was saved." in html and message in html.replace("&#39;", "'")
        assert f'id="{field}-error"' in html
        assert ("<html" in html) == (not headers)
        # what the player typed is shown back (the valid parts too)
        assert 'id="opt_out_email" name="opt_out_email" value="1" checked' in html
    after = _pref(app, alice)
    assert (after.channels, after.opt_out_email, after.digest_time, after.timezone) == \
        (before.channels, before.opt_out_email, before.digest_time, before.timezone)
    assert _change_count(app) == 0


def test_webhook_url_under_discord_api_base_is_saved(app, client, alice, fake_discord):
    url = f"{fake_discord.base}/webhooks/123/tok-en"
    response = client.post("/settings/notifications", data=full_form(discord_webhook_url=url), headers=HX)
    assert response.status_code == 200
    assert _pref(app, alice).discord_webhook_url == url
    assert "Discord webhook: none → set" in response.get_data(as_text=True)  # the token is not echoed in history


def test_send_a_test_message(app, client, alice, fake_discord):
    url = f"{fake_discord.base}/webhooks/123/tok-en"
    response = client.post("/settings/notifications/discord-test", data={"discord_webhook_url": url}, headers=HX)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and html.lstrip().startswith('<p id="webhook-test-result"')
    assert "Test message sent" in html
    assert fake_discord.received[0][0].split("?")[0] == "/api/webhooks/123/tok-en"
    assert "DeltaCrown" in fake_discord.received[0][1]["content"]
    # Discord says the webhook is gone
    response = client.post("/settings/notifications/discord-test",
                           data={"discord_webhook_url": f"{fake_discord.base}/webhooks/404/tok"}, headers=HX)
    assert "does not exist" in response.get_data(as_text=True)
    # without JavaScript: the whole page, with the result
    response = client.post("/settings/notifications/discord-test", data=full_form(discord_webhook_url=url))
    assert response.status_code == 200 and "<html" in response.get_data(as_text=True)
    assert "Test message sent" in response.get_data(as_text=True)
    assert len(fake_discord.received) == 3


@pytest.mark.parametrize("url", ["https://evil.example/api/webhooks/1/abc", "http://127.0.0.1:1/admin", ""])
def test_test_message_never_goes_outside_discord_api_base(app, client, alice, fake_discord, url):
    response = client.post("/settings/notifications/discord-test", data={"discord_webhook_url": url}, headers=HX)
    assert response.status_code == 422
    assert "Not sent" in response.get_data(as_text=True) or "Enter a Discord webhook URL" in response.get_data(as_text=True)
    assert fake_discord.received == []


def test_unreachable_discord_is_a_message_not_a_500(app, client, alice):
    # a closed loopback port under the configured base: connection refused
    port = free_port()
    app.config["DISCORD_API_BASE"] = f"http://127.0.0.1:{port}/api"
    response = client.post("/settings/notifications/discord-test",
                           data={"discord_webhook_url": f"http://127.0.0.1:{port}/api/webhooks/1/x"}, headers=HX)
    assert response.status_code == 200 and "Could not reach Discord" in response.get_data(as_text=True)
