"""The team pages as players use them: a team's page (/teams/<id>) with its roster,
matches and settings; answering an invite (/invites/<id>); the player's own teams
(/me/teams). Plain form posts (no JavaScript) and htmx requests alike, against the
real services, jobs (real Redis worker) and the loopback Discord stand-in."""
from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from deltacrown.accounts.models import User
from deltacrown.extensions import db
from deltacrown.notifications.models import Notification
from deltacrown.teams import services as team_services
from deltacrown.teams.models import Team, TeamInvite, TeamMembership, TeamPromotion, TeamSponsor
from deltacrown.timeutil import utcnow
from deltacrown.tournaments.models import Match, Tournament

from .conftest import HX, csrf_from


@pytest.fixture
def app_config(discord_server):
    return {**discord_server.config(), "WEBHOOK_TEST_RATE_LIMIT": "3 per minute"}


@pytest.fixture
def crew(app, users):
    """Crimson Hawks: captain cap, member ann; eve is a stranger, root an admin."""
    for name in ("cap", "ann", "eve"):
        users.create(name, timezone="Europe/Berlin" if name == "ann" else "UTC")
    users.create("root", admin=True)
    with app.app_context():
        team = team_services.create_team("Crimson Hawks", users.ids["cap"], tag="CH")
        root = db.session.get(User, users.ids["root"])
        team_services.add_member(root, team, users.ids["ann"])
        return team.id


def login(app, users, name):
    client = app.test_client()
    response = client.post("/login", data={"username": name, "password": users.passwords[name]})
    assert response.status_code == 302
    return client


def members(app, team_id) -> set[int]:
    with app.app_context():
        return set(db.session.scalars(select(TeamMembership.user_id).where(TeamMembership.team_id == team_id)))


def invites(app, team_id) -> list[tuple[int, str]]:
    with app.app_context():
        return [(i.user_id, i.status) for i in db.session.scalars(
            select(TeamInvite).where(TeamInvite.team_id == team_id).order_by(TeamInvite.id))]


def invites_ids(app, team_id):
    with app.app_context():
        return list(db.session.scalars(select(TeamInvite.id).where(TeamInvite.team_id == team_id)))


def notified(app, user_id, type_) -> list[Notification]:
    with app.app_context():
        return list(db.session.scalars(select(Notification).where(Notification.user_id == user_id,
                                                                  Notification.type == type_)))


def make_invite(app, users, team_id, name, age_days=0) -> int:
    with app.app_context():
        cap = db.session.get(User, users.ids["cap"])
        invite = team_services.invite_user(cap, db.session.get(Team, team_id), users.ids[name])
        if age_days:
            invite.created_at = utcnow() - timedelta(days=age_days)
            db.session.commit()
        return invite.id


# --- the team page ----------------------------------------------------------------

def test_unknown_team_is_404_and_pages_need_a_login(app, client, users, crew):
    assert client.get(f"/teams/{crew}").status_code == 302
    assert "/login" in client.get(f"/teams/{crew}").headers["Location"]
    eve = login(app, users, "eve")
    assert eve.get("/teams/999").status_code == 404
    assert eve.get("/teams/999999999999999999999").status_code == 404


