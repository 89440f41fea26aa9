"""Each domain trigger, driven through the HTTP API and a real RQ worker on real Redis:
who got which notification, on which channels (Delivery rows)."""
from __future__ import annotations

import re

import pytest

from deltacrown.extensions import db
from deltacrown.models import Delivery, Notification, OutboxEvent, TeamPromotion
from deltacrown.notifications.service import NotificationService
from deltacrown.outbox.services import emit
from tests.api.helpers import in_days

PLATFORM = "https://discord.com/api/webhooks/1/platform-token"
TEAM_HOOK = "https://discord.com/api/webhooks/22/team-token"
ANN_HOOK = "https://discord.com/api/webhooks/33/ann-token"


@pytest.fixture
def app_config():
    return {"DISCORD_WEBHOOK_URL": PLATFORM}


@pytest.fixture
def wired(api, league, run_jobs):
    """Red has a team webhook; ann has a personal webhook and wants Discord for matches;
    bob opted out of email. The roster-building events are handled and forgotten."""
    api.put(f"/teams/{league['red']}/discord-webhook", "cap", {"url": TEAM_HOOK}, expect=200)
    api.put("/preferences", "ann", {"discord_webhook_url": ANN_HOOK,
                                    "channels": {"match_result": ["in_app", "email", "discord"],
                                                 "match_scheduled": ["discord"]}}, expect=200)
    api.put("/preferences", "bob", {"opt_out_email": True}, expect=200)
    run_jobs()
    with api.app.app_context():
        db.session.query(Delivery).delete()
        db.session.query(Notification).delete()
        db.session.commit()
    return league


def test_invite_sent_and_accepted(api, wired, run_jobs):
    invite = api.post(f"/teams/{wired['red']}/invites", "cap", {"user_id": api.users.ids["eve"]}, expect=201).json
    run_jobs()
    assert api.notified("invite_sent") == {"eve": 1}
    assert api.deliveries() == [("email", "eve")]

    api.post(f"/invites/{invite['id']}/accept", "eve", expect=200)
    run_jobs()
    assert api.notified("invite_accepted") == {"cap": 1}
    assert api.deliveries("invite_accepted") == [("discord", "team:%d" % wired["red"]), ("email", "cap")]
    # roster_changed: the team as it was, not eve herself (she made the change)
    assert api.notified("roster_changed") == {"cap": 1, "ann": 1, "bob": 1}
    assert api.deliveries("roster_changed") == [("discord", "team:%d" % wired["red"])]


def test_member_added_and_removed(api, wired, run_jobs):
    red = wired["red"]
    api.post(f"/teams/{red}/members", "cap", {"user_id": api.users.ids["eve"]}, expect=201)
    run_jobs()
    api.delete(f"/teams/{red}/members/{api.users.ids['ann']}", "cap", expect=204)
    run_jobs()
    api.delete(f"/teams/{red}/members/{api.users.ids['bob']}", "bob", expect=204)
    run_jobs()
    titles = {(n.user_id, n.body) for n in api.rows(Notification, Notification.type == "roster_changed")}
    ids = api.users.ids
    assert titles == {
        (ids["ann"], "eve was added to Red by cap."), (ids["bob"], "eve was added to Red by cap."),
        (ids["eve"], "eve was added to Red by cap."),
        (ids["ann"], "ann was removed from Red by cap."), (ids["bob"], "ann was removed from Red by cap."),
        (ids["eve"], "ann was removed from Red by cap."),
        (ids["cap"], "bob left Red."), (ids["eve"], "bob left Red."),
    }
    # one team-webhook post per event
    assert api.deliveries("roster_changed") == [("discord", f"team:{red}")] * 3


