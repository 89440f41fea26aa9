"""Answering an invite from the notification center: Accept / Decline on the item, in
place with htmx or as a plain form POST and redirect, by its recipient only, and refused
(nothing written) once the invite was answered or expired."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from deltacrown.accounts.models import User
from deltacrown.extensions import db
from deltacrown.notifications.models import Notification
from deltacrown.teams import services as teams
from deltacrown.teams.models import TeamInvite, TeamMembership
from deltacrown.timeutil import utcnow

from .conftest import HX, csrf_from


@pytest.fixture
def invited(app, users, auth, run_jobs):
    """cap's team Crimson Hawks invites alice (logged in); her notification is written by the worker."""
    cap, alice = users.create("cap"), users.create("alice")
    with app.app_context():
        team = teams.create_team("Crimson Hawks", cap)
        invite = teams.invite_user(db.session.get(User, cap), team, alice)
        ids = {"team": team.id, "invite": invite.id, "cap": cap, "alice": alice}
    run_jobs()
    with app.app_context():
        ids["notification"] = db.session.scalar(select(Notification.id).where(
            Notification.user_id == alice, Notification.type == "invite_sent"))
    auth.login("alice")
    return ids


def _state(app, ids):
    with app.app_context():
        invite = db.session.get(TeamInvite, ids["invite"])
        note = db.session.get(Notification, ids["notification"])
        member = db.session.scalar(select(TeamMembership.id).where(
            TeamMembership.team_id == ids["team"], TeamMembership.user_id == ids["alice"])) is not None
        cap_news = sorted(db.session.scalars(select(Notification.type).where(Notification.user_id == ids["cap"])))
        return invite.status, note.is_read, member, cap_news


def _buttons(html: str) -> list[str]:
    return re.findall(r'<button type="submit"[^>]*>(Accept|Decline)</button>', html)


def test_center_shows_accept_and_decline_on_a_pending_invite(client, invited, notify):
    notify(invited["alice"], type="match_result", title="A result")
    html = client.get("/notifications").get_data(as_text=True)
    assert _buttons(html) == ["Accept", "Decline"]  # on the invite only
    nid = invited["notification"]
    assert f'action="/notifications/{nid}/actions/accept"' in html
    assert f'hx-post="/notifications/{nid}/actions/decline"' in html
    assert 'aria-label="Answer: Crimson Hawks invited you to join"' in html
    # The first answer is the primary one; the rest look secondary.
    assert re.findall(r'<button type="submit"( class="secondary")?>(?:Accept|Decline)</button>', html) == [
        "", ' class="secondary"']


def test_accept_in_place_with_htmx(app, client, invited, run_jobs):
    nid = invited["notification"]
    response = client.post(f"/notifications/{nid}/actions/accept", data={"next": "/notifications"}, headers=HX)
    assert response.status_code == 200
    assert response.headers["HX-Trigger"] == "refreshBadge"
    item = response.get_data(as_text=True)
    assert item.lstrip().startswith(f'<li id="notification-{nid}" class="notification is-read"')
    assert "You joined Crimson Hawks" in item and _buttons(item) == []
    assert _state(app, invited)[:3] == ("accepted", True, True)
    run_jobs()
    assert "invite_accepted" in _state(app, invited)[3]  # the captain is told, as ever
    assert _buttons(client.get("/notifications").get_data(as_text=True)) == []  # answered: no buttons


def test_decline_in_place_with_htmx(app, client, invited):
    response = client.post(f"/notifications/{invited['notification']}/actions/decline", headers=HX)
    assert response.status_code == 200 and "Declined" in response.get_data(as_text=True)
    assert _state(app, invited)[:3] == ("declined", True, False)


def test_without_javascript_a_post_redirects_back_with_the_message(app, client, invited):
    response = client.post(f"/notifications/{invited['notification']}/actions/accept",
                           data={"next": "/notifications?type=invite_sent"})
    assert response.status_code == 303 and response.headers["Location"] == "/notifications?type=invite_sent"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert '<p class="flash" role="status">You joined Crimson Hawks</p>' in page
    assert _state(app, invited)[:3] == ("accepted", True, True)


