"""CSRF on every state-changing page route (enumerated from the app's url_map), session
cookie flags, and a Content-Security-Policy that allows only the site's own scripts."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from deltacrown.extensions import db
from deltacrown.notifications.models import Notification
from deltacrown.queue import get_redis

HX = {"HX-Request": "true"}
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
# Documented exemptions: the JSON API is Bearer-only (cookies are not accepted there), and
# the one-click unsubscribe POST comes from mail clients (RFC 8058) carrying a signed token,
# and so does an emailed Accept / Decline (a signed link bound to user, invite and action).
EXEMPT_PREFIXES = ("/api/v1/", "/unsubscribe/", "/email-actions/")


@pytest.fixture
def app_config():
    return {"WTF_CSRF_ENABLED": True}


def token_in(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or \
        re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def login(client, username, password):
    token = token_in(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"username": username, "password": password, "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    return response


def snapshot(app):
    """Every row of every table, and the Redis keys (queues, job records)."""
    with app.app_context():
        rows = {}
        for table in db.metadata.sorted_tables:
            rows[table.name] = sorted(map(repr, db.session.execute(select(table)).all()))
        db.session.remove()
    keys = sorted(get_redis(app).keys("*"))
    return rows, keys


def state_changing_page_rules(app):
    rules = []
    for rule in app.url_map.iter_rules():
        methods = sorted((rule.methods or set()) & STATE_CHANGING)
        if methods and not rule.rule.startswith(EXEMPT_PREFIXES):
            rules.append((rule, methods))
    return rules


def test_every_state_changing_page_route_needs_the_token(app, client, users):
    admin = users.create("root", admin=True)
    login(client, "root", users.passwords["root"])
    with app.app_context():
        note = Notification(user_id=admin, type="announcement", title="t", body="b", is_read=False)
        db.session.add(note)
        db.session.commit()
        nid = note.id
        # a team with a member and an invite, so the team and invite pages' routes hit real rows
        from deltacrown.accounts.models import User
        from deltacrown.teams import services as team_services

        root = db.session.get(User, admin)
        team = team_services.create_team("Crimson Hawks", admin)
        member, invitee = users.create("ann"), users.create("eve")
        team_services.add_member(root, team, member)
        invite = team_services.invite_user(root, team, invitee)
        team_id, invite_id = team.id, invite.id
        from deltacrown.notifications.mutes import mute

        mute_id = mute(admin, team_id=team_id).id  # so the unmute route hits a real row
    values = {"notification_id": nid, "job_id": "some-failed-job", "name": "recompute-rankings",
              "team_id": team_id, "user_id": member, "invite_id": invite_id, "mute_id": mute_id,
              # refused for the token before any lookup: no row needed
              "payout_id": 1, "suppression_id": 1}
    rules = state_changing_page_rules(app)
    endpoints = {rule.endpoint for rule, _ in rules}
    # the ones we know of are all found (the enumeration itself works)
    assert {"auth.logout", "notification_settings.save", "notification_pages.read_all",
            "ops.run_job"} <= endpoints, endpoints
    before = snapshot(app)
    refused = []
    for rule, methods in rules:
        unknown = set(rule.arguments) - values.keys()
        assert not unknown, f"{rule.rule}: give a value for {unknown} in this test"
        path = rule.build({k: values[k] for k in rule.arguments})[1]
        for method in methods:
            for headers in ({}, HX, {**HX, "X-CSRFToken": "forged"}):
                response = client.open(path, method=method, headers=headers,
                                       data={"digest_time": "10:00", "discord_webhook_url": ""})
                if response.status_code != 400:
                    refused.append(f"{method} {path} {headers}: {response.status_code}")
    assert not refused, refused
    assert snapshot(app) == before, "a request without a valid CSRF token changed something"
    # still logged in: the tokenless logout did not log us out
    assert client.get("/notifications").status_code == 200


def test_the_right_token_in_the_htmx_header_is_accepted(app, client, users):
    """Positive control: the refusals above are about the token, not the route."""
    uid = users.create("alice")
    login(client, "alice", users.passwords["alice"])
    token = token_in(client.get("/notifications").get_data(as_text=True))
    with app.app_context():
        db.session.add(Notification(user_id=uid, type="announcement", title="t", body="b", is_read=False))
        db.session.commit()
    response = client.post("/notifications/read-all", headers={**HX, "X-CSRFToken": token})
    assert response.status_code == 200
    with app.app_context():
        assert db.session.scalar(select(Notification.is_read)) is True


def _session_cookie(response) -> str:
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert cookies, response.headers
    return cookies[-1]


@pytest.mark.parametrize("base_url, secure", [("https://deltacrown.example", True),
                                              ("http://localhost:5000", False)])
def test_session_cookie_flags(database_url, redis_url, users, base_url, secure):
    from tests.conftest import _reset_schema, make_test_app

    site = make_test_app(database_url, redis_url, PUBLIC_BASE_URL=base_url, WTF_CSRF_ENABLED=True)
    _reset_schema(site)
    with site.app_context():
        from deltacrown.accounts.services import create_user

        create_user("carol", "carol@example.com", password="carol-password")
    client = site.test_client()
    cookie = _session_cookie(login(client, "carol", "carol-password"))
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")[1:]}
    assert "httponly" in attributes, cookie
    assert attributes.get("samesite", "").lower() in ("samesite=lax", "samesite=strict"), cookie
    assert ("secure" in attributes) is secure, cookie
    with site.app_context():
        db.session.remove()
        db.engine.dispose()


def _csp(response) -> dict[str, list[str]]:
    header = response.headers.get("Content-Security-Policy")
    assert header, f"no CSP on {response.request.path}"
    return {d.split()[0]: d.split()[1:] for d in header.split(";") if d.strip()}


def test_pages_allow_only_the_sites_own_scripts(app, client, users):
    users.create("root", admin=True)
    pages = ["/login"]
    anonymous = client.get("/login")
    login(client, "root", users.passwords["root"])
    pages = ["/", "/notifications", "/settings/notifications", "/ops", "/ops/live", "/admin/email-preview"]
    checked = [anonymous] + [client.get(p) for p in pages]
    for response in checked:
        assert response.status_code == 200, (response.request.path, response.status_code)
        policy = _csp(response)
        scripts = policy.get("script-src", policy.get("default-src"))
        assert scripts == ["'self'"], (response.request.path, scripts)
        assert policy.get("default-src") == ["'self'"]
        assert policy.get("object-src") == ["'none'"]
        assert policy.get("frame-ancestors") == ["'none'"]
        html = response.get_data(as_text=True)
        # the policy does not break our own pages: no inline script or handler attributes
        for tag in re.findall(r"<script\b[^>]*>", html, flags=re.I):
            assert re.search(r'\ssrc="/static/', tag), (response.request.path, tag)
        assert not re.search(r"\son[a-z]+\s*=", html, flags=re.I), response.request.path
        assert "javascript:" not in html.lower()
