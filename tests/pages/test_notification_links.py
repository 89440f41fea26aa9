"""Every notification link lands: one notification of every registered type, made through
the JSON API and the real jobs (RQ worker on Redis), then each link opened by its
recipient in a browser session: 200, and the page names what the notification is about.
(Emails and Discord embeds of the same links: test_tournament_page.py.)"""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from html import unescape

import pytest
import time_machine
from sqlalchemy import select

from deltacrown.extensions import db
from deltacrown.models import Match, Notification, Team, TeamInvite, Tournament
from deltacrown.notifications.types import TYPE_NAMES
from tests.api.conftest import api, league  # noqa: F401  (same fixtures)
from tests.api.helpers import in_days


@pytest.fixture
def app_config(discord_server):
    # First places (1000 coins) wait for a second admin: payout_awaiting_approval, then
    # payout_received (approved) and payout_rejected; second places (500) are paid at once.
    return {**discord_server.config(), "DELIVERY_RETRY_INTERVALS": [0, 0], "DISCORD_TIMEOUT_SECONDS": 1,
            "PAYOUT_APPROVAL_THRESHOLD": 1000}


def _session(app, users, username):
    """A browser session logged in as `username`."""
    browser = app.test_client()
    response = browser.post("/login", data={"username": username, "password": users.passwords[username]})
    assert response.status_code == 302, response.get_data(as_text=True)
    return browser


def _play(api, tid, team_a, team_b, score_a, score_b):
    match = api.post(f"/tournaments/{tid}/matches", "admin",
                     {"team_a_id": team_a, "team_b_id": team_b, "scheduled_at": in_days(1)}, expect=201).json
    api.post(f"/matches/{match['id']}/result", "admin", {"score_a": score_a, "score_b": score_b}, expect=200)
    return match["id"]


@pytest.fixture
def every_type(api, league, run_jobs, discord_server):
    """One notification (at least) of every type in the registry, by the API and the jobs."""
    red, blue = league["red"], league["blue"]
    # Webhooks that Discord will say are gone: the team's (-> webhook_disabled to its captain)
    # and ann's own (-> webhook_disabled to ann, pointing at her settings).
    api.put(f"/teams/{red}/discord-webhook", "cap", {"url": discord_server.webhook_url(41)}, expect=200)
    api.put("/preferences", "ann", {"discord_webhook_url": discord_server.webhook_url(42),
                                    "channels": {"match_result": ["in_app", "discord"]}}, expect=200)
    discord_server.delete(41)
    discord_server.delete(42)

    invite = api.post(f"/teams/{red}/invites", "cap", {"user_id": api.users.ids["eve"]}, expect=201).json
    run_jobs()
    api.post(f"/invites/{invite['id']}/accept", "eve", expect=200)  # invite_accepted, roster_changed
    declined = api.post(f"/teams/{blue}/invites", "cyd", {"user_id": api.users.ids["eve"]}, expect=201).json
    api.post(f"/invites/{declined['id']}/decline", "eve", expect=200)
    api.post(f"/teams/{blue}/invites", "cyd", {"user_id": api.users.ids["admin"]}, expect=201)  # stays pending

    sponsor = api.post(f"/teams/{red}/sponsors", "cap", {"name": "Acme", "expires_at": in_days(30)}, expect=201).json
    api.post(f"/sponsors/{sponsor['id']}/approve", "admin", expect=200)
    api.post(f"/teams/{red}/promotions", "admin",
             {"title": "Double XP", "starts_at": in_days(-1), "ends_at": in_days(2)}, expect=201)
    api.post("/jobs/process-promotions/run", "admin", expect=202)  # promotion_started

    # Cup one: Red wins; completing it runs the wrap-up (ranks, payouts, achievements).
    cup = api.tournament("Spring Cup")
    for team in (red, blue):
        api.post(f"/tournaments/{cup}/registrations", "admin", {"team_id": team}, expect=201)
    api.post(f"/tournaments/{cup}/bracket-ready", "admin", expect=200)
    _play(api, cup, red, blue, 3, 1)
    # A match that moves, then is reminded of (match_reminder), at its time less the reminder's.
    moved = api.post(f"/tournaments/{cup}/matches", "admin",
                     {"team_a_id": blue, "team_b_id": red, "scheduled_at": in_days(1)}, expect=201).json
    starts = datetime.fromisoformat(in_days(2))
    api.call("PATCH", f"/matches/{moved['id']}", "admin", json={"scheduled_at": starts.isoformat()}, expect=200)
    run_jobs()
    with time_machine.travel(starts - timedelta(minutes=59), tick=True):
        api.post("/jobs/match-reminders/run", "admin", expect=202)
        run_jobs()
    api.post(f"/tournaments/{cup}/complete", "admin", {"placements": [red, blue]}, expect=200)
    run_jobs()
    # Cup two: Blue wins twice, so the ranks swap (ranking_changed).
    rematch = api.tournament("Summer Cup")
    for team in (red, blue):
        api.post(f"/tournaments/{rematch}/registrations", "admin", {"team_id": team}, expect=201)
    api.post(f"/tournaments/{rematch}/bracket-ready", "admin", expect=200)
    _play(api, rematch, red, blue, 0, 2)
    _play(api, rematch, blue, red, 1, 0)
    api.post(f"/tournaments/{rematch}/complete", "admin", {"placements": [blue, red]}, expect=200)
    run_jobs()
    # The held first places: a second admin approves Spring Cup's and rejects Summer Cup's.
    api.users.create("admin2", admin=True)
    held = {p["tournament_id"]: p["id"] for p in
            api.get("/payouts?status=pending_approval", "admin2", expect=200).json["items"]}
    api.post(f"/payouts/{held[cup]}/approve", "admin2", expect=200)
    api.post(f"/payouts/{held[rematch]}/reject", "admin2", {"reason": "Under review"}, expect=200)
    run_jobs()
    api.post("/announcements", "admin", {"title": "Finals week", "body": "See the Summer Cup.",
                                         "url": f"/tournaments/{rematch}"}, expect=202)
    run_jobs()
    # An account-security notice (api_token_replaced): dee replaces her API token (last: her old one stops).
    api.post("/me/token", "dee", expect=200)
    run_jobs()
    return league