def test_registration_matches_results_and_bracket(api, wired, run_jobs):
    red, blue = wired["red"], wired["blue"]
    tid = api.tournament()
    api.post(f"/tournaments/{tid}/registrations", "cap", {"team_id": red}, expect=201)
    api.post(f"/tournaments/{tid}/registrations", "admin", {"team_id": blue}, expect=201)
    run_jobs()
    assert api.notified("tournament_registered") == {"cap": 1, "ann": 1, "bob": 1, "cyd": 1, "dee": 1}
    body = api.get("/notifications?type=tournament_registered", "ann").json["items"][0]["body"]
    assert re.search(r"Starts \w{3} \d{2} \w{3} \d{4}, \d{2}:\d{2} UTC\.", body), body  # readable, not ISO
    assert api.deliveries("tournament_registered") == sorted(
        [("email", n) for n in ("cap", "ann", "cyd", "dee")] + [("discord", f"team:{red}")])

    api.post(f"/tournaments/{tid}/bracket-ready", "admin", expect=200)
    run_jobs()
    assert api.notified("bracket_ready") == {"cap": 1, "ann": 1, "bob": 1, "cyd": 1, "dee": 1}
    # public type: one platform post; not a team_event: no team webhook post
    assert api.deliveries("bracket_ready") == sorted(
        [("email", n) for n in ("cap", "ann", "cyd", "dee")] + [("discord", "platform")])

    match = api.post(f"/tournaments/{tid}/matches", "admin",
                     {"team_a_id": red, "team_b_id": blue, "scheduled_at": in_days(8)}, expect=201).json
    run_jobs()
    # ann chose Discord only for match_scheduled: no in-app row, one Discord delivery
    assert api.notified("match_scheduled") == {"cap": 1, "bob": 1, "cyd": 1, "dee": 1}
    assert api.deliveries("match_scheduled") == sorted(
        [("email", n) for n in ("cap", "cyd", "dee")] + [("discord", "user:ann"), ("discord", f"team:{red}")])
    ann_scheduled = api.rows(Delivery, Delivery.target == f"user:{api.users.ids['ann']}")[0]
    assert ann_scheduled.notification_id is None and ann_scheduled.payload["type"] == "match_scheduled"

    api.post(f"/matches/{match['id']}/result", "admin", {"score_a": 3, "score_b": 1}, expect=200)
    run_jobs()
    assert api.notified("match_result") == {"cap": 1, "ann": 1, "bob": 1, "cyd": 1, "dee": 1}
    assert api.deliveries("match_result") == sorted(
        [("email", n) for n in ("cap", "ann", "cyd", "dee")]
        + [("discord", "user:ann"), ("discord", f"team:{red}"), ("discord", "platform")])
    note = api.rows(Notification, Notification.type == "match_result")[0]
    assert note.title == "Red 3 : 1 Blue" and "Red won" in note.body


def test_sponsor_achievement_and_completion(api, wired, run_jobs, redis_url):
    red, blue = wired["red"], wired["blue"]
    sponsor = api.post(f"/teams/{red}/sponsors", "cap", {"name": "Acme", "expires_at": in_days(30)}, expect=201).json
    assert sponsor["status"] == "pending"
    run_jobs()
    assert api.notified("sponsor_approved") == {}
    api.post(f"/sponsors/{sponsor['id']}/approve", "admin", expect=200)
    api.post(f"/teams/{blue}/achievements", "admin", {"kind": "first_blood"}, expect=201)
    run_jobs()
    assert api.notified("sponsor_approved") == {"cap": 1, "ann": 1, "bob": 1}
    assert api.deliveries("sponsor_approved") == [("discord", f"team:{red}"), ("email", "ann"), ("email", "cap")]
    assert api.notified("achievement_earned") == {"cyd": 1, "dee": 1}
    assert api.deliveries("achievement_earned") == [("discord", "platform"), ("email", "cyd"), ("email", "dee")]

    tid = api.tournament()
    for team in (red, blue):
        api.post(f"/tournaments/{tid}/registrations", "admin", {"team_id": team}, expect=201)
    api.post(f"/tournaments/{tid}/bracket-ready", "admin", expect=200)
    done = api.post(f"/tournaments/{tid}/complete", "admin", {"placements": [blue, red]}, expect=200).json
    assert done["status"] == "completed" and done["completed_at"].endswith("+00:00")
    assert done["placements"] == [{"place": 1, "team_id": blue}, {"place": 2, "team_id": red}]
    with api.app.app_context():
        from deltacrown.queue import get_queue
        from deltacrown.outbox.dispatch import handle_event

        event = db.session.query(OutboxEvent).filter_by(type="tournament_completed").one()
        assert event.payload == {"tournament_id": tid}
        handle_event(event.id)  # the handler enqueues the wrap-up job (its owner runs it)
        queued = [j.func_name for j in get_queue("default").jobs]
        assert "deltacrown.economy.jobs.wrap_up_tournament" in queued


