"""The settings page's "send a test message" button cannot be turned into a way to
hammer Discord (which bans an IP after 10,000 invalid requests in 10 minutes) or to
make the server follow a redirect somewhere else. Against the loopback Discord stand-in."""
from __future__ import annotations

import re

import pytest

from deltacrown.queue import get_redis

PER_USER = 3


@pytest.fixture
def app_config(discord_server):
    return {**discord_server.config(), "WEBHOOK_TEST_RATE_LIMIT": f"{PER_USER} per minute",
            "DISCORD_MAX_REQUESTS_PER_SECOND": 2}


def _login(app, users, name):
    client = app.test_client()
    users.create(name)
    response = client.post("/login", data={"username": name, "password": users.passwords[name]})
    assert response.status_code == 302
    return client


def _click(client, url, htmx=True):
    headers = {"HX-Request": "true"} if htmx else {}
    return client.post("/settings/notifications/discord-test", data={"discord_webhook_url": url}, headers=headers)


def test_one_more_click_than_the_per_user_limit_is_a_429_and_never_reaches_discord(app, users, discord_server):
    client = _login(app, users, "ann")
    # each click its own webhook, so only the per-user limit can stop the extra one
    answers = [_click(client, discord_server.webhook_url(100 + n)) for n in range(PER_USER + 1)]
    assert [a.status_code for a in answers[:PER_USER]] == [200] * PER_USER
    assert answers[-1].status_code == 429
    text = answers[-1].get_data(as_text=True)
    assert "test messages" in text and "try again" in text.lower()
    assert len(discord_server.requests) == PER_USER
    assert discord_server.messages(100 + PER_USER) == []
    # counted in Redis, so every web process shares the count
    assert any(b"webhook-test" in key for key in get_redis(app).keys("*"))
    # the full page (no htmx) says the same
    page = _click(client, discord_server.webhook_url(200), htmx=False)
    assert page.status_code == 429 and "try again" in page.get_data(as_text=True).lower()


def test_clicks_of_different_users_share_the_webhook_rate_limiter(app, users, discord_server):
    clients = [_login(app, users, name) for name in ("ann", "bob", "cyd", "dee")]
    url = discord_server.webhook_url(7)
    answers = [_click(c, url) for c in clients]
    assert all(a.status_code in (200, 429) for a in answers), [a.status_code for a in answers]
    assert discord_server.max_requests_in_window(7, 1.0) <= 2


@pytest.mark.parametrize("status", [401, 404])
def test_a_webhook_discord_calls_invalid_is_not_tried_again(app, users, discord_server, status):
    clients = [_login(app, users, name) for name in ("ann", "bob")]
    url = discord_server.webhook_url(9)
    if status == 404:
        discord_server.delete(9)
    else:
        discord_server.fail_next(9, status=401, times=10)
    first = _click(clients[0], url)
    assert "does not exist" in first.get_data(as_text=True) or "not valid" in first.get_data(as_text=True)
    again = [_click(c, url) for c in clients]
    assert len(discord_server.arrivals(9)) == 1
    assert all("not sent" in a.get_data(as_text=True).lower() for a in again)


@pytest.mark.parametrize("status", [302, 307, 308])
def test_a_redirect_from_discord_is_not_followed(app, users, discord_server, status):
    client = _login(app, users, "ann")
    discord_server.redirect_next(5, f"http://127.0.0.1:{discord_server.port}/internal/admin", status=status)
    answer = _click(client, discord_server.webhook_url(5))
    assert "redirect" in answer.get_data(as_text=True).lower()
    assert [path for _, path in discord_server.requests] == ["/api/webhooks/5/token-abc"]


@pytest.mark.browser
def test_in_a_browser_the_429_message_is_shown_and_log_out_everywhere_works(app, users, discord_server, page,
                                                                            live_server):
    expect = pytest.importorskip("playwright.sync_api").expect
    app.config["WTF_CSRF_ENABLED"] = True
    users.create("ann")
    page.goto("/settings/notifications")
    page.get_by_label("Username").fill("ann")
    page.get_by_label("Password").fill(users.passwords["ann"])
    page.get_by_role("button", name="Log in").click()
    page.get_by_label("Your personal Discord webhook URL (optional)").fill(discord_server.webhook_url(31))
    result = page.locator("#webhook-test-result")
    for n in range(PER_USER):
        page.get_by_role("button", name="Send a test message").click()
        discord_server.wait_for_messages(31, n + 1)
        expect(result).to_contain_text("Test message sent")
        page.evaluate("document.getElementById('webhook-test-result').textContent = ''")
    page.get_by_role("button", name="Send a test message").click()
    expect(result).to_contain_text("try again")
    page.console_problems[:] = [p for p in page.console_problems if "status of 429" not in p]
    assert len(discord_server.messages(31)) == PER_USER
    page.get_by_role("button", name="Log out everywhere").click()
    expect(page).to_have_url(re.compile(r"/login"))
    page.goto("/settings/notifications")
    expect(page).to_have_url(re.compile(r"/login"))
