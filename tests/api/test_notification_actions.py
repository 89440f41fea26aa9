"""Actions on notifications through the API: an invite answered from its notification,
by its recipient only, and refused (409, nothing written) once it no longer applies."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from deltacrown.extensions import db
from deltacrown.models import Notification, TeamInvite, TeamMembership
from deltacrown.timeutil import utcnow

ACTIONS = [{"name": "accept", "label": "Accept"}, {"name": "decline", "label": "Decline"}]


@pytest.fixture
def invited(api, league, run_jobs):
    """eve is invited to Red; her invite_sent notification is written (by the real worker)."""
    invite = api.post(f"/teams/{league['red']}/invites", "cap", {"user_id": api.users.ids["eve"]}, expect=201).json
    run_jobs()
    (item,) = [i for i in api.get("/notifications", "eve", expect=200).json["items"] if i["type"] == "invite_sent"]
    return {"invite": invite["id"], "notification": item["id"], "item": item, "team": league["red"]}


def _state(api, invited):
    """What an action could change: the invite, eve's memberships, her notification, the captain's news."""
    with api.app.app_context():
        invite = db.session.get(TeamInvite, invited["invite"])
        note = db.session.get(Notification, invited["notification"])
        members = db.session.scalars(select(TeamMembership.team_id).where(
            TeamMembership.user_id == api.users.ids["eve"])).all()
        cap_news = db.session.scalars(select(Notification.type).where(
            Notification.user_id == api.users.ids["cap"])).all()
        return (invite.status, invite.responded_at, note.is_read, sorted(members), sorted(cap_news))


def test_invite_notification_lists_its_actions_while_pending(api, invited):
    assert invited["item"]["actions"] == ACTIONS
    # other types have none
    api.post(f"/teams/{invited['team']}/members", "cap", {"user_id": api.users.ids["dee"]}, expect=201)
    items = api.get("/notifications", "eve", expect=200).json["items"]
    assert all(i["actions"] == [] for i in items if i["type"] != "invite_sent")


def test_accept_from_the_notification(api, invited, run_jobs):
    response = api.post(f"/notifications/{invited['notification']}/actions/accept", "eve", expect=200).json
    assert response["result"] == {"status": "accepted", "message": "You joined Red"}
    assert response["notification"]["id"] == invited["notification"]
    assert response["notification"]["is_read"] is True
    assert response["notification"]["actions"] == []  # answered: nothing left to do
    status, _, is_read, members, _ = _state(api, invited)
    assert (status, is_read) == ("accepted", True) and invited["team"] in members
    run_jobs()
    assert api.notified("invite_accepted") == {"cap": 1}  # the captain is told, as with the invite API
    item = api.get("/notifications", "eve", expect=200).json["items"]
    assert [i["actions"] for i in item if i["id"] == invited["notification"]] == [[]]


def test_decline_from_the_notification(api, invited, run_jobs):
    response = api.post(f"/notifications/{invited['notification']}/actions/decline", "eve", expect=200).json
    assert response["result"] == {"status": "declined", "message": "Declined"}
    status, _, is_read, members, _ = _state(api, invited)
    assert (status, is_read, invited["team"] in members) == ("declined", True, False)


def test_only_the_recipient_can_act(api, invited):
    before = _state(api, invited)
    for who in ("cap", "ann", "admin"):
        body = api.post(f"/notifications/{invited['notification']}/actions/accept", who, expect=404).json
        assert body["error"]["code"] == "not_found"
    api.post("/notifications/999999/actions/accept", "eve", expect=404)
    assert _state(api, invited) == before


def test_unknown_action_is_404(api, invited):
    before = _state(api, invited)
    api.post(f"/notifications/{invited['notification']}/actions/join", "eve", expect=404)
    assert _state(api, invited) == before
    # a notification whose type has no actions
    other = api.get("/notifications", "cap", expect=200).json["items"]
    if other:
        api.post(f"/notifications/{other[0]['id']}/actions/accept", "cap", expect=404)


def test_answered_invite_is_409_and_changes_nothing(api, invited, run_jobs):
    api.post(f"/invites/{invited['invite']}/decline", "eve", expect=200)
    run_jobs()
    with api.app.app_context():  # unread again, to see the 409 does not mark it read
        db.session.get(Notification, invited["notification"]).is_read = False
        db.session.commit()
    assert api.get("/notifications", "eve", expect=200).json["items"][0]["actions"] == []
    before = _state(api, invited)
    body = api.post(f"/notifications/{invited['notification']}/actions/accept", "eve", expect=409).json
    assert body["error"]["code"] == "conflict" and "already declined" in body["error"]["message"]
    run_jobs()
    assert _state(api, invited) == before


def test_expired_invite_is_409_and_changes_nothing(api, invited, run_jobs):
    with api.app.app_context():
        invite = db.session.get(TeamInvite, invited["invite"])
        invite.created_at = utcnow() - timedelta(days=api.app.config["INVITE_EXPIRY_DAYS"] + 1)
        db.session.commit()
    assert [i["actions"] for i in api.get("/notifications", "eve", expect=200).json["items"]
            if i["id"] == invited["notification"]] == [[]]
    before = _state(api, invited)
    body = api.post(f"/notifications/{invited['notification']}/actions/accept", "eve", expect=409).json
    assert "expired" in body["error"]["message"]
    run_jobs()
    assert _state(api, invited) == before


def test_action_endpoint_is_documented(client):
    doc = client.get("/api/v1/openapi.json").json
    operation = doc["paths"]["/api/v1/notifications/{notification_id}/actions/{action_name}"]["post"]
    assert operation.get("summary") or operation.get("description")
    props = doc["components"]["schemas"]["Notification"]["properties"]
    assert "actions" in props and "description" in props["actions"]
