"""Login does the same work for unknown users (no timing oracle); browser sessions can
be revoked (log out everywhere, password or token change); API tokens can be rotated."""
from __future__ import annotations

import pytest
from werkzeug import security

from deltacrown.accounts import services


@pytest.fixture
def hash_checks(monkeypatch):
    """Every password-hash check login makes: (hash method, parameters), recorded around
    werkzeug's real check (which still runs)."""
    seen = []
    real = security.check_password_hash

    def recording(pwhash, password):
        seen.append(pwhash.split("$", 1)[0])
        return real(pwhash, password)

    monkeypatch.setattr(services, "check_password_hash", recording)
    return seen


def test_unknown_user_costs_the_same_password_hash_check_as_a_wrong_password(client, users, hash_checks):
    users.create("ann")
    wrong = client.post("/login", data={"username": "ann", "password": "not-her-password"})
    unknown = client.post("/login", data={"username": "nobody", "password": "not-her-password"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_data(as_text=True).count("Wrong username or password") == 1
    assert unknown.get_data(as_text=True).count("Wrong username or password") == 1
    assert len(hash_checks) == 2, hash_checks
    # the same algorithm with the same cost parameters, e.g. "scrypt:32768:8:1"
    assert hash_checks[0] == hash_checks[1]


def _browser(app, users, name):
    client = app.test_client()
    assert client.post("/login", data={"username": name, "password": users.passwords[name]}).status_code == 302
    assert client.get("/settings/notifications").status_code == 200
    return client


def _logged_out(client) -> bool:
    response = client.get("/settings/notifications")
    return response.status_code == 302 and "/login" in response.headers["Location"]


def test_log_out_everywhere_ends_the_other_browser_session(app, users):
    users.create("ann")
    users.create("bob")
    laptop, phone, bobs = _browser(app, users, "ann"), _browser(app, users, "ann"), _browser(app, users, "bob")
    page = laptop.get("/settings/notifications").get_data(as_text=True)
    assert "Log out everywhere" in page
    response = laptop.post("/logout-everywhere")
    assert response.status_code == 302
    assert _logged_out(phone)
    assert _logged_out(laptop)
    assert not _logged_out(bobs)  # other people are not affected
    # logging in again works, and that new session stays
    again = _browser(app, users, "ann")
    assert not _logged_out(again)


def test_log_out_everywhere_needs_the_csrf_token(app, users):
    app.config["WTF_CSRF_ENABLED"] = True
    users.create("ann")
    client = app.test_client()
    login_page = client.get("/login").get_data(as_text=True)
    token = login_page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0] \
        if 'name="csrf_token" type="hidden" value="' in login_page \
        else login_page.split('name="csrf_token" value="')[1].split('"')[0]
    client.post("/login", data={"username": "ann", "password": users.passwords["ann"], "csrf_token": token})
    assert client.post("/logout-everywhere").status_code == 400
    assert not _logged_out(client)


def test_rotating_the_api_token(app, client, users):
    users.create("ann")
    old = users.headers("ann")
    browser = _browser(app, users, "ann")
    response = client.post("/api/v1/me/token", headers=old)
    assert response.status_code == 200, response.get_data(as_text=True)
    new_token = response.json["api_token"]
    assert set(response.json) == {"api_token"} and len(new_token) >= 32
    assert client.get("/api/v1/me", headers=old).status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {new_token}"}).json["username"] == "ann"
    assert _logged_out(browser)  # a token change ends the browser sessions too
    assert client.post("/api/v1/me/token").status_code == 401
    # described in the OpenAPI document the server validates requests against
    document = client.get("/api/v1/openapi.json").json
    ref = document["paths"]["/api/v1/me/token"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert "api_token" in document["components"]["schemas"][ref["$ref"].rsplit("/", 1)[1]]["properties"]


def test_rotate_token_cli(app, runner, client, users):
    users.create("ann")
    old = users.headers("ann")
    browser = _browser(app, users, "ann")
    result = runner.invoke(args=["rotate-token", "ANN"])
    assert result.exit_code == 0, result.output
    new_token = result.output.strip().splitlines()[-1].split()[-1]
    assert client.get("/api/v1/me", headers=old).status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {new_token}"}).status_code == 200
    assert _logged_out(browser)
    unknown = runner.invoke(args=["rotate-token", "nobody"])
    assert unknown.exit_code != 0 and "no user named 'nobody'" in unknown.output.lower()


def test_password_change_ends_other_sessions(app, runner, client, users):
    users.create("ann")
    browser = _browser(app, users, "ann")
    result = runner.invoke(args=["set-password", "ann"], input="a-brand-new-password\na-brand-new-password\n")
    assert result.exit_code == 0, result.output
    assert _logged_out(browser)
    assert client.post("/login", data={"username": "ann", "password": users.passwords["ann"]}).status_code == 401
    assert client.post("/login", data={"username": "ann", "password": "a-brand-new-password"}).status_code == 302
    short = runner.invoke(args=["set-password", "ann"], input="short\nshort\n")
    assert short.exit_code != 0 and "at least 8 characters" in short.output
