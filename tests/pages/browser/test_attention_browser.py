"""Attention in a real browser (system Chromium via Playwright, CSRF on): the center marks
what it shows seen and the badge drops; "Remind me later" and "Archive" from an item's menu
take it out of the list; a snooze that is over brings it back, unread, without a reload."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from deltacrown.extensions import db
from deltacrown.notifications.models import Notification
from deltacrown.queue import get_redis
from deltacrown.timeutil import utcnow
from tests.support.browser import log_in, screenshot

pytestmark = pytest.mark.browser

expect = pytest.importorskip("playwright.sync_api").expect


@pytest.fixture
def app_config():
    return {"WTF_CSRF_ENABLED": True, "BADGE_POLL_SECONDS": 1}


def _rows(app, user_id) -> dict[str, Notification]:
    with app.app_context():
        rows = db.session.scalars(select(Notification).where(Notification.user_id == user_id)).all()
        db.session.expunge_all()
        return {n.title: n for n in rows}


def test_seen_on_render_snooze_and_archive_from_the_menu(app, users, notify, page, live_server):
    alice = users.create("alice", timezone="Europe/Berlin")
    notify(alice, 1, title="Old news")
    notify(alice, 1, title="Bracket is out")
    notify(alice, 1, title="Finals on Saturday")
    badge = page.locator("#unread-badge")

    # Elsewhere on the site the badge counts the three unseen ones.
    page.goto("/settings/notifications")
    log_in(page, "alice", users.passwords["alice"])
    expect(page).to_have_url(re.compile(r"/settings/notifications$"))
    expect(badge).to_have_attribute("data-count", "3")
    assert all(n.seen_at is None for n in _rows(app, alice).values())

    # The center shows them: seen now, the badge drops; they stay unread ("New").
    page.get_by_role("link", name=re.compile("^Notifications")).click()
    expect(page.locator("#notification-items li.notification")).to_have_count(3)
    expect(badge).to_have_attribute("data-count", "0")
    expect(page.locator("#notification-items li.is-unread")).to_have_count(3)
    rows = _rows(app, alice)
    assert all(n.seen_at is not None and not n.is_read for n in rows.values())
    page.evaluate("window.__noReload = true")

    # Remind me later (1 hour) from the item's menu: the item leaves the list.
    finals = page.locator("li.notification", has_text="Finals on Saturday")
    finals.locator("summary").click()
    expect(finals.get_by_role("button", name="1 hour")).to_be_visible()
    screenshot(page, "center-item-menu")
    finals.get_by_role("button", name="1 hour").click()
    gone = page.locator(f"#notification-{rows['Finals on Saturday'].id}")
    expect(gone).to_contain_text("Snoozed “Finals on Saturday” until")
    expect(gone).to_contain_text("(Europe/Berlin)")
    snoozed_until = _rows(app, alice)["Finals on Saturday"].snoozed_until
    assert timedelta(minutes=59) < snoozed_until - utcnow() <= timedelta(hours=1)
    with app.app_context():
        assert get_redis().zscore("rq:scheduler:scheduled_jobs", f"snooze-{rows['Finals on Saturday'].id}")

    # Archive another from its menu.
    old = page.locator("li.notification", has_text="Old news")
    old.locator("summary").click()
    old.get_by_role("button", name="Archive").click()
    expect(page.locator(f"#notification-{rows['Old news'].id}")).to_contain_text("Archived “Old news”")
    assert page.evaluate("window.__noReload") is True

    # Reloaded, the list holds only what is neither snoozed nor archived; each has its own box.
    page.reload()
    expect(page.locator("#notification-items li.notification")).to_have_count(1)
    expect(page.locator("#notification-items")).to_contain_text("Bracket is out")
    page.get_by_label("Show").select_option("snoozed")
    expect(page).to_have_url(re.compile(r"show=snoozed"))
    expect(page.locator("#notification-items li.notification")).to_have_count(1)
    expect(page.locator("#notification-items")).to_contain_text("Finals on Saturday")
    expect(page.locator("#notification-items")).to_contain_text("Snoozed until")
    page.get_by_label("Show").select_option("archived")
    expect(page.locator("#notification-items li.notification")).to_have_count(1)
    expect(page.locator("#notification-items")).to_contain_text("Old news")
    page.get_by_label("Show").select_option("")
    expect(page.locator("#notification-items li.notification")).to_have_count(1)
    screenshot(page, "center-after-snooze-and-archive")

    # The hour passes (the database says so; no job has run): the badge sees it and the open
    # center puts it back, unread, without a reload.
    page.evaluate("window.__noReload = true")
    with app.app_context():
        db.session.execute(update(Notification).where(Notification.title == "Finals on Saturday")
                           .values(snoozed_until=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    back = page.locator("#notification-items li.notification", has_text="Finals on Saturday")
    expect(back).to_be_visible(timeout=15_000)
    expect(back).to_contain_text("New")
    expect(badge).to_have_attribute("data-count", "0")  # shown again, so seen again
    assert page.evaluate("window.__noReload") is True