def test_page_shows_the_team_its_matches_and_news_in_the_viewers_zone(app, users, crew):
    with app.app_context():
        rival = team_services.create_team("Blue Owls", users.ids["eve"])
        t = Tournament(name="Winter Cup", status="ongoing", starts_at=utcnow())
        db.session.add(t)
        db.session.flush()
        at = utcnow().replace(microsecond=0) + timedelta(days=2)
        db.session.add_all([
            Match(tournament_id=t.id, team_a_id=rival.id, team_b_id=crew, scheduled_at=at, status="scheduled"),
            Match(tournament_id=t.id, team_a_id=crew, team_b_id=rival.id, scheduled_at=utcnow() - timedelta(days=1),
                  status="completed", score_a=3, score_b=1, winner_id=crew, completed_at=utcnow()),
            TeamSponsor(team_id=crew, name="Acme Energy", status="approved", expires_at=utcnow() + timedelta(days=9)),
            TeamSponsor(team_id=crew, name="Old Sponsor", status="approved", expires_at=utcnow() - timedelta(days=1)),
            TeamPromotion(team_id=crew, title="Double XP weekend", status="active", starts_at=utcnow(),
                          ends_at=utcnow() + timedelta(days=2)),
        ])
        team = db.session.get(Team, crew)
        team.rank, team.points, team.wins, team.losses = 4, 120, 7, 2
        db.session.commit()
    ann = login(app, users, "ann")  # Europe/Berlin
    page = ann.get(f"/teams/{crew}").get_data(as_text=True)
    assert '<h1 id="team-name">Crimson Hawks' in page and "[CH]" in page
    assert "Captain: <strong>cap</strong>" in page
    for text in ("Rank", ">4<", ">120<", ">7<", ">2<", "Winter Cup", "Blue Owls", "3–1", "Acme Energy",
                 "Double XP weekend", "(Europe/Berlin)"):
        assert text in page, text
    assert "Old Sponsor" not in page
    local = at.astimezone(ZoneInfo("Europe/Berlin")).strftime("%H:%M")
    assert local in page


def test_what_captain_member_stranger_and_admin_may_do(app, users, crew):
    def page(name):
        return login(app, users, name).get(f"/teams/{crew}").get_data(as_text=True)

    captain, member, stranger, admin = page("cap"), page("ann"), page("eve"), page("root")
    for html in (captain, admin):
        assert 'id="invite-button"' in html and ">Invite<" in html and "Send a test message" in html
        assert 'aria-label="Remove ann"' in html and 'aria-label="Remove cap"' not in html
    assert ">Leave team<" in member and 'id="invite-button"' not in member and "Remove" not in member
    assert ">Leave team<" not in captain  # the captain cannot leave
    for html in (member, stranger):
        assert "webhook" not in html.lower()
    assert "Leave team" not in stranger and "cap" in stranger and "ann" in stranger


# --- inviting -----------------------------------------------------------------------

def test_invite_by_username_without_js_and_the_invitee_is_notified(app, users, crew, run_jobs):
    cap = login(app, users, "cap")
    response = cap.post(f"/teams/{crew}/invite", data={"username": "EVE"})
    assert response.status_code == 303 and response.headers["Location"].endswith(f"/teams/{crew}")
    assert "Invited eve to Crimson Hawks" in cap.get(f"/teams/{crew}").get_data(as_text=True)
    assert invites(app, crew) == [(users.ids["eve"], "pending")]
    run_jobs()
    (note,) = notified(app, users.ids["eve"], "invite_sent")
    assert "Crimson Hawks" in note.title
    # the notification links to the invite's own page, where the invitee can answer it;
    # the team page and /me/teams show the invite too
    eve = login(app, users, "eve")
    page = eve.get(note.url).get_data(as_text=True)
    assert note.url == f"/invites/{invites_ids(app, crew)[0]}"
    assert "Crimson Hawks" in page and 'id="accept-invite"' in page and 'id="decline-invite"' in page
    assert "Answer the invite" in eve.get(f"/teams/{crew}").get_data(as_text=True)
    mine = eve.get("/me/teams").get_data(as_text=True)
    invite_id = invites_ids(app, crew)[0]
    assert f'href="/invites/{invite_id}"' in mine and "Crimson Hawks" in mine


def test_invite_with_htmx_swaps_the_region(app, users, crew):
    cap = login(app, users, "cap")
    response = cap.post(f"/teams/{crew}/invite", data={"username": "eve"}, headers=HX)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and html.lstrip().startswith('<section id="team-region"')
    assert "Invited eve" in html
    # the same again: already invited, nothing written, the reason in the swapped region
    response = cap.post(f"/teams/{crew}/invite", data={"username": "eve"}, headers=HX)
    assert response.status_code == 422 and "already has a pending invite" in response.get_data(as_text=True)
    assert invites(app, crew) == [(users.ids["eve"], "pending")]


