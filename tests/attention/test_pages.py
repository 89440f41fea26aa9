"""The mute controls and the editor's "When" and "Muted" sections, without a browser."""
from __future__ import annotations

from sqlalchemy import select

from deltacrown.extensions import db
from deltacrown.models import Notification
from deltacrown.notifications.models import Mute, NotificationPreference
from deltacrown.timeutil import utcnow

HX = {"HX-Request": "true"}


def login(client, users, name):
    client.post("/login", data={"username": name, "password": users.passwords[name]})


def test_team_and_tournament_pages_mute_and_unmute(api, league, client, users, app):
    login(client, users, "ann")
    red = league["red"]
    page = client.get(f"/teams/{red}").get_data(as_text=True)
    assert 'id="mute-team-' in page and "Mute this team" in page and "until I unmute" in page
    swapped = client.post("/mutes", data={"kind": "team", "subject_id": red, "duration": "8h", "target": "control",
                                          "next": f"/teams/{red}"}, headers=HX)
    assert swapped.status_code == 200 and "Muted until" in swapped.get_data(as_text=True)
    assert [m["team_id"] for m in api.get("/mutes", "ann", expect=200).json["items"]] == [red]
    page = client.get(f"/teams/{red}").get_data(as_text=True)
    assert "Unmute" in page
    with app.app_context():
        mute_id = db.session.scalar(db.select(Mute.id))
    back = client.post(f"/mutes/{mute_id}/unmute", data={"next": f"/teams/{red}"})
    assert back.status_code == 303 and back.headers["Location"].endswith(f"/teams/{red}")
    assert api.get("/mutes", "ann", expect=200).json["items"] == []

    tid = api.tournament()
    assert "Mute this tournament" in client.get(f"/tournaments/{tid}").get_data(as_text=True)
    done = client.post("/mutes", data={"kind": "tournament", "subject_id": tid, "duration": "forever",
                                       "next": f"/tournaments/{tid}"})
    assert done.status_code == 303
    assert api.get("/mutes", "ann", expect=200).json["items"][0]["until"] is None
    refused = client.post("/mutes", data={"kind": "tournament", "subject_id": tid, "duration": "3y",
                                          "target": "control"}, headers=HX)
    assert refused.status_code == 422 and "Choose how long" in refused.get_data(as_text=True)


def test_a_notification_offers_to_mute_what_it_is_about(app, league, client, users, api):
    login(client, users, "ann")
    ann = users.ids["ann"]
    tid = api.tournament()
    with app.app_context():
        for title, url, type_ in (("Red news", f"/teams/{league['red']}", "roster_changed"),
                                  ("Cup news", f"/tournaments/{tid}#match-1", "match_result"),
                                  ("Paid", f"/tournaments/{tid}", "payout_received")):
            db.session.add(Notification(user_id=ann, type=type_, title=title, body="", url=url, is_read=False,
                                        created_at=utcnow(), dedup_key=f"t:{title}"))
        db.session.commit()
        ids = {n.title: n.id for n in db.session.scalars(select(Notification).where(Notification.user_id == ann))}

    def menu(title):  # as htmx loads it when the item's "More" is opened
        response = client.get(f"/notifications/{ids[title]}/menu", headers={"HX-Request": "true"})
        assert response.status_code == 200
        return response.get_data(as_text=True)

    assert "Mute this team" in menu("Red news") and "Mute this tournament" in menu("Cup news")
    assert "Mute this" not in menu("Paid")  # not offered for a critical type (payout)


def test_editor_when_and_muted_sections_render_and_save(app, league, client, users, api):
    login(client, users, "ann")
    api.post("/mutes", "ann", {"team_id": league["red"], "until": None}, expect=201)
    page = client.get("/settings/notifications").get_data(as_text=True)
    assert '<section id="when"' in page and '<section id="muted"' in page
    assert 'id="quiet_hours_start"' in page and 'id="email_after_unseen_minutes"' in page
    assert "Red" in page.split('<section id="muted"', 1)[1]
    form = {"enable_daily_digest": "1", "digest_time": "07:00", "timezone": "Europe/Berlin",
            "quiet_hours_on": "1", "quiet_hours_start": "23:00", "quiet_hours_end": "06:30",
            "email_after_unseen_minutes": "60", "discord_webhook_url": "",
            "channels.match_result": ["in_app", "email"]}
    saved = client.post("/settings/notifications", data=form, headers=HX)
    assert saved.status_code == 200
    prefs = api.get("/preferences", "ann", expect=200).json
    assert prefs["quiet_hours"] == {"start": "23:00", "end": "06:30"} and prefs["email_after_unseen_minutes"] == 60
    assert "Quiet hours: none → 23:00–06:30" in client.get("/settings/notifications").get_data(as_text=True)
    bad = client.post("/settings/notifications", data={**form, "quiet_hours_start": "23:00",
                                                       "quiet_hours_end": "23:00",
                                                       "email_after_unseen_minutes": "7"}, headers=HX)
    assert bad.status_code == 422
    text = bad.get_data(as_text=True)
    assert "quiet_hours" in text and "email_after_unseen_minutes" in text
    off = client.post("/settings/notifications", data={k: v for k, v in form.items() if k != "quiet_hours_on"},
                      headers=HX)
    assert off.status_code == 200 and api.get("/preferences", "ann", expect=200).json["quiet_hours"] is None

    with app.app_context():
        mute_id = db.session.scalar(db.select(Mute.id))
    section = client.post(f"/mutes/{mute_id}/unmute", data={"target": "muted"}, headers=HX)
    assert section.status_code == 200 and "Nothing is muted" in section.get_data(as_text=True)
