"""A match result's link in a real browser (system Chromium): followed logged out from an
email, it goes through the login page and lands on the match on the tournament page; from
the notification center, one click lands there too."""
from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from deltacrown.extensions import db
from deltacrown.notifications import composers
from deltacrown.notifications.models import Notification
from deltacrown.teams.models import Team
from deltacrown.timeutil import utcnow
from deltacrown.tournaments import services as tournaments
from tests.support.browser import log_in, screenshot

pytestmark = pytest.mark.browser

expect = pytest.importorskip("playwright.sync_api").expect


def _played_match(app, users) -> tuple[int, str]:
    """Red 2 : 5 Blue in the Autumn Cup, told to ann in-app as the pipeline words it; (match id, url)."""
    ann, cyd = users.create("ann", timezone="America/New_York"), users.create("cyd")
    with app.app_context():
        red, blue = Team(name="Red", tag="RED", captain_id=ann), Team(name="Blue", tag="BLU", captain_id=cyd)
        db.session.add_all([red, blue])
        db.session.commit()
        cup = tournaments.create_tournament("Autumn Cup", datetime(2031, 3, 1, 18, 0, tzinfo=timezone.utc))
        for team in (red, blue):
            tournaments.register_team(team.captain, cup, team.id)
        tournaments.mark_bracket_ready(cup)
        match = tournaments.schedule_match(cup, red.id, blue.id, datetime(2031, 3, 2, 18, 0, tzinfo=timezone.utc))
        tournaments.record_result(match, 2, 5)
        message = composers.match_result({"match_id": match.id})
        db.session.add(Notification(user_id=ann, type="match_result", title=message.title, body=message.body,
                                    url=message.url, is_read=False, created_at=utcnow()))
        db.session.commit()
        return match.id, message.url


def test_a_match_result_link_lands_on_the_match_after_login_and_from_the_center(app, users, page, live_server):
    match_id, url = _played_match(app, users)
    assert re.fullmatch(rf"/tournaments/\d+#match-{match_id}", url)

    page.goto(url)  # as from the email, logged out
    expect(page).to_have_url(re.compile(r"/login\?next="))
    log_in(page, "ann", users.passwords["ann"])
    expect(page).to_have_url(re.compile(rf"{re.escape(url)}$"))
    match = page.locator(f"#match-{match_id}")
    expect(match).to_contain_text("Red 2 : 5 Blue")
    expect(match).to_contain_text("Blue won")
    expect(match).to_contain_text("13:00 EST (America/New_York)")  # 18:00 UTC, in ann's zone
    expect(match).to_be_in_viewport()
    screenshot(page, "tournament-page-match")

    page.goto("/notifications")
    page.get_by_role("button", name="Red 2 : 5 Blue", exact=True).click()
    expect(page).to_have_url(re.compile(rf"{re.escape(url)}$"))
    expect(page.locator("h1")).to_have_text("Autumn Cup")