@pytest.mark.parametrize("username, status, message", [
    ("nobody", 422, "There is no player called “nobody”"),
    ("", 422, "Enter the username"),
    ("ann", 409, "ann is already on Crimson Hawks"),
])
def test_invite_refused_writes_nothing_and_says_why(app, users, crew, username, status, message):
    cap = login(app, users, "cap")
    response = cap.post(f"/teams/{crew}/invite", data={"username": username})
    assert response.status_code == status
    assert message in response.get_data(as_text=True)
    assert invites(app, crew) == []


def test_only_the_captain_or_an_admin_may_invite(app, users, crew, run_jobs):
    ann = login(app, users, "ann")
    response = ann.post(f"/teams/{crew}/invite", data={"username": "eve"})
    assert response.status_code == 403 and "Only the team&#39;s captain" in response.get_data(as_text=True)
    assert invites(app, crew) == []
    root = login(app, users, "root")
    assert root.post(f"/teams/{crew}/invite", data={"username": "eve"}).status_code == 303
    assert invites(app, crew) == [(users.ids["eve"], "pending")]


def test_username_suggestions(app, users, crew):
    users.create("anna_b")
    users.create("annex")
    cap = login(app, users, "cap")
    html = cap.get("/users/suggest?q=ann", headers=HX).get_data(as_text=True)
    assert html.startswith('<datalist id="username-suggestions">')
    assert [n for n in ("ann", "anna_b", "annex") if f'value="{n}"' in html] == ["ann", "anna_b", "annex"]
    # what the input itself sends (its name), and wildcards are taken literally
    assert 'value="anna_b"' in cap.get("/users/suggest?username=ANNA_").get_data(as_text=True)
    assert "<option" not in cap.get("/users/suggest?q=%25").get_data(as_text=True)
    assert "<option" not in cap.get("/users/suggest?q=").get_data(as_text=True)


# --- roster -------------------------------------------------------------------------

def test_captain_removes_a_member_and_the_member_is_told(app, users, crew, run_jobs):
    run_jobs()
    cap = login(app, users, "cap")
    response = cap.post(f"/teams/{crew}/members/{users.ids['ann']}/remove", headers=HX)
    assert response.status_code == 200 and "Removed ann from Crimson Hawks" in response.get_data(as_text=True)
    assert members(app, crew) == {users.ids["cap"]}
    run_jobs()
    assert notified(app, users.ids["ann"], "roster_changed")  # the removed player is told
    # removing someone who is not on the team: 404, nothing changes
    response = cap.post(f"/teams/{crew}/members/{users.ids['eve']}/remove")
    assert response.status_code == 404 and "not a member" in response.get_data(as_text=True)
    # a member may not remove others
    ann2 = login(app, users, "ann")
    assert ann2.post(f"/teams/{crew}/members/{users.ids['cap']}/remove").status_code == 403


def test_member_leaves_and_the_captain_is_told(app, users, crew, run_jobs):
    run_jobs()
    before = len(notified(app, users.ids["cap"], "roster_changed"))
    ann = login(app, users, "ann")
    response = ann.post(f"/teams/{crew}/leave")
    assert response.status_code == 303
    assert "You left Crimson Hawks" in ann.get(f"/teams/{crew}").get_data(as_text=True)
    assert members(app, crew) == {users.ids["cap"]}
    run_jobs()
    assert len(notified(app, users.ids["cap"], "roster_changed")) == before + 1
    # the captain cannot leave
    cap = login(app, users, "cap")
    response = cap.post(f"/teams/{crew}/leave", headers=HX)
    assert response.status_code == 422 and "captain cannot leave" in response.get_data(as_text=True)
    assert members(app, crew) == {users.ids["cap"]}


# --- the team's Discord webhook ----------------------------------------------------------

def webhook(app, team_id):
    with app.app_context():
        return db.session.get(Team, team_id).discord_webhook_url


