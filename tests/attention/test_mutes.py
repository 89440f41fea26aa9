"""Mutes, through the API, the outbox and a real RQ worker, to the SMTP and Discord stand-ins."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
import time_machine
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from deltacrown.extensions import db
from deltacrown.models import Delivery, Mute, Notification, NotificationPreferenceChange
from deltacrown.notifications import mutes
from deltacrown.notifications.service import NotificationService
from tests.api.helpers import iso

from .conftest import new_match


def later(**delta) -> str:
    return iso(datetime.now(timezone.utc) + timedelta(**delta))


def emails_to(smtp_server, name):
    return [m for m in smtp_server.messages if f"{name}@example.com" in m.rcpt_tos]


def test_mute_api_lists_replaces_and_deletes(api, league, users):
    red = league["red"]
    tid = api.tournament()
    first = api.post("/mutes", "ann", {"team_id": red, "until": later(hours=1)}, expect=201).json
    assert first["team_id"] == red and first["tournament_id"] is None and first["until"]
    forever = api.post("/mutes", "ann", {"tournament_id": tid, "until": None}, expect=201).json
    assert forever["until"] is None
    again = api.post("/mutes", "ann", {"team_id": red, "until": later(hours=8)}, expect=201).json
    assert again["id"] == first["id"] and again["until"] > first["until"]  # replaced, not doubled
    items = api.get("/mutes", "ann", expect=200).json["items"]
    assert {(m["team_id"], m["tournament_id"]) for m in items} == {(red, None), (None, tid)}
    assert api.get("/mutes", "bob", expect=200).json["items"] == []

    assert api.delete(f"/mutes/{first['id']}", "bob", expect=404)
    api.delete(f"/mutes/{first['id']}", "ann", expect=204)
    assert [m["id"] for m in api.get("/mutes", "ann", expect=200).json["items"]] == [forever["id"]]
    api.delete(f"/mutes/{first['id']}", "ann", expect=404)

    # Each change is in the preference-change log, like the other preferences.
    ann = users.ids["ann"]
    log = [c.changes for c in api.rows(NotificationPreferenceChange, NotificationPreferenceChange.user_id == ann,
                                       NotificationPreferenceChange.source == "api")]
    key = f"mute.team:{red}"
    assert [list(c) for c in log] == [[key], [f"mute.tournament:{tid}"], [key], [key]]
    assert log[0][key] == [None, first["until"]] and log[1] == {f"mute.tournament:{tid}": [None, "until unmuted"]}
    assert log[2][key] == [first["until"], again["until"]] and log[3][key] == [again["until"], None]


def test_mute_api_refuses_bad_input_naming_the_field(api, league):
    red = league["red"]
    tid = api.tournament()
    cases = [
        ({"team_id": red, "tournament_id": tid, "until": None}, "team_id"),
        ({"until": None}, "team_id"),
        ({"team_id": red, "until": later(minutes=-5)}, "until"),
        ({"team_id": red, "until": "tomorrow"}, "until"),
        ({"team_id": red}, "until"),
    ]
    for body, field in cases:
        response = api.post("/mutes", "ann", body, expect=422)
        assert field in response.json["error"]["fields"], (body, response.json)
    # An id that names nothing is a 404 naming its field, as for every id a caller names.
    for body, field in (({"team_id": 999_999, "until": None}, "team_id"),
                        ({"tournament_id": 999_999, "until": None}, "tournament_id"),
                        ({"team_id": red, "tournament_id": 999_999, "until": None}, "tournament_id")):
        response = api.post("/mutes", "ann", body, expect=404)
        assert field in response.json["error"]["fields"], (body, response.json)
    assert api.get("/mutes", "ann", expect=200).json["items"] == []  # nothing written


def test_muted_team_news_is_written_seen_and_not_sent(api, cup, run_jobs, smtp_server, discord_server):
    api.put("/preferences", "ann", {"discord_webhook_url": discord_server.webhook_url(33),
                                    "channels": {"match_result": ["in_app", "email", "discord"]}}, expect=200)
    api.post("/mutes", "ann", {"team_id": cup["red"], "until": later(hours=1)}, expect=201)
    match = new_match(api, cup)
    run_jobs()
    smtp_server.clear()
    api.post(f"/matches/{match}/result", "admin", {"score_a": 2, "score_b": 1}, expect=200)
    run_jobs()

    ids = api.users.ids
    results = {n.user_id: n for n in api.rows(Notification, Notification.type == "match_result")}
    assert results[ids["ann"]].seen_at is not None  # written, already seen: no badge
    assert results[ids["bob"]].seen_at is None and results[ids["cap"]].seen_at is None
    assert ("email", "ann") not in api.deliveries("match_result")
    assert ("discord", "user:ann") not in api.deliveries("match_result")
    assert ("email", "cap") in api.deliveries("match_result")
    assert emails_to(smtp_server, "ann") == [] and len(emails_to(smtp_server, "cap")) == 1
    assert discord_server.messages(33) == []


def test_muting_the_tournament_silences_its_matches(api, cup, run_jobs, smtp_server):
    api.post("/mutes", "cyd", {"tournament_id": cup["tournament"], "until": None}, expect=201)
    new_match(api, cup)
    run_jobs()
    ids = api.users.ids
    scheduled = {n.user_id: n for n in api.rows(Notification, Notification.type == "match_scheduled")}
    assert scheduled[ids["cyd"]].seen_at is not None and scheduled[ids["dee"]].seen_at is None
    assert ("email", "cyd") not in api.deliveries("match_scheduled")
    assert emails_to(smtp_server, "cyd") == [] and len(emails_to(smtp_server, "dee")) == 1


def test_critical_types_are_never_muted(api, cup, run_jobs, smtp_server):
    ids = api.users.ids
    api.post("/mutes", "ann", {"tournament_id": cup["tournament"], "until": None}, expect=201)
    api.post("/mutes", "ann", {"team_id": cup["red"], "until": None}, expect=201)
    with api.app.app_context():
        NotificationService().notify_about("payout_received", {
            "user_id": ids["ann"], "team_id": cup["red"], "tournament_id": cup["tournament"], "place": 1,
            "amount": 500}, "test:payout")
    run_jobs()
    [paid] = api.rows(Notification, Notification.type == "payout_received")
    assert paid.seen_at is None  # counts in the badge
    assert api.deliveries("payout_received") == [("email", "ann")]
    assert len(emails_to(smtp_server, "ann")) == 1


def test_a_mute_that_ends_restores_delivery_without_a_burst(api, cup, run_jobs, smtp_server):
    api.post("/mutes", "ann", {"team_id": cup["red"], "until": later(hours=1)}, expect=201)
    quiet = [new_match(api, cup) for _ in range(3)]
    run_jobs()
    assert emails_to(smtp_server, "ann") == []
    with time_machine.travel(datetime.now(timezone.utc) + timedelta(hours=1, minutes=1), tick=True):
        assert api.get("/mutes", "ann", expect=200).json["items"] == []  # ended
        run_jobs()
        assert emails_to(smtp_server, "ann") == []  # nothing was queued while muted: no backlog
        new_match(api, cup)
        run_jobs()
        mails = emails_to(smtp_server, "ann")
        assert len(mails) == 1  # only the news after the mute
    with api.app.app_context():
        ann = api.users.ids["ann"]
        seen = [n.seen_at is not None for n in api.rows(Notification, Notification.user_id == ann,
                                                           Notification.type == "match_scheduled")]
    assert seen == [True] * len(quiet) + [False]
    assert len([d for d in api.rows(Delivery, Delivery.user_id == ann)]) == 1


def test_the_database_keeps_one_mute_per_player_and_team_or_tournament(app, api, league, users):
    """Two requests muting the same team at once each found no mute and inserted one; unmuting
    then removed one of them and the team stayed muted. The database refuses the second row."""
    ann, red, tid = users.ids["ann"], league["red"], api.tournament()
    with app.app_context():
        for subject in ({"team_id": red}, {"tournament_id": tid}):
            db.session.add_all([Mute(user_id=ann, **subject), Mute(user_id=ann, **subject)])
            with pytest.raises(IntegrityError):
                db.session.commit()
            db.session.rollback()
        # One of each, and the same team muted by someone else, are no duplicates.
        db.session.add_all([Mute(user_id=ann, team_id=red), Mute(user_id=ann, tournament_id=tid),
                            Mute(user_id=users.ids["bob"], team_id=red)])
        db.session.commit()
        assert db.session.scalar(select(func.count()).select_from(Mute)) == 3


def test_racing_mutes_of_one_team_leave_one_mute_that_one_unmute_ends(app, league, users):
    ann, red = users.ids["ann"], league["red"]
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("SQLite runs one writer at a time: two transactions cannot interleave")
    for _ in range(10):
        start = threading.Barrier(2)
        errors = []

        def mute_red(until):
            try:
                with app.app_context():
                    start.wait(10)
                    mutes.mute(ann, team_id=red, until=until)
                    db.session.remove()
            except Exception as exc:  # reported below, with the round's rows
                errors.append(exc)

        threads = [threading.Thread(target=mute_red, args=(until,))
                   for until in (None, datetime.now(timezone.utc) + timedelta(hours=1))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        with app.app_context():
            rows = db.session.scalars(select(Mute).where(Mute.user_id == ann)).all()
            assert not errors and len(rows) == 1, (errors, [(m.id, m.until) for m in rows])
            mutes.unmute(ann, rows[0].id)
            assert mutes.active_mute_for(ann, team_id=red) is None
            db.session.remove()
