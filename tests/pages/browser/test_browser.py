"""A player in a real browser (system Chromium via Playwright) against a real HTTP
server, a real worker process and real Redis, with CSRF on: log in, see a
notification made by the worker arrive without a reload, read it, read all,
and change a preference. Any console error (CSP included) fails the test."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from deltacrown.extensions import db
from deltacrown.notifications.jobs import batch_send_notifications
from deltacrown.notifications.models import (
    Delivery,
    Notification,
    NotificationPreference,
)
from tests.support.browser import log_in, screenshot
from tests.support.processes import wait_for

pytestmark = pytest.mark.browser

expect = pytest.importorskip("playwright.sync_api").expect


def enqueue_notification(app, user_id, title, type_name="announcement", url=None):
    """The real fan-out job (NotificationService, preferences and all), run by the real worker."""
    with app.app_context():
        return batch_send_notifications.enqueue([user_id], type_name, title, "Body of " + title, url)


def test_player_walkthrough(app, users, page, live_server, worker_process):
    alice = users.create("alice", timezone="Europe/Berlin")
    badge = page.locator("#unread-badge")

    # Logged out: the center sends the player to log in, and back.
    page.goto("/notifications")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    log_in(page, "alice", users.passwords["alice"])
    expect(page).to_have_url(re.compile(r"/notifications$"))
    expect(page.locator("#notifications-empty")).to_contain_text("all caught up")
    expect(badge).to_have_attribute("data-count", "0")

    # A real worker creates a notification; the badge sees it and the list shows it,
    # without a reload (the marker set on this document survives). Shown, it is seen: the
    # badge (unseen ones) goes back to 0, while the item stays unread ("New").
    page.evaluate("window.__noReload = true")
    enqueue_notification(app, alice, "Finals on Saturday", url="/notifications?type=announcement")
    first = page.locator("#notification-items li.notification").first
    expect(first).to_contain_text("Finals on Saturday", timeout=25_000)
    expect(first).to_contain_text("New")
    expect(badge).to_have_attribute("data-count", "0")
    expect(first.locator("time")).to_have_attribute("title", re.compile(r"\(Europe/Berlin\)"))
    assert page.evaluate("window.__noReload") is True

    enqueue_notification(app, alice, "Payout: 500 coins", type_name="payout_received")
    enqueue_notification(app, alice, "Match result: 2-1", type_name="match_result")
    expect(page.locator("#notification-items li.is-unread")).to_have_count(3, timeout=25_000)
    expect(badge).to_have_attribute("data-count", "0")
    assert page.evaluate("window.__noReload") is True
    screenshot(page, "center-unread")

    # Mark one read: only that item changes.
    payout = page.locator("li.notification", has_text="Payout: 500 coins")
    payout.get_by_role("button", name=re.compile("Mark read")).click()
    expect(payout).to_have_class(re.compile(r"\bis-read\b"))
    expect(payout).not_to_contain_text("New")

    # Filter by unread (htmx swaps the list, the URL follows).
    page.get_by_label("Unread only").check()
    expect(page).to_have_url(re.compile(r"unread=1"))
    expect(page.locator("#notification-items li.notification")).to_have_count(2)

    # Mark all read.
    page.get_by_label("Unread only").uncheck()
    expect(page.locator("#notification-items li.notification")).to_have_count(3)
    page.locator("#mark-all-read").click()
    expect(page.locator("#notification-region")).to_contain_text("Marked 2 notifications as read")
    expect(page.locator("#notification-items li.is-unread")).to_have_count(0)
    expect(badge).to_have_attribute("data-count", "0")
    assert page.evaluate("window.__noReload") is True
    screenshot(page, "center-all-read")

    # Clicking a notification follows its link (a POST that also marks it read).
    page.locator("li.notification", has_text="Finals on Saturday").get_by_role(
        "button", name="Finals on Saturday").click()
    expect(page).to_have_url(re.compile(r"/notifications\?type=announcement$"))

    # The preference editor: in-app off for announcements; saved inline, recorded.
    page.get_by_role("link", name="Settings", exact=True).click()
    expect(page.get_by_role("heading", name="Notification settings")).to_be_visible()
    page.evaluate("window.__noReload = true")
    in_app_box = page.get_by_label("In-app for Announcement", exact=True)
    expect(in_app_box).to_be_checked()
    in_app_box.uncheck()
    # A global opt-out greys out its column and says so in text.
    email_header = page.locator("th.col-email")
    expect(email_header.locator(".optout-note")).to_be_hidden()
    page.get_by_label("No Email notifications at all").check()
    expect(email_header.locator(".optout-note")).to_be_visible()
    assert float(email_header.evaluate("e => getComputedStyle(e).opacity")) < 1
    page.get_by_label("Digest time (in your time zone)").fill("07:45")
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("#save-status")).to_contain_text("Saved")
    expect(page.locator("#recent-changes")).to_contain_text("Announcement channels: In-app, Email → Email")
    expect(page.locator("#recent-changes")).to_contain_text("via this page")
    assert page.evaluate("window.__noReload") is True
    screenshot(page, "preference-editor")

    with app.app_context():
        pref = db.session.scalar(select(NotificationPreference).where(NotificationPreference.user_id == alice))
        assert pref.get_channels_for_type("announcement") == []
        assert pref.get_channels_for_type("match_result") == ["in_app"]
        assert pref.digest_time.strftime("%H:%M") == "07:45"

    # The next notifications respect it: the announcement goes nowhere (in-app off, email
    # opted out), the match result still arrives in-app and is counted.
    with app.app_context():
        deliveries_before = db.session.query(Delivery).filter(Delivery.user_id == alice).count()
    skipped = enqueue_notification(app, alice, "Server maintenance tonight")
    enqueue_notification(app, alice, "Match result: 0-2", type_name="match_result")
    expect(badge).to_have_attribute("data-count", "1", timeout=25_000)
    wait_for(lambda: skipped.get_status(refresh=True) == "finished", 25, interval=0.1,
             message="the announcement job finished")
    with app.app_context():
        titles = set(db.session.scalars(select(Notification.title).where(Notification.user_id == alice)))
        assert "Match result: 0-2" in titles and "Server maintenance tonight" not in titles
        # no email either (opted out), and in-app only for the match result
        assert db.session.query(Delivery).filter(Delivery.user_id == alice).count() == deliveries_before

    # Narrow screen: the editor and center stay usable on a phone.
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "preference-editor-phone")
    page.goto("/notifications")
    screenshot(page, "center-phone")


def test_editor_shows_field_errors_inline(app, users, page, live_server):
    users.create("bob")
    page.goto("/settings/notifications")
    log_in(page, "bob", users.passwords["bob"])
    expect(page).to_have_url(re.compile(r"/settings/notifications$"))
    page.get_by_label("Time zone (type to search, e.g. “Berlin”)").fill("Mars/Olympus_Mons")
    # Chromium reports every 4xx fetch on the console; this 422 is the expected answer.
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("#timezone-error")).to_contain_text("unknown IANA time zone")
    expect(page.locator("#prefs-errors")).to_contain_text("Nothing was saved")
    page.console_problems[:] = [p for p in page.console_problems
                                if "status of 422" not in p]
    screenshot(page, "preference-editor-error")
    # Keyboard focus is visible: tabbing onto a control draws an outline.
    page.get_by_label("Digest time (in your time zone)").focus()
    page.keyboard.press("Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")