def _expected_names(url: str) -> list[tuple[str, str | None]]:
    """What the page at `url` must name: [(text, within element id or None)]."""
    path, _, fragment = url.partition("#")
    if m := re.fullmatch(r"/tournaments/(\d+)", path):
        names = [(db.session.get(Tournament, int(m.group(1))).name, None)]
        if fragment:
            match = db.session.get(Match, int(fragment.removeprefix("match-")))
            names += [(match.team_a.name, fragment), (match.team_b.name, fragment)]
            if match.status == "completed":
                names.append((f"{match.score_a} : {match.score_b}", fragment))
        return names
    if m := re.fullmatch(r"/teams/(\d+)", path):
        return [(db.session.get(Team, int(m.group(1))).name, None)]
    if m := re.fullmatch(r"/invites/(\d+)", path):
        return [(db.session.get(TeamInvite, int(m.group(1))).team.name, None)]
    if path in ("/me/teams", "/settings/notifications"):
        return []
    raise AssertionError(f"{url} is not one of the pages notification links may lead to")


def _element(html: str, element_id: str) -> str:
    """The markup of the <li>/<section>/... with this id (up to its closing tag)."""
    start = re.search(rf'<(\w+)[^>]*\bid="{re.escape(element_id)}"', html)
    assert start, f'no element with id="{element_id}"'
    end = html.find(f"</{start.group(1)}>", start.end())
    return html[start.start():end]


def test_every_notification_link_lands_for_its_recipient(app, api, users, every_type):
    with app.app_context():
        notes = db.session.scalars(select(Notification).order_by(Notification.id)).all()
        by_type = {n.type for n in notes}
        assert by_type == set(TYPE_NAMES), f"types never notified: {set(TYPE_NAMES) - by_type}"
        names = {uid: name for name, uid in users.ids.items()}
        # one check per (recipient, url) is enough: the same page for the same reader
        links = sorted({(names[n.user_id], n.url, n.type) for n in notes})
        expected = {(who, url): _expected_names(url) for who, url, _ in links}
    assert all(url for _, url, _ in links), "every notification carries a link"
    urls = {(type_name, url.split("/")[1], "#match-" in url) for _, url, type_name in links}
    assert {("match_scheduled", "tournaments", True), ("match_result", "tournaments", True),
            ("payout_received", "tournaments", False), ("announcement", "tournaments", False),
            ("invite_sent", "invites", False), ("webhook_disabled", "teams", False),
            ("webhook_disabled", "settings", False)} <= urls

    sessions, problems = {}, []
    for who, url, type_name in links:
        browser = sessions.setdefault(who, _session(app, users, who))
        page = browser.get(url.partition("#")[0])
        if page.status_code != 200:
            problems.append(f"{type_name} {url} for {who}: {page.status_code}")
            continue
        html = unescape(page.get_data(as_text=True))
        for text, within in expected[(who, url)]:
            where = _element(html, within) if within else html
            if text not in where:
                problems.append(f"{type_name} {url} for {who}: {text!r} not on the page"
                                + (f" in #{within}" if within else ""))
    assert not problems, "\n".join(problems)
