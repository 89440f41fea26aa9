"""In a real browser (system Chromium): mute a team from its page, a match result arrives in-app
already seen and by no email; the editor's "When" and "Muted" sections save and unmute."""
from __future__ import annotations

import re

import pytest

from deltacrown.models import Notification
from tests.api.helpers import in_days
from tests.support.browser import log_in, screenshot

pytestmark = pytest.mark.browser

expect = pytest.importorskip("playwright.sync_api").expect


@pytest.fixture
def database_url(tmp_path):
    return f"sqlite:///{tmp_path / 'browser.sqlite'}"


@pytest.fixture
def app_config(smtp_server):
    return {**smtp_server.config(), "WTF_CSRF_ENABLED": True}


def test_mute_a_team_from_its_page_then_no_badge_and_no_email(api, league, page, live_server, users, run_jobs,
                                                              smtp_server):
    red, blue = league["red"], league["blue"]
    tid = api.tournament()
    for team in (red, blue):
        api.post(f"/tournaments/{tid}/registrations", "admin", {"team_id": team}, expect=201)
    match = api.post(f"/tournaments/{tid}/matches", "admin",
                     {"team_a_id": red, "team_b_id": blue, "scheduled_at": in_days(8)}, expect=201).json["id"]
    run_jobs()
    smtp_server.clear()

    page.goto(f"{live_server.url}/teams/{red}")
    log_in(page, "ann", users.passwords["ann"])
    expect(page).to_have_url(re.compile(rf"/teams/{red}$"))
    page.get_by_label("Mute this team's notifications").select_option(label="for 8 hours")
    page.locator("#mute-team").click()
    expect(page.locator(".mute-control")).to_contain_text("Muted until")
    screenshot(page, "team-muted")
    badge = page.get_by_role("link", name=re.compile(r"^Notifications\b"))
    badge_before = badge.inner_text()

    api.post(f"/matches/{match}/result", "admin", {"score_a": 3, "score_b": 0}, expect=200)
    run_jobs()
    ann = users.ids["ann"]
    [result] = api.rows(Notification, Notification.user_id == ann, Notification.type == "match_result")
    assert result.seen_at is not None  # written in-app, already seen: it does not count in the badge
    assert not [m for m in smtp_server.messages if "ann@example.com" in m.rcpt_tos]
    assert [m for m in smtp_server.messages if "cap@example.com" in m.rcpt_tos]  # cap did not mute Red

    page.goto(f"{live_server.url}/me/teams")  # not the center (showing an item marks it seen)
    expect(badge).to_have_text(badge_before)  # the muted result did not bump the badge
    page.goto(f"{live_server.url}/notifications")
    expect(page.get_by_role("button", name="Red 3 : 0 Blue", exact=True)).to_be_visible()
    page.get_by_text(re.compile(r"^More\s*for: Red 3 : 0 Blue")).click()  # the item's menu
    expect(page.get_by_role("button", name=re.compile(r"^Mute this tournament\s*: Red 3 : 0 Blue"))).to_be_visible()

    page.goto(f"{live_server.url}/settings/notifications")
    when, muted = page.locator("#when"), page.locator("#muted")
    expect(when.get_by_role("heading", name="When")).to_be_visible()
    expect(muted).to_contain_text("Red")
    when.get_by_label("Hold emails and Discord messages during quiet hours").check()
    when.get_by_label("From (in your time zone)").fill("22:00")
    when.get_by_label("Until").fill("07:00")
    when.get_by_label("Email me about a notification").select_option(value="15")
    page.locator("#save-preferences").click()
    expect(page.locator("#save-status")).to_contain_text("Saved")
    prefs = api.get("/preferences", "ann", expect=200).json
    assert prefs["quiet_hours"] == {"start": "22:00", "end": "07:00"} and prefs["email_after_unseen_minutes"] == 15

    muted.get_by_role("button", name=re.compile("Unmute")).click()
    expect(page.locator("#muted")).to_contain_text("Nothing is muted")
    assert api.get("/mutes", "ann", expect=200).json["items"] == []
    screenshot(page, "editor-when-muted")
