"""The JSON API contract: answers, permissions, and every 4xx writing nothing."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import update

from deltacrown.extensions import db
from deltacrown.models import (CoinTransaction, Notification, NotificationPreferenceChange, OutboxEvent,
                               TeamInvite, TeamMembership, Tournament)
from tests.api.helpers import in_days


def error(response, status, code=None):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.json["error"]
    assert set(body) == {"code", "message", "fields"} and body["message"]
    if code:
        assert body["code"] == code
    return body


def snapshot(api):
    """Counts of the rows a rejected request must not touch."""
    return (len(api.rows(OutboxEvent)), len(api.rows(TeamMembership)), len(api.rows(TeamInvite)))


# --- users -----------------------------------------------------------------------

def test_users_and_me(api, users):
    users.create("admin", admin=True)
    users.create("pat")
    made = api.post("/users", "admin", {"username": "newbie", "email": "n@example.com", "password": "secret-pw",
                                        "timezone": "Europe/Berlin"}, expect=201).json
    assert set(made) >= {"id", "username", "email", "is_admin", "timezone", "api_token"}
    assert made["is_admin"] is False and made["timezone"] == "Europe/Berlin"
    me = api.client.get("/api/v1/me", headers={"Authorization": f"Bearer {made['api_token']}"})
    assert me.status_code == 200 and me.json["username"] == "newbie" and "api_token" not in me.json
    assert me.json["created_at"].endswith("+00:00")

    error(api.post("/users", "pat", {"username": "x1x", "email": "x@example.com", "password": "secret-pw"}),
          403, "forbidden")
    error(api.client.get("/api/v1/me"), 401, "unauthorized")
    error(api.client.get("/api/v1/me", headers={"Authorization": "Bearer nope"}), 401)
    error(api.client.get("/api/v1/me", headers={"Authorization": "Basic abc"}), 401)
    # no token is a 401 even when the body is also bad
    error(api.post("/users", None, {"username": 1}), 401)
    bad = error(api.post("/users", "admin", {"username": "ok_name", "email": "o@example.com", "password": "short",
                                             "timezone": "Mars/Base"}), 422, "invalid")
    assert "password" in bad["fields"]
    bad = error(api.post("/users", "admin", {"username": "ok_name", "email": "o@example.com",
                                             "password": "long-enough", "timezone": "Mars/Base"}), 422)
    assert "timezone" in bad["fields"]
    # a taken username or email is a conflict with current state, like a taken team name
    taken = error(api.post("/users", "admin", {"username": "NEWBIE", "email": "z@example.com",
                                               "password": "long-enough"}), 409, "conflict")
    assert set(taken["fields"]) == {"username"}
    taken = error(api.post("/users", "admin", {"username": "other", "email": "N@example.com",
                                               "password": "long-enough"}), 409, "conflict")
    assert set(taken["fields"]) == {"email"}
    malformed = api.client.post("/api/v1/users", data="{not json", content_type="application/json",
                                headers=users.headers("admin"))
    assert malformed.status_code in (400, 422) and "error" in malformed.json


# --- teams, invites, members ------------------------------------------------------------

def test_team_create_and_get(api, league, users):
    red = api.get(f"/teams/{league['red']}", "eve", expect=200).json
    assert {k: red[k] for k in ("name", "tag", "points", "wins", "losses", "rank")} == \
        {"name": "Red", "tag": "RED", "points": 0, "wins": 0, "losses": 0, "rank": None}
    assert red["captain_id"] == users.ids["cap"]
    assert [(m["username"], m["role"]) for m in red["members"]] == [("cap", "captain"), ("ann", "member"),
                                                                    ("bob", "member")]
    error(api.get("/teams/999", "eve"), 404, "not_found")
    error(api.get("/teams/99999999999999999999", "eve"), 404)
    error(api.post("/teams", "cap", {"name": "Mine", "captain_id": users.ids["cap"]}), 403)
    error(api.post("/teams", "admin", {"name": "Red", "captain_id": users.ids["eve"]}), 409)
    assert "captain_id" in error(api.post("/teams", "admin", {"name": "New", "captain_id": 999}), 404)["fields"]
    assert "name" in error(api.post("/teams", "admin", {"name": "", "captain_id": 1}), 422)["fields"]
    assert "name" in error(api.post("/teams", "admin", {"name": "x" * 101, "captain_id": 1}), 422)["fields"]
    assert "name" in error(api.post("/teams", "admin", {"name": "a\x00b", "captain_id": 1}), 422)["fields"]


def test_team_webhook(api, league, app):
    red = league["red"]
    good = app.config["DISCORD_API_BASE"] + "/webhooks/123/abc-DEF"
    assert api.put(f"/teams/{red}/discord-webhook", "cap", {"url": good}, expect=200).json["has_discord_webhook"]
    error(api.put(f"/teams/{red}/discord-webhook", "ann", {"url": good}), 403)
    assert "url" in error(api.put(f"/teams/{red}/discord-webhook", "admin",
                                  {"url": "http://169.254.169.254/webhooks/1/a"}), 422)["fields"]
    assert "url" in error(api.put(f"/teams/{red}/discord-webhook", "admin", {}), 422)["fields"]
    assert not api.put(f"/teams/{red}/discord-webhook", "admin", {"url": None}, expect=200).json["has_discord_webhook"]


def test_invite_lifecycle(api, league, users, app):
    red, eve = league["red"], users.ids["eve"]
    invite = api.post(f"/teams/{red}/invites", "cap", {"user_id": eve}, expect=201).json
    assert invite["status"] == "pending" and invite["team_id"] == red and invite["user_id"] == eve
    assert datetime.fromisoformat(invite["created_at"]).utcoffset() == timedelta(0)
    before = snapshot(api)
    error(api.post(f"/teams/{red}/invites", "cap", {"user_id": eve}), 409)  # already invited
    error(api.post(f"/teams/{red}/invites", "cap", {"user_id": users.ids["ann"]}), 409)  # already a member
    error(api.post(f"/teams/{red}/invites", "ann", {"user_id": eve}), 403)
    error(api.post(f"/teams/{red}/invites", "cap", {"user_id": 999}), 404)
    error(api.post(f"/teams/{red}/invites", "cap", {"user_id": "eve"}), 422)
    error(api.post(f"/invites/{invite['id']}/accept", "cap"), 403)
    error(api.post("/invites/999/accept", "eve"), 404)
    assert snapshot(api) == before

    accepted = api.post(f"/invites/{invite['id']}/accept", "eve", expect=200).json
    assert accepted["status"] == "accepted" and accepted["responded_at"]
    assert "eve" in [m["username"] for m in api.get(f"/teams/{red}", "eve").json["members"]]
    before = snapshot(api)
    error(api.post(f"/invites/{invite['id']}/accept", "eve"), 409, "conflict")
    error(api.post(f"/invites/{invite['id']}/decline", "eve"), 409)
    assert snapshot(api) == before

    # declined, then accepted: 409
    blue_invite = api.post(f"/teams/{league['blue']}/invites", "cyd", {"user_id": users.ids["ann"]}, expect=201).json
    assert api.post(f"/invites/{blue_invite['id']}/decline", "ann", expect=200).json["status"] == "declined"
    error(api.post(f"/invites/{blue_invite['id']}/accept", "ann"), 409)

    # expired (older than INVITE_EXPIRY_DAYS): 409 and nothing written
    old = api.post(f"/teams/{league['blue']}/invites", "cyd", {"user_id": users.ids["bob"]}, expect=201).json
    with app.app_context():
        db.session.execute(update(TeamInvite).where(TeamInvite.id == old["id"]).values(
            created_at=datetime.now(timezone.utc) - timedelta(days=app.config["INVITE_EXPIRY_DAYS"], hours=1)))
        db.session.commit()
    before = snapshot(api)
    assert "expired" in error(api.post(f"/invites/{old['id']}/accept", "bob"), 409)["message"]
    assert snapshot(api) == before
    assert api.rows(TeamInvite, TeamInvite.id == old["id"])[0].status == "pending"
    # ...and a fresh invite may be sent in its place
    api.post(f"/teams/{league['blue']}/invites", "cyd", {"user_id": users.ids["bob"]}, expect=201)


def test_members_add_and_remove(api, league, users):
    red = league["red"]
    member = api.post(f"/teams/{red}/members", "cap", {"user_id": users.ids["eve"]}, expect=201).json
    assert member["username"] == "eve" and member["role"] == "member"
    before = snapshot(api)
    error(api.post(f"/teams/{red}/members", "cap", {"user_id": users.ids["eve"]}), 409)
    error(api.post(f"/teams/{red}/members", "ann", {"user_id": users.ids["dee"]}), 403)
    error(api.delete(f"/teams/{red}/members/{users.ids['bob']}", "ann"), 403)
    error(api.delete(f"/teams/{red}/members/{users.ids['dee']}", "cap"), 404)
    error(api.delete(f"/teams/{red}/members/{users.ids['cap']}", "admin"), 409)
    assert snapshot(api) == before
    api.delete(f"/teams/{red}/members/{users.ids['eve']}", "eve", expect=204)
    api.delete(f"/teams/{red}/members/{users.ids['bob']}", "admin", expect=204)
    events = [e.payload for e in api.rows(OutboxEvent, OutboxEvent.type == "roster_changed")][-2:]
    assert events == [
        {"team_id": red, "user_id": users.ids["eve"], "action": "left", "actor_id": users.ids["eve"]},
        {"team_id": red, "user_id": users.ids["bob"], "action": "removed", "actor_id": users.ids["admin"]}]


# --- sponsors, promotions, achievements ------------------------------------------------

def test_sponsors_promotions_achievements(api, league):
    red = league["red"]
    error(api.post(f"/teams/{red}/sponsors", "ann", {"name": "Acme", "expires_at": in_days(5)}), 403)
    assert "expires_at" in error(api.post(f"/teams/{red}/sponsors", "cap",
                                          {"name": "Acme", "expires_at": in_days(-1)}), 422)["fields"]
    naive = (datetime.now() + timedelta(days=3)).isoformat()
    assert "expires_at" in error(api.post(f"/teams/{red}/sponsors", "cap",
                                          {"name": "Acme", "expires_at": naive}), 422)["fields"]
    sponsor = api.post(f"/teams/{red}/sponsors", "cap", {"name": "Acme", "expires_at": in_days(5)}, expect=201).json
    assert sponsor["status"] == "pending" and sponsor["expires_at"].endswith("+00:00")
    error(api.post(f"/sponsors/{sponsor['id']}/approve", "cap"), 403)
    assert api.post(f"/sponsors/{sponsor['id']}/approve", "admin", expect=200).json["status"] == "approved"
    error(api.post(f"/sponsors/{sponsor['id']}/approve", "admin"), 409)
    error(api.post("/sponsors/999/approve", "admin"), 404)

    promo = {"title": "Double XP", "starts_at": in_days(1), "ends_at": in_days(2)}
    assert api.post(f"/teams/{red}/promotions", "admin", promo, expect=201).json["status"] == "scheduled"
    error(api.post(f"/teams/{red}/promotions", "cap", promo), 403)
    assert "ends_at" in error(api.post(f"/teams/{red}/promotions", "admin",
                                       {**promo, "ends_at": in_days(0.5)}), 422)["fields"]
    error(api.post(f"/teams/{red}/promotions", "admin", {**promo, "starts_at": "0001-01-01T00:00:00+01:00"}), 422)

    tid = api.tournament()
    got = api.post(f"/teams/{red}/achievements", "admin", {"kind": "champion", "tournament_id": tid}, expect=201).json
    assert got["kind"] == "champion" and got["tournament_id"] == tid
    error(api.post(f"/teams/{red}/achievements", "admin", {"kind": "champion", "tournament_id": tid}), 409)
    api.post(f"/teams/{red}/achievements", "admin", {"kind": "champion"}, expect=201)
    error(api.post(f"/teams/{red}/achievements", "admin", {"kind": "champion"}), 409)
    error(api.post(f"/teams/{red}/achievements", "admin", {"kind": "x", "tournament_id": 999}), 404)


# --- tournaments -------------------------------------------------------------------------

def test_tournament_lifecycle(api, league, users):
    red, blue = league["red"], league["blue"]
    error(api.post("/tournaments", "cap", {"name": "Cup", "starts_at": in_days(1)}), 403)
    assert "starts_at" in error(api.post("/tournaments", "admin", {"name": "Cup", "starts_at": "soon"}), 422)["fields"]
    created = api.post("/tournaments", "admin", {"name": "Cup", "starts_at": in_days(1)}, expect=201).json
    tid = created["id"]
    assert created["status"] == "registration" and created["starts_at"].endswith("+00:00")

    error(api.post(f"/tournaments/{tid}/registrations", "ann", {"team_id": red}), 403)
    error(api.post(f"/tournaments/{tid}/registrations", "cyd", {"team_id": red}), 403)
    error(api.post(f"/tournaments/{tid}/registrations", "cap", {"team_id": 999}), 404)
    reg = api.post(f"/tournaments/{tid}/registrations", "cap", {"team_id": red}, expect=201).json
    assert reg["team_id"] == red and reg["tournament_id"] == tid
    error(api.post(f"/tournaments/{tid}/registrations", "cap", {"team_id": red}), 409)
    error(api.post(f"/tournaments/{tid}/bracket-ready", "admin"), 409)  # one team is no bracket
    error(api.post(f"/tournaments/{tid}/complete", "admin", {"placements": [red]}), 409)  # not started
    api.post(f"/tournaments/{tid}/registrations", "cyd", {"team_id": blue}, expect=201)
    error(api.post(f"/tournaments/{tid}/bracket-ready", "cap"), 403)
    assert api.post(f"/tournaments/{tid}/bracket-ready", "admin", expect=200).json["status"] == "ongoing"
    error(api.post(f"/tournaments/{tid}/bracket-ready", "admin"), 409)
    error(api.post(f"/tournaments/{tid}/registrations", "admin", {"team_id": red}), 409)

    third = api.team("Green", "eve")
    error(api.post(f"/tournaments/{tid}/matches", "admin", {"team_a_id": red, "team_b_id": third,
                                                            "scheduled_at": in_days(1)}), 409)
    error(api.post(f"/tournaments/{tid}/matches", "admin", {"team_a_id": red, "team_b_id": red,
                                                            "scheduled_at": in_days(1)}), 422)
    match = api.post(f"/tournaments/{tid}/matches", "admin", {"team_a_id": red, "team_b_id": blue,
                                                              "scheduled_at": in_days(1)}, expect=201).json
    assert match["status"] == "scheduled" and match["winner_id"] is None
    draw = api.post(f"/tournaments/{tid}/matches", "admin", {"team_a_id": blue, "team_b_id": red,
                                                             "scheduled_at": in_days(2)}, expect=201).json
    error(api.post(f"/matches/{match['id']}/result", "cap", {"score_a": 2, "score_b": 0}), 403)
    error(api.post(f"/matches/{match['id']}/result", "admin", {"score_a": -1, "score_b": 0}), 422)
    error(api.post(f"/matches/{match['id']}/result", "admin", {"score_a": 10**12, "score_b": 0}), 422)
    done = api.post(f"/matches/{match['id']}/result", "admin", {"score_a": 2, "score_b": 1}, expect=200).json
    assert done["status"] == "completed" and done["winner_id"] == red and done["completed_at"].endswith("+00:00")
    error(api.post(f"/matches/{match['id']}/result", "admin", {"score_a": 0, "score_b": 5}), 409)
    assert api.post(f"/matches/{draw['id']}/result", "admin", {"score_a": 1, "score_b": 1},
                    expect=200).json["winner_id"] is None

    before = len(api.rows(OutboxEvent))
    assert "placements" in error(api.post(f"/tournaments/{tid}/complete", "admin", {"placements": []}), 422)["fields"]
    error(api.post(f"/tournaments/{tid}/complete", "admin", {"placements": [red, blue, third, 99]}), 422)
    error(api.post(f"/tournaments/{tid}/complete", "admin", {"placements": [red, red]}), 409)
    error(api.post(f"/tournaments/{tid}/complete", "admin", {"placements": [red, third]}), 409)
    error(api.post(f"/tournaments/{tid}/complete", "cap", {"placements": [red, blue]}), 403)
    assert len(api.rows(OutboxEvent)) == before
    assert api.rows(Tournament, Tournament.id == tid)[0].status == "ongoing"

    final = api.post(f"/tournaments/{tid}/complete", "admin", {"placements": [red, blue]}, expect=200).json
    assert final["status"] == "completed" and final["completed_at"]
    assert final["placements"] == [{"place": 1, "team_id": red}, {"place": 2, "team_id": blue}]
    error(api.post(f"/tournaments/{tid}/complete", "admin", {"placements": [blue]}), 409)
    late = api.post(f"/tournaments/{tid}/matches", "admin", {"team_a_id": red, "team_b_id": blue,
                                                             "scheduled_at": in_days(1)})
    error(late, 409)

    shown = api.get(f"/tournaments/{tid}", "eve", expect=200).json
    assert [r["team_id"] for r in shown["registrations"]] == [red, blue]
    assert [m["id"] for m in shown["matches"]] == [match["id"], draw["id"]]
    assert len(shown["placements"]) == 2
    error(api.get("/tournaments/999", "eve"), 404)


# --- coins ---------------------------------------------------------------------------

def test_coins(api, league, users, app):
    ann = users.ids["ann"]
    with app.app_context():
        for i in range(25):
            db.session.add(CoinTransaction(user_id=ann, amount=10 * (i + 1), transaction_type="payout",
                                           meta={"n": i}, dedup_key=f"k{i}"))
        db.session.commit()
    page = api.get(f"/users/{ann}/coins", "ann", expect=200).json
    assert page["balance"] == sum(10 * (i + 1) for i in range(25))
    assert len(page["items"]) == 20 and page["items"][0]["metadata"] == {"n": 24}
    assert set(page["items"][0]) == {"id", "amount", "transaction_type", "metadata", "created_at"}
    rest = api.get(f"/users/{ann}/coins?limit=20&cursor={page['next_cursor']}", "ann", expect=200).json
    assert [i["metadata"]["n"] for i in rest["items"]] == [4, 3, 2, 1, 0] and rest["next_cursor"] is None
    assert api.get(f"/users/{ann}/coins", "admin", expect=200).json["balance"] == page["balance"]
    assert api.get(f"/users/{users.ids['bob']}/coins", "bob", expect=200).json == \
        {"balance": 0, "items": [], "next_cursor": None}
    error(api.get(f"/users/{ann}/coins", "bob"), 403)
    error(api.get("/users/999/coins", "admin"), 404)
    error(api.get(f"/users/{ann}/coins?limit=0", "ann"), 422)
    error(api.get(f"/users/{ann}/coins?cursor=!!!", "ann"), 422)


# --- notifications and preferences ---------------------------------------------------------

def test_notification_center(api, league, users, app):
    ann = users.ids["ann"]
    with app.app_context():
        db.session.query(Notification).delete()
        for i in range(30):
            db.session.add(Notification(user_id=ann, type="match_result" if i % 2 else "announcement",
                                        title=f"n{i}", body="", dedup_key=f"t{i}"))
        db.session.add(Notification(user_id=users.ids["bob"], type="announcement", title="bob's", dedup_key="b"))
        db.session.commit()
    first = api.get("/notifications", "ann", expect=200).json
    assert [n["title"] for n in first["items"]][:3] == ["n29", "n28", "n27"] and len(first["items"]) == 20
    assert set(first["items"][0]) >= {"id", "type", "title", "body", "url", "is_read", "created_at"}
    second = api.get(f"/notifications?cursor={first['next_cursor']}", "ann", expect=200).json
    assert len(second["items"]) == 10 and second["next_cursor"] is None
    results = api.get("/notifications?type=match_result&limit=100", "ann", expect=200).json["items"]
    assert len(results) == 15 and {n["type"] for n in results} == {"match_result"}
    assert api.get("/notifications/unread-count", "ann", expect=200).json == {"count": 30, "unseen": 30}

    one = first["items"][0]
    read = api.post(f"/notifications/{one['id']}/read", "ann", expect=200).json
    assert read["is_read"] is True
    assert api.get("/notifications/unread-count", "ann").json == {"count": 29, "unseen": 29}  # read implies seen
    unread = api.get("/notifications?unread=true&limit=100", "ann").json["items"]
    assert len(unread) == 29 and one["id"] not in [n["id"] for n in unread]
    bobs = api.get("/notifications", "bob").json["items"][0]
    error(api.post(f"/notifications/{bobs['id']}/read", "ann"), 404)
    error(api.get("/notifications?type=nonsense", "ann"), 422)
    error(api.get("/notifications?limit=101", "ann"), 422)
    assert api.post("/notifications/read-all", "ann", expect=200).json == {"updated": 29}
    assert api.get("/notifications/unread-count", "ann").json == {"count": 0, "unseen": 0}
    assert api.get("/notifications/unread-count", "bob").json == {"count": 1, "unseen": 1}
    error(api.get("/notifications", None), 401)


def test_preferences(api, league, users, app):
    prefs = api.get("/preferences", "ann", expect=200).json
    assert prefs["channels"]["match_result"] == ["in_app", "email"] and prefs["digest_time"] == "08:00"
    hook = app.config["DISCORD_API_BASE"] + "/webhooks/42/tok"
    changed = api.put("/preferences", "ann", {"channels": {"match_result": ["discord"]}, "digest_time": "19:30",
                                              "discord_webhook_url": hook}, expect=200).json
    assert changed["channels"]["match_result"] == ["discord"] and changed["discord_webhook_url"] == hook
    assert changed["channels"]["invite_sent"] == ["in_app", "email"]
    change = api.rows(NotificationPreferenceChange)[-1]
    assert change.source == "api" and "digest_time" in change.changes
    for bad, field in (({"channels": {"nope": ["email"]}}, "channels"), ({"channels": {"match_result": ["fax"]}},
                       "channels"), ({"digest_time": "7pm"}, "digest_time"), ({"timezone": "Nowhere/City"},
                       "timezone"), ({"discord_webhook_url": "https://evil.example/webhooks/1/a"},
                       "discord_webhook_url")):
        assert field in error(api.put("/preferences", "ann", bad), 422)["fields"]
    assert api.get("/preferences", "ann").json == changed
    assert len(api.rows(NotificationPreferenceChange)) == 1


@pytest.mark.parametrize("path", ["/teams/0", "/teams/-1", "/invites/2147483648/accept"])
def test_impossible_ids_are_404(api, league, path):
    response = api.call("POST" if path.endswith("accept") else "GET", path, "admin")
    error(response, 404 if "-" not in path else 404)


def test_concurrent_state_change_loses_with_409(app, api, league):
    """Two web processes posting a result for the same match: the second one's
    conditional UPDATE matches nothing, so it is a 409 and writes no event."""
    from deltacrown.errors import Conflict
    from deltacrown.models import Match
    from deltacrown.tournaments.services import record_result

    tid = api.tournament()
    for team in (league["red"], league["blue"]):
        api.post(f"/tournaments/{tid}/registrations", "admin", {"team_id": team}, expect=201)
    match = api.post(f"/tournaments/{tid}/matches", "admin", {"team_a_id": league["red"], "team_b_id": league["blue"],
                                                              "scheduled_at": in_days(1)}, expect=201).json
    with app.app_context():
        mine = db.session.get(Match, match["id"])  # loaded while still scheduled
        assert mine.status == "scheduled"
        with db.engine.begin() as other:  # the other process wins meanwhile
            other.execute(update(Match).where(Match.id == match["id"]).values(status="completed", score_a=1,
                                                                              score_b=0))
        events = db.session.query(OutboxEvent).count()
        with pytest.raises(Conflict):
            record_result(mine, 0, 3)
        assert db.session.query(OutboxEvent).count() == events
        assert (db.session.get(Match, match["id"]).score_b) == 0
