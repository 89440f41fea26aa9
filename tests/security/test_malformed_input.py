"""Input that used to crash the server: URLs that `urlsplit` cannot parse, and
announcement recipient lists longer than PostgreSQL's 65,535 bind parameters.
Each must be a 4xx naming the field (or work), never a 500."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select
from werkzeug.security import generate_password_hash

from deltacrown.accounts.models import User
from deltacrown.channels.webhooks import webhook_url_problem
from deltacrown.extensions import db
from deltacrown.notifications.models import NotificationPreference
from tests.api.conftest import api, league  # noqa: F401  (same world as the API tests)

# Fullwidth solidus/at/colon normalize (NFKC) to '/', '@', ':' inside the host, and an
# unclosed IPv6 bracket: urlsplit raises ValueError on all of them.
UNPARSABLE = ["https://discord.com／api/webhooks/1/x", "https://discord.com＠evil/api/webhooks/1/x",
              "https://[::1", "http://[::1/api/webhooks/1/x", "https://discord.com：443/api/webhooks/1/x"]


@pytest.mark.parametrize("url", UNPARSABLE)
def test_preferences_api_refuses_unparsable_webhook_url(app, client, users, url):
    users.create("ann")
    response = client.put("/api/v1/preferences", json={"discord_webhook_url": url}, headers=users.headers("ann"))
    assert response.status_code == 422, response.get_data(as_text=True)[:300]
    assert "discord_webhook_url" in response.json["error"]["fields"]
    assert client.get("/api/v1/preferences", headers=users.headers("ann")).json["discord_webhook_url"] is None


@pytest.mark.parametrize("url", UNPARSABLE)
def test_team_webhook_api_refuses_unparsable_url(app, api, league, url):  # noqa: F811
    response = api.put(f"/teams/{league['red']}/discord-webhook", "cap", {"url": url})
    assert response.status_code == 422, response.get_data(as_text=True)[:300]
    assert "url" in response.json["error"]["fields"]


@pytest.mark.parametrize("url", UNPARSABLE[:2])
def test_settings_form_refuses_unparsable_webhook_url(app, client, users, url):
    users.create("ann")
    client.post("/login", data={"username": "ann", "password": users.passwords["ann"]})
    response = client.post("/settings/notifications", data={"discord_webhook_url": url, "timezone": "UTC",
                                                             "digest_time": "08:00"})
    assert response.status_code == 422
    assert "cannot be parsed" in response.get_data(as_text=True)
    test = client.post("/settings/notifications/discord-test", data={"discord_webhook_url": url})
    assert test.status_code == 422


@settings(max_examples=300, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(url=st.builds(lambda a, b, c: a + b + c,
                     st.sampled_from(["https://discord.com", "https://", "http://[", "https://discord.com/api", ""]),
                     st.text(alphabet=st.sampled_from("／＠：＃？[]:@/%\u2100\u2048ａ1"), max_size=6),
                     st.sampled_from(["", "/webhooks/1/x", "/api/webhooks/1/x", "]"])))
def test_webhook_url_check_never_raises(url):
    problem = webhook_url_problem(url, api_base="https://discord.com/api")
    assert problem is None or isinstance(problem, str)


def test_announcement_to_more_users_than_postgresql_bind_parameters(app, client, users):
    """70,000 named recipients: 202 and every one of them gets the announcement."""
    users.create("admin", admin=True)
    count = 70_000
    with app.app_context():
        password = generate_password_hash("unused-password", method="pbkdf2:sha256:1")
        first = db.session.scalar(select(db.func.max(User.id))) + 1
        db.session.execute(insert(User), [
            {"id": first + n, "username": f"p{n}", "email": f"p{n}@example.com", "password_hash": password,
             "is_admin": False, "timezone": "UTC"} for n in range(count)])
        db.session.execute(insert(NotificationPreference), [{"user_id": first + n} for n in range(count)])
        db.session.commit()
        if db.engine.dialect.name == "postgresql":
            db.session.execute(db.text("SELECT setval('users_id_seq', (SELECT max(id) FROM users))"))
            db.session.commit()
    ids = list(range(first, first + count))
    response = client.post("/api/v1/announcements", json={"title": "Server move", "user_ids": ids},
                           headers=users.headers("admin"))
    assert response.status_code == 202, response.get_data(as_text=True)[:300]
    missing = client.post("/api/v1/announcements", json={"title": "x", "user_ids": ids + [first + count + 5]},
                          headers=users.headers("admin"))
    assert missing.status_code == 404 and str(first + count + 5) in missing.json["error"]["fields"]["user_ids"]


@pytest.mark.parametrize("current_url", UNPARSABLE)
def test_logged_out_htmx_request_with_an_unparsable_current_url_goes_to_login(client, current_url):
    # htmx sends the page's address in HX-Current-URL; anyone can send any value.
    response = client.get("/notifications/badge", headers={"HX-Request": "true", "HX-Current-URL": current_url})
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert response.headers["HX-Redirect"] == "/login?next=/notifications/badge"