def test_webhook_set_test_and_clear(app, users, crew, discord_server):
    cap = login(app, users, "cap")
    url = discord_server.webhook_url(77)
    response = cap.post(f"/teams/{crew}/webhook", data={"discord_webhook_url": url})
    assert response.status_code == 303 and webhook(app, crew) == url
    page = cap.get(f"/teams/{crew}").get_data(as_text=True)
    assert "webhook is saved" in page and "A Discord webhook is set" in page and url not in page
    # test the saved one (empty field), with htmx: the result line only
    response = cap.post(f"/teams/{crew}/webhook/test", data={"discord_webhook_url": ""}, headers=HX)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and html.lstrip().startswith('<p id="webhook-test-result"') and "✓" in html
    assert len(discord_server.messages(77)) == 1
    # without JS: the page with the result
    response = cap.post(f"/teams/{crew}/webhook/test", data={"discord_webhook_url": ""})
    assert response.status_code == 200 and '<h1 id="team-name">' in response.get_data(as_text=True)
    assert len(discord_server.messages(77)) == 2
    # clear
    response = cap.post(f"/teams/{crew}/webhook", data={"action": "clear"}, headers=HX)
    assert response.status_code == 200 and "webhook is cleared" in response.get_data(as_text=True)
    assert webhook(app, crew) is None


def test_webhook_refusals(app, users, crew, discord_server):
    cap = login(app, users, "cap")
    response = cap.post(f"/teams/{crew}/webhook", data={"discord_webhook_url": "https://evil.example/api/webhooks/1/x"})
    assert response.status_code == 422 and "Not saved" in response.get_data(as_text=True)
    assert webhook(app, crew) is None
    response = cap.post(f"/teams/{crew}/webhook/test", data={"discord_webhook_url": "http://127.0.0.1:1/admin"},
                        headers=HX)
    assert response.status_code == 422 and "Not sent" in response.get_data(as_text=True)
    # a member may neither set nor test it
    ann = login(app, users, "ann")
    assert ann.post(f"/teams/{crew}/webhook", data={"discord_webhook_url": discord_server.webhook_url(5)}
                    ).status_code == 403
    assert ann.post(f"/teams/{crew}/webhook/test",
                    data={"discord_webhook_url": discord_server.webhook_url(5)}).status_code == 403
    assert webhook(app, crew) is None and discord_server.requests == []


def test_webhook_tests_share_the_personal_rate_limit(app, users, crew, discord_server):
    cap = login(app, users, "cap")
    for n in range(2):
        assert cap.post("/settings/notifications/discord-test",
                        data={"discord_webhook_url": discord_server.webhook_url(10 + n)}, headers=HX).status_code == 200
    assert cap.post(f"/teams/{crew}/webhook/test", data={"discord_webhook_url": discord_server.webhook_url(20)},
                    headers=HX).status_code == 200
    response = cap.post(f"/teams/{crew}/webhook/test", data={"discord_webhook_url": discord_server.webhook_url(21)},
                        headers=HX)
    assert response.status_code == 429 and "try again" in response.get_data(as_text=True).lower()
    page = cap.post(f"/teams/{crew}/webhook/test", data={"discord_webhook_url": discord_server.webhook_url(21)})
    assert page.status_code == 429 and '<h1 id="team-name">' in page.get_data(as_text=True)
    assert discord_server.messages(21) == []


# --- invites --------------------------------------------------------------------------

def test_only_the_invitee_sees_an_invite(app, users, crew):
    invite_id = make_invite(app, users, crew, "eve")
    for name in ("cap", "ann", "root"):
        client = login(app, users, name)
        assert client.get(f"/invites/{invite_id}").status_code == 404, name
        assert client.post(f"/invites/{invite_id}/accept").status_code == 404, name
        assert client.post(f"/invites/{invite_id}/decline", headers=HX).status_code == 404, name
    eve = login(app, users, "eve")
    assert eve.get("/invites/9999").status_code == 404
    page = eve.get(f"/invites/{invite_id}").get_data(as_text=True)
    assert '<h1 id="team-name">Crimson Hawks</h1>' in page and "cap invited you" in page
    assert ">Accept<" in page and ">Decline<" in page
    assert invites(app, crew) == [(users.ids["eve"], "pending")]


