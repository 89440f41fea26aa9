"""An invite in a real browser (system Chromium), made by the real pipeline (worker process,
Redis): the player sees it arrive in the center, answers Accept there, and the team page
lists them; the captain hears of it as before. Screenshots of the pages in test-output/."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from deltacrown.accounts.models import User
from deltacrown.extensions import db
from deltacrown.notifications.models import Notification
from deltacrown.teams import services as teams
from tests.support.browser import log_in, screenshot
from tests.support.processes import wait_for

pytestmark = pytest.mark.browser

expect = pytest.importorskip("playwright.sync_api").expect


def test_a_player_accepts_an_invite_from_the_center_and_joins_the_team(app, users, page, live_server,
                                                                       worker_process):
    cap, eve = users.create("cap"), users.create("eve", timezone="Europe/Berlin")
    with app.app_context():
        team = teams.create_team("Crimson Hawks", cap, "CRH")
        invite = teams.invite_user(db.session.get(User, cap), team, eve)  # emits invite_sent
        team_id, invite_id = team.id, invite.id

    page.goto("/notifications")
    log_in(page, "eve", users.passwords["eve"])
    item = page.locator("li.notification", has_text="Crimson Hawks")
    expect(item).to_be_visible(timeout=25_000)  # written by the worker, shown without a reload
    answer = item.get_by_role("group", name=re.compile("^Answer"))
    expect(answer.get_by_role("button", name="Accept")).to_be_visible()
    expect(answer.get_by_role("button", name="Decline")).to_be_visible()
    screenshot(page, "center-invite")

    # The notification's link is the invite's own page.
    page.goto(f"/invites/{invite_id}")
    expect(page.locator("h1#team-name")).to_have_text("Crimson Hawks")
    screenshot(page, "invite-page")

    page.goto("/notifications")
    item = page.locator("li.notification", has_text="Crimson Hawks")
    item.get_by_role("button", name="Accept").click()
    expect(page.locator("#notification-items")).to_contain_text("You joined Crimson Hawks")
    expect(page.locator("#notification-items").get_by_role("button", name="Accept")).to_have_count(0)

    page.goto(f"/teams/{team_id}")
    expect(page.locator("h1#team-name")).to_have_text("Crimson Hawks [CRH]")
    expect(page.locator("#members")).to_contain_text("eve")
    screenshot(page, "team-page")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="My teams").click()
    expect(page).to_have_url(re.compile(r"/me/teams$"))
    expect(page.locator("main")).to_contain_text("Crimson Hawks")
    screenshot(page, "my-teams")

    def captain_told():
        with app.app_context():
            return db.session.scalar(select(Notification.title).where(Notification.user_id == cap,
                                                                      Notification.type == "invite_accepted"))
    assert "eve" in wait_for(captain_told, timeout=25, message="the captain's invite_accepted notification")
