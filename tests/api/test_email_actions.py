"""The invite email's Accept / Decline buttons: signed single-purpose links that a GET
only shows (link scanners answer nothing) and a POST runs, without logging in; a used,
tampered or expired link says why and writes nothing. Mail goes through the aiosmtpd
stand-in, sent by the real worker."""
from __future__ import annotations

import re
from datetime import timedelta
from unittest import mock
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from deltacrown.extensions import db
from deltacrown.models import Notification, TeamInvite, TeamMembership
from deltacrown.timeutil import utcnow


@pytest.fixture
def app_config(smtp_server):
    return smtp_server.config()


@pytest.fixture
def invite_mail(api, league, run_jobs, smtp_server):
    """eve is invited to Red; her invite email arrived. Returns its action links (paths) and ids."""
    invite = api.post(f"/teams/{league['red']}/invites", "cap", {"user_id": api.users.ids["eve"]}, expect=201).json
    run_jobs()
    smtp_server.wait_for(1)
    (mail,) = [m for m in smtp_server.messages if "Red invited you" in m.subject]
    links = dict(re.findall(r"(Accept|Decline): (\S+)", mail.text))
    html_links = re.findall(r'href="([^"]+/email-actions/[^"]+)"[^>]*>(Accept|Decline)<', mail.html)
    assert sorted(label for _, label in html_links) == ["Accept", "Decline"]
    assert {label: url for url, label in html_links} == links  # the same links in both parts
    smtp_server.clear()
    return {"accept": urlsplit(links["Accept"]).path, "decline": urlsplit(links["Decline"]).path,
            "invite": invite["id"], "team": league["red"]}


def _state(api, invite_mail):
    with api.app.app_context():
        invite = db.session.get(TeamInvite, invite_mail["invite"])
        members = db.session.scalars(select(TeamMembership.team_id).where(
            TeamMembership.user_id == api.users.ids["eve"])).all()
        unread = db.session.scalars(select(Notification.id).where(
            Notification.user_id == api.users.ids["eve"], Notification.is_read.is_(False))).all()
        everyone = db.session.scalar(select(db.func.count(Notification.id)))
        return invite.status, sorted(members), sorted(unread), everyone


def test_links_are_absolute_and_single_purpose(invite_mail):
    assert invite_mail["accept"].startswith("/email-actions/")
    assert invite_mail["accept"] != invite_mail["decline"]


def test_get_shows_a_confirmation_and_changes_nothing(api, client, invite_mail):
    before = _state(api, invite_mail)
    for _ in range(2):  # a scanner, then the player
        response = client.get(invite_mail["accept"])
        assert response.status_code == 200
        html = response.get_data(as_text=True)
        assert "Accept the invite to join Red?" in html
        assert html.count('<button type="submit"') == 1 and ">Accept</button>" in html
    assert _state(api, invite_mail) == before


def test_post_accepts_without_login_and_tells_the_captain(api, client, invite_mail, run_jobs, smtp_server):
    response = client.post(invite_mail["accept"])  # no session, no CSRF token: the link is the proof
    assert response.status_code == 200
    assert "You joined Red" in response.get_data(as_text=True)
    status, members, unread, _ = _state(api, invite_mail)
    assert status == "accepted" and invite_mail["team"] in members
    assert unread == []  # the invite's notification is read now
    run_jobs()
    assert api.notified("invite_accepted") == {"cap": 1}
    smtp_server.wait_for(1)
    assert any("eve accepted the invite to Red" in m.subject for m in smtp_server.messages)


def test_post_declines(api, client, invite_mail):
    response = client.post(invite_mail["decline"])
    assert response.status_code == 200 and "Declined" in response.get_data(as_text=True)
    status, members, _, _ = _state(api, invite_mail)
    assert status == "declined" and invite_mail["team"] not in members


def test_a_used_link_explains_itself_and_writes_nothing(api, client, invite_mail):
    assert client.post(invite_mail["decline"]).status_code == 200
    before = _state(api, invite_mail)
    for path in (invite_mail["decline"], invite_mail["accept"]):
        for method in (client.get, client.post):
            response = method(path)
            assert response.status_code == 409
            assert "already declined" in response.get_data(as_text=True)
    assert _state(api, invite_mail) == before


def test_a_tampered_link_explains_itself_and_writes_nothing(api, client, invite_mail):
    before = _state(api, invite_mail)
    token = invite_mail["accept"].rsplit("/", 1)[1]
    forged = [token[:-2] + ("AA" if not token.endswith("AA") else "BB"), token[:20], "nonsense",
              # the decline link's payload under the accept link's signature
              invite_mail["decline"].rsplit("/", 1)[1].split(".")[0] + "." + token.split(".", 1)[1]]
    for bad in forged:
        for method in (client.get, client.post):
            response = method(f"/email-actions/{bad}")
            assert response.status_code == 400, bad
            assert "not valid" in response.get_data(as_text=True)
    assert _state(api, invite_mail) == before


def test_an_expired_link_explains_itself_and_writes_nothing(api, client, invite_mail):
    before = _state(api, invite_mail)
    days = api.app.config["INVITE_EXPIRY_DAYS"]
    later = utcnow() + timedelta(days=days, hours=1)
    with mock.patch("itsdangerous.timed.time.time", return_value=later.timestamp()):
        for method in (client.get, client.post):
            response = method(invite_mail["accept"])
            assert response.status_code == 410
            assert "expired" in response.get_data(as_text=True)
    assert _state(api, invite_mail) == before


def test_an_expired_invite_refuses_a_fresh_link(api, client, invite_mail):
    with api.app.app_context():
        db.session.get(TeamInvite, invite_mail["invite"]).created_at = utcnow() - timedelta(
            days=api.app.config["INVITE_EXPIRY_DAYS"] + 1)
        db.session.commit()
    before = _state(api, invite_mail)
    for method in (client.get, client.post):
        response = method(invite_mail["accept"])
        assert response.status_code == 409 and "expired" in response.get_data(as_text=True)
    assert _state(api, invite_mail) == before


def test_email_only_invite_still_carries_working_buttons(api, league, client, run_jobs, smtp_server):
    """No in-app notification (email only): the links come from the delivery itself."""
    api.put("/preferences", "eve", {"channels": {"invite_sent": ["email"]}}, expect=200)
    invite = api.post(f"/teams/{league['red']}/invites", "cap", {"user_id": api.users.ids["eve"]}, expect=201).json
    run_jobs()
    smtp_server.wait_for(1)
    (mail,) = [m for m in smtp_server.messages if "Red invited you" in m.subject]
    accept = urlsplit(dict(re.findall(r"(Accept|Decline): (\S+)", mail.text))["Accept"]).path
    with api.app.app_context():
        assert db.session.scalar(select(Notification.id).where(Notification.type == "invite_sent")) is None
    assert client.post(accept).status_code == 200
    with api.app.app_context():
        assert db.session.get(TeamInvite, invite["id"]).status == "accepted"