def test_accept_without_js_then_the_answered_invite_says_so(app, users, crew, run_jobs):
    invite_id = make_invite(app, users, crew, "eve")
    run_jobs()
    eve = login(app, users, "eve")
    response = eve.post(f"/invites/{invite_id}/accept")
    assert response.status_code == 303 and response.headers["Location"].endswith(f"/invites/{invite_id}")
    page = eve.get(f"/invites/{invite_id}").get_data(as_text=True)
    assert "You joined Crimson Hawks" in page and "You accepted this invite" in page and ">Accept<" not in page
    assert users.ids["eve"] in members(app, crew)
    run_jobs()
    assert notified(app, users.ids["cap"], "invite_accepted")
    # answering again changes nothing and says why
    response = eve.post(f"/invites/{invite_id}/decline")
    assert response.status_code == 409 and "already accepted" in response.get_data(as_text=True)
    assert invites(app, crew) == [(users.ids["eve"], "accepted")]
    mine = eve.get("/me/teams").get_data(as_text=True)
    assert f'href="/teams/{crew}"' in mine and "No pending invites" in mine


def test_decline_with_htmx(app, users, crew):
    invite_id = make_invite(app, users, crew, "eve")
    eve = login(app, users, "eve")
    response = eve.post(f"/invites/{invite_id}/decline", headers=HX)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and html.lstrip().startswith('<section id="invite-answer"')
    assert "Declined" in html and ">Accept<" not in html
    assert invites(app, crew) == [(users.ids["eve"], "declined")]
    assert users.ids["eve"] not in members(app, crew)


def test_an_expired_invite_explains_itself_and_changes_nothing(app, users, crew):
    invite_id = make_invite(app, users, crew, "eve", age_days=app.config["INVITE_EXPIRY_DAYS"] + 1)
    eve = login(app, users, "eve")
    page = eve.get(f"/invites/{invite_id}").get_data(as_text=True)
    assert "This invite has expired" in page and ">Accept<" not in page
    response = eve.post(f"/invites/{invite_id}/accept", headers=HX)
    assert response.status_code == 422 and "expired" in response.get_data(as_text=True)
    assert eve.post(f"/invites/{invite_id}/accept").status_code == 409
    assert users.ids["eve"] not in members(app, crew)
    assert "No pending invites" in eve.get("/me/teams").get_data(as_text=True)


# --- nav ------------------------------------------------------------------------------

def test_nav_links(app, users, crew):
    page = login(app, users, "ann").get("/me/teams").get_data(as_text=True)
    assert 'id="nav-my-teams"' in page and 'href="/me/teams"' in page and 'id="nav-ops"' not in page
    assert "Crimson Hawks" in page
    admin = login(app, users, "root").get("/notifications").get_data(as_text=True)
    assert '<a href="/ops" class="nav-link" id="nav-ops">Ops</a>' in admin


# --- CSRF -------------------------------------------------------------------------------

def test_posts_without_the_csrf_token_are_refused(app, users, crew, discord_server):
    invite_id = make_invite(app, users, crew, "eve")
    cap, eve = login(app, users, "cap"), login(app, users, "eve")
    app.config["WTF_CSRF_ENABLED"] = True  # logged in above; from now on every POST needs the token
    posts = [(cap, f"/teams/{crew}/invite", {"username": "root"}),
             (cap, f"/teams/{crew}/members/{users.ids['ann']}/remove", {}),
             (cap, f"/teams/{crew}/webhook", {"discord_webhook_url": discord_server.webhook_url(3)}),
             (cap, f"/teams/{crew}/webhook/test", {"discord_webhook_url": discord_server.webhook_url(3)}),
             (eve, f"/invites/{invite_id}/accept", {}), (eve, f"/invites/{invite_id}/decline", {})]
    for client, path, data in posts:
        for headers in ({}, HX, {**HX, "X-CSRFToken": "forged"}):
            response = client.post(path, data=data, headers=headers)
            assert response.status_code == 400, path
        assert "Nothing was changed" in client.post(path, data=data).get_data(as_text=True)
    assert members(app, crew) == {users.ids["cap"], users.ids["ann"]}
    assert invites(app, crew) == [(users.ids["eve"], "pending")]
    assert webhook(app, crew) is None and discord_server.requests == []
    # with the page's token it goes through
    page = cap.get(f"/teams/{crew}").get_data(as_text=True)
    token = csrf_from(page)
    assert cap.post(f"/teams/{crew}/invite", data={"username": "root", "csrf_token": token}).status_code == 303
