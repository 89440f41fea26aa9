"""The tournament page: what a player sees of a tournament, and how a match result's email
and Discord post lead there (through the login page when logged out, then back)."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.api.conftest import api, league  # noqa: F401  (same fixtures)

BASE = "https://play.deltacrown.test"
KICK_OFF = datetime(2031, 1, 15, 10, 0, tzinfo=timezone.utc)  # 19:00 in Tokyo


@pytest.fixture
def app_config(smtp_server, discord_server):
    return {**smtp_server.config(), **discord_server.config(), "PUBLIC_BASE_URL": BASE,
            "SESSION_COOKIE_SECURE": False, "REMEMBER_COOKIE_SECURE": False,
            "DELIVERY_RETRY_INTERVALS": [0, 0], "DISCORD_TIMEOUT_SECONDS": 1}


@pytest.fixture
def cup(api, league, run_jobs):
    """Spring Cup, completed: Red beat Blue 3 : 1, a Red-Blue draw, one match still to play; Red
    first (paid), Blue second (paid)."""
    red, blue = league["red"], league["blue"]
    tid = api.tournament("Spring Cup")
    for team in (red, blue):
        api.post(f"/tournaments/{tid}/registrations", "admin", {"team_id": team}, expect=201)
    api.post(f"/tournaments/{tid}/bracket-ready", "admin", expect=200)
    ids = []
    for score in ((3, 1), (2, 2), None):
        match = api.post(f"/tournaments/{tid}/matches", "admin", {"team_a_id": red, "team_b_id": blue,
                                                                   "scheduled_at": KICK_OFF.isoformat()},
                         expect=201).json
        if score:
            api.post(f"/matches/{match['id']}/result", "admin", {"score_a": score[0], "score_b": score[1]},
                     expect=200)
        ids.append(match["id"])
    return {"id": tid, "matches": ids, **league}


def _login(browser, users, who, next_path=None):
    return browser.post("/login", query_string={"next": next_path} if next_path else None,
                        data={"username": who, "password": users.passwords[who]})


def _element(html: str, element_id: str) -> str:
    start = re.search(rf'<(\w+)[^>]*\bid="{re.escape(element_id)}"', html)
    assert start, f'no element with id="{element_id}"'
    return html[start.start():html.find(f"</{start.group(1)}>", start.end())]


def _text(markup: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", markup)).split())


def test_the_page_shows_teams_standings_matches_in_my_zone_placements_and_payouts(app, client, api, users, cup,
                                                                                    run_jobs):
    tid, red, blue = cup["id"], cup["red"], cup["blue"]
    api.put("/preferences", "eve", {"timezone": "Asia/Tokyo"}, expect=200)
    _login(client, users, "eve")
    html = client.get(f"/tournaments/{tid}").get_data(as_text=True)
    assert "<h1>Spring Cup</h1>" in html and "In progress" in _text(_element(html, "tournament-status"))
    teams = _element(html, "registered-teams")
    assert f'<a href="/teams/{red}">Red</a>' in teams and f'<a href="/teams/{blue}">Blue</a>' in teams
    # one win and one draw: Red 4 points, Blue 1
    rows = [_text(row) for row in re.findall(r"<tr>.*?</tr>", _element(html, "standings"), re.S)[1:]]
    assert rows == ["1 Red 2 1 1 0 4", "2 Blue 2 0 1 1 1"]
    won, drawn, upcoming = (_text(_element(html, f"match-{m}")) for m in cup["matches"])
    assert won.startswith("Red 3 : 1 Blue") and "Red won" in won
    assert drawn.startswith("Red 2 : 2 Blue") and "Draw" in drawn
    assert upcoming.startswith("Red vs Blue") and "Scheduled" in upcoming
    assert "15 Jan 2031, 19:00 JST (Asia/Tokyo)" in upcoming  # the viewer's zone, not UTC
    assert "Placements are set when the tournament is completed." in html

    api.post(f"/tournaments/{tid}/complete", "admin", {"placements": [red, blue]}, expect=200)
    run_jobs()  # the wrap-up pays the podium
    html = client.get(f"/tournaments/{tid}").get_data(as_text=True)
    assert "Completed" in _text(_element(html, "tournament-status"))
    rows = [_text(row) for row in re.findall(r"<tr>.*?</tr>", _element(html, "placements"), re.S)[1:]]
    assert rows == ["#1 Red 1000 coins", "#2 Blue 500 coins"]

    assert client.get("/tournaments/999999").status_code == 404
    assert client.get("/tournaments/abc").status_code == 404


def test_a_logged_out_reader_logs_in_and_comes_back(app, cup):
    browser = app.test_client()
    response = browser.get(f"/tournaments/{cup['id']}")
    assert response.status_code == 302
    login = urlsplit(response.headers["Location"])
    assert login.path == "/login" and parse_qs(login.query)["next"] == [f"/tournaments/{cup['id']}"]


def test_match_result_email_and_discord_link_to_the_match_and_land_there_after_login(
        app, api, users, cup, run_jobs, smtp_server, discord_server):
    tid, red, blue = cup["id"], cup["red"], cup["blue"]
    api.put("/preferences", "ann", {"discord_webhook_url": discord_server.webhook_url(7),
                                    "channels": {"match_result": ["in_app", "email", "discord"]}}, expect=200)
    api.put(f"/teams/{red}/discord-webhook", "cap", {"url": discord_server.webhook_url(8)}, expect=200)
    run_jobs()
    smtp_server.clear()
    match = api.post(f"/tournaments/{tid}/matches", "admin", {"team_a_id": red, "team_b_id": blue,
                                                               "scheduled_at": KICK_OFF.isoformat()}, expect=201).json
    run_jobs()
    smtp_server.clear()
    api.post(f"/matches/{match['id']}/result", "admin", {"score_a": 0, "score_b": 4}, expect=200)
    run_jobs()
    link = f"{BASE}/tournaments/{tid}#match-{match['id']}"

    mails = [m for m in smtp_server.wait_for(4) if m["Subject"] and "Red 0 : 4 Blue" in m.subject]
    ann_mail = next(m for m in mails if m["To"] == "ann@example.com")
    assert f'href="{link}"' in ann_mail.html and link in ann_mail.text
    # ann's own webhook (a new post), and the team's (the match's card, edited to the result)
    discord_server.wait_for_messages(7, 1)
    discord_server.wait_for_edits(8, 1)
    for shown in (discord_server.messages(7), discord_server.current(8).values()):
        [embed] = [m["embeds"][0] for m in shown if "Red 0 : 4 Blue" in m["embeds"][0]["title"]]
        assert embed["url"] == link

    # Ann follows the link from the email, logged out: login, then the page with the match.
    browser = app.test_client()
    parts = urlsplit(link)
    response = browser.get(parts.path)
    login = urlsplit(response.headers["Location"])
    assert response.status_code == 302 and login.path == "/login"
    back = parse_qs(login.query)["next"][0]
    assert back == parts.path
    response = _login(browser, users, "ann", back)
    assert response.status_code == 302 and response.headers["Location"] == parts.path
    html = browser.get(response.headers["Location"]).get_data(as_text=True)
    assert _text(_element(html, parts.fragment)).startswith("Red 0 : 4 Blue")


@pytest.mark.parametrize("target", ["https://evil.example/tournaments/1", "//evil.example/x", "/\\evil.example"])
def test_login_never_sends_the_player_off_site(app, users, target):
    users.create("zed")
    response = _login(app.test_client(), users, "zed", target)
    assert response.status_code == 302 and response.headers["Location"] == "/"
