"""The same pages with JavaScript switched off: plain links and form posts
(POST, then redirect back) do everything htmx does, CSRF included."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from deltacrown.extensions import db
from deltacrown.notifications.models import Notification, NotificationPreference
from tests.support.browser import log_in, screenshot

pytestmark = pytest.mark.browser

expect = pytest.importorskip("playwright.sync_api").expect


@pytest.fixture
def browser_context_options():
    return {"java_script_enabled": False}


def test_center_and_editor_without_javascript(app, users, notify, live_server, page):
    alice = users.create("alice")
    ids = notify(alice, 22, type="match_result")
    page.goto("/settings/notifications")
    log_in(page, "alice", users.passwords["alice"])
    expect(page).to_have_url(re.compile(r"/settings/notifications$"))

    page.get_by_role("link", name=re.compile("^Notifications")).click()
    # the badge counts unseen ones: the 20 this page shows are seen now
    expect(page.locator("#unread-badge")).to_have_attribute("data-count", "2")
    expect(page.locator("li.notification")).to_have_count(20)
    page.get_by_role("link", name="Load more").click()  # a plain link to the older page
    expect(page.locator("li.notification")).to_have_count(2)
    expect(page.locator("#unread-badge")).to_have_attribute("data-count", "0")
    page.get_by_role("link", name="Back to the newest").click()

    page.locator(f"#notification-{ids[-1]}").get_by_role("button", name=re.compile("Mark read")).click()
    expect(page).to_have_url(re.compile(r"/notifications$"))
    expect(page.locator(f"#notification-{ids[-1]}")).to_have_class(re.compile(r"\bis-read\b"))
    expect(page.locator(f"#notification-{ids[-2]}")).to_have_class(re.compile(r"\bis-unread\b"))  # seen, unread

    page.get_by_label("Unread only").check()
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"unread=1"))
    page.locator("#mark-all-read").click()
    expect(page.locator(".flash")).to_contain_text("Marked 21 notifications as read")
    expect(page.locator("#unread-badge")).to_have_attribute("data-count", "0")
    page.goto("/notifications")
    page.locator("#clear-read").click()
    expect(page.locator(".flash")).to_contain_text("Cleared 22 read notifications")
    expect(page.locator("#notifications-empty")).to_be_visible()
    with app.app_context():
        assert db.session.scalars(select(Notification)).all() == []

    page.goto("/settings/notifications")
    page.get_by_label("Email for Match result", exact=True).uncheck()
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator(".flash")).to_contain_text("saved")
    expect(page.locator("#recent-changes")).to_contain_text("Match result channels: In-app, Email → In-app")
    page.get_by_label("Digest time (in your time zone)").fill("23:15")
    page.get_by_label("Time zone (type to search, e.g. “Berlin”)").fill("Nowhere/Special")
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("#timezone-error")).to_contain_text("unknown IANA time zone")
    page.console_problems[:] = [p for p in page.console_problems if "status of 422" not in p]
    screenshot(page, "preference-editor-nojs-error")
    with app.app_context():
        pref = db.session.scalar(select(NotificationPreference).where(NotificationPreference.user_id == alice))
        assert pref.get_channels_for_type("match_result") == ["in_app"]
        assert pref.timezone == "UTC" and pref.digest_time.strftime("%H:%M") == "08:00"  # nothing saved


def test_the_email_confirm_page_answers_an_invite_without_javascript(app, users, live_server, page):
    """The invite email's Accept link, opened with JavaScript off and without logging in: the
    GET only asks; the button answers; the same link a second time no longer works."""
    from urllib.parse import urlsplit

    from deltacrown.accounts.models import User
    from deltacrown.notifications.email_actions import action_links
    from deltacrown.teams import services as teams

    cap, eve = users.create("cap"), users.create("eve")
    with app.app_context():
        team = teams.create_team("Crimson Hawks", cap, "CRH")
        invite = teams.invite_user(db.session.get(User, cap), team, eve)
        team_id = team.id
        accept = next(link["url"] for link in action_links(eve, "invite_sent", invite.id) if link["name"] == "accept")

    def is_member():
        with app.app_context():
            return teams.membership(team_id, eve) is not None

    page.goto(urlsplit(accept).path)
    expect(page.locator("h1")).to_contain_text("Crimson Hawks")
    screenshot(page, "email-confirm-accept")
    assert not is_member()  # opening the link (as a mail scanner would) answered nothing
    page.get_by_role("button", name="Accept").click()
    expect(page.get_by_role("status")).to_contain_text("You joined Crimson Hawks")
    assert is_member()
    # The same link again explains itself (a 409 page; fetched outside the browser, which
    # would log the status as a console error).
    used = app.test_client().get(urlsplit(accept).path)
    assert used.status_code == 409 and "This link cannot be used" in used.get_data(as_text=True)