def test_events_emitted_by_other_parts_jobs(api, wired, run_jobs):
    """promotion_started, ranking_changed, payout_received, achievement_earned come from
    other parts' jobs: the pipeline handles them by the payload contract."""
    red = wired["red"]
    promo = api.post(f"/teams/{red}/promotions", "admin",
                     {"title": "Double XP", "starts_at": in_days(-1), "ends_at": in_days(2)}, expect=201).json
    assert promo["status"] == "scheduled"
    with api.app.app_context():
        db.session.get(TeamPromotion, promo["id"]).status = "active"
        emit("promotion_started", promotion_id=promo["id"])
        emit("ranking_changed", team_id=red, old_rank=3, new_rank=1)
        emit("payout_received", user_id=api.users.ids["ann"], team_id=red, tournament_id=None, place=1,
             amount=1000, transaction_id=77)
        db.session.commit()
    run_jobs()
    assert api.notified("promotion_started") == {"cap": 1, "ann": 1, "bob": 1}
    assert api.deliveries("promotion_started") == [("discord", f"team:{red}")]
    assert api.notified("ranking_changed") == {"cap": 1, "ann": 1, "bob": 1}
    assert api.rows(Notification, Notification.type == "ranking_changed")[0].body == "Red moved up from #3 to #1."
    assert api.notified("payout_received") == {"ann": 1}
    assert api.deliveries("payout_received") == [("discord", "platform"), ("email", "ann")]


def test_opt_out_wins_over_chosen_channels(api, wired, run_jobs):
    api.put("/preferences", "ann", {"opt_out_discord": True, "opt_out_in_app": True}, expect=200)
    match_tid = api.tournament()
    for team in (wired["red"], wired["blue"]):
        api.post(f"/tournaments/{match_tid}/registrations", "admin", {"team_id": team}, expect=201)
    run_jobs()
    assert "ann" not in api.notified("tournament_registered")
    assert ("email", "ann") in api.deliveries("tournament_registered")
    assert not [d for d in api.deliveries() if d[1] == "user:ann"]


def test_service_notify_reads_preferences_in_bulk(app, users, count_queries):
    """`notify` for many users: statements do not grow with the recipients, and
    users without a preference row get the registry defaults (no rows created)."""
    from sqlalchemy import insert

    from deltacrown.models import NotificationPreference, User

    with app.app_context():
        def make(n, prefix):
            db.session.execute(insert(User), [{"username": f"{prefix}{i}", "email": f"{prefix}{i}@x.org",
                                               "password_hash": "x", "is_admin": False, "timezone": "UTC"}
                                              for i in range(n)])
            db.session.commit()
            return list(db.session.scalars(db.select(User.id).where(User.username.like(f"{prefix}%"))))

        few, many = make(10, "f"), make(400, "m")
        counts = []
        for ids, key in ((few, "k1"), (many, "k2")):
            with count_queries() as q:
                NotificationService().notify(ids, "announcement", "Hi", "there", None, key, enqueue=False)
            counts.append(q.count)
        assert counts[0] == counts[1]
        assert db.session.query(NotificationPreference).count() == 0
        assert db.session.query(Notification).count() == 410
        assert db.session.query(Delivery).filter_by(channel="email").count() == 410


def test_handling_an_event_costs_the_same_for_big_teams(app, api, league, run_jobs, count_queries):
    """Statements per event do not grow with the number of members notified."""
    from sqlalchemy import insert

    from deltacrown.models import TeamMembership, User
    from deltacrown.outbox.dispatch import handle_event

    run_jobs()

    def handled_cost(team_id):
        with app.app_context():
            event = emit("ranking_changed", team_id=team_id, old_rank=5, new_rank=4)
            db.session.commit()
            event_id = event.id
        with count_queries() as q:
            with app.app_context():
                handle_event(event_id)
        return q.count

    small = handled_cost(league["blue"])  # 2 members
    with app.app_context():
        db.session.execute(insert(User), [{"username": f"fan{i}", "email": f"fan{i}@example.org",
                                           "password_hash": "!", "is_admin": False, "timezone": "UTC"}
                                          for i in range(300)])
        fans = db.session.scalars(db.select(User.id).where(User.username.like("fan%"))).all()
        db.session.execute(insert(TeamMembership), [{"team_id": league["blue"], "user_id": uid, "role": "member"}
                                                    for uid in fans])
        db.session.commit()
    big = handled_cost(league["blue"])  # 302 members
    assert big == small
    assert api.notified("ranking_changed")["dee"] == 2