def test_an_answered_invite_says_why_and_changes_nothing(app, client, invited, run_jobs):
    with app.app_context():
        teams.decline_invite(db.session.get(User, invited["alice"]), db.session.get(TeamInvite, invited["invite"]))
    run_jobs()
    before = _state(app, invited)
    path = f"/notifications/{invited['notification']}/actions/accept"
    response = client.post(path, headers=HX)
    assert response.status_code == 409
    item = response.get_data(as_text=True)
    assert "This invite was already declined." in item and _buttons(item) == []
    response = client.post(path)
    assert response.status_code == 303
    assert "This invite was already declined." in client.get("/notifications").get_data(as_text=True)
    run_jobs()
    assert _state(app, invited) == before  # not even marked read


def test_an_expired_invite_says_why_and_changes_nothing(app, client, invited):
    with app.app_context():
        db.session.get(TeamInvite, invited["invite"]).created_at = utcnow() - timedelta(
            days=app.config["INVITE_EXPIRY_DAYS"] + 1)
        db.session.commit()
    assert _buttons(client.get("/notifications").get_data(as_text=True)) == []
    before = _state(app, invited)
    response = client.post(f"/notifications/{invited['notification']}/actions/decline", headers=HX)
    assert response.status_code == 409 and "expired" in response.get_data(as_text=True)
    assert _state(app, invited) == before


def test_other_players_and_unknown_actions_get_404(app, client, auth, invited):
    before = _state(app, invited)
    assert client.post(f"/notifications/{invited['notification']}/actions/join").status_code == 404
    auth.logout()
    auth.login("cap")
    for name in ("accept", "decline"):
        assert client.post(f"/notifications/{invited['notification']}/actions/{name}").status_code == 404
        assert client.post(f"/notifications/{invited['notification']}/actions/{name}", headers=HX).status_code == 404
    assert _state(app, invited) == before


class TestCsrf:
    @pytest.fixture
    def app_config(self):
        return {"WTF_CSRF_ENABLED": True}

    def test_an_answer_needs_the_token(self, app, client, users, run_jobs):
        cap, alice = users.create("cap"), users.create("alice")
        with app.app_context():
            team = teams.create_team("Crimson Hawks", cap)
            invite_id = teams.invite_user(db.session.get(User, cap), team, alice).id
        run_jobs()
        with app.app_context():
            nid = db.session.scalar(select(Notification.id).where(Notification.user_id == alice))
        login_page = client.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', login_page).group(1)
        client.post("/login", data={"username": "alice", "password": "alice-password", "csrf_token": token})
        page = client.get("/notifications").get_data(as_text=True)
        path = f"/notifications/{nid}/actions/accept"
        for headers in ({}, HX, {**HX, "X-CSRFToken": "forged"}):
            assert client.post(path, headers=headers).status_code == 400
        with app.app_context():
            assert db.session.get(TeamInvite, invite_id).status == "pending"
        response = client.post(path, headers={**HX, "X-CSRFToken": csrf_from(page)})
        assert response.status_code == 200 and "You joined Crimson Hawks" in response.get_data(as_text=True)


def test_the_demo_invite_can_be_answered(app, client):
    from deltacrown.ops.demo import demo_logins, seed_demo
    with app.app_context():
        seed_demo()
        seed_demo()  # rerunning keeps the one answerable invite
    password = dict((name, pw) for name, pw, _ in demo_logins())["heidi"]
    client.post("/login", data={"username": "heidi", "password": password})
    html = client.get("/notifications").get_data(as_text=True)
    assert _buttons(html) == ["Accept", "Decline"]
    nid = re.search(r'action="/notifications/(\d+)/actions/accept"', html).group(1)
    response = client.post(f"/notifications/{nid}/actions/accept", headers=HX)
    assert response.status_code == 200 and "You joined Silver Owls" in response.get_data(as_text=True)
