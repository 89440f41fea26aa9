"""Quiet hours and the email delay, through the API, the outbox and real RQ workers (in-process,
with RQ's own scheduler moving held jobs), time moved with time-machine."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import update

from deltacrown.extensions import db
from deltacrown.models import Delivery, Notification
from deltacrown.notifications.held import send_after_for
from deltacrown.notifications.jobs import sweep_held_sends
from deltacrown.notifications.service import NotificationService
from deltacrown.queue import fetch_job

from .conftest import new_match

ZONE = ZoneInfo("America/New_York")


def next_local(hour: int, minute: int = 0) -> datetime:
    """The next time the New York clock shows hour:minute, at least a day from now (in UTC)."""
    day = datetime.now(ZONE).date() + timedelta(days=1)
    return datetime.combine(day, time(hour, minute), tzinfo=ZONE).astimezone(timezone.utc)


def emails_to(smtp_server, name):
    """The match-result emails `name` received (subjects "Red n : 9 Blue"), in arrival order."""
    return [m for m in smtp_server.messages if f"{name}@example.com" in m.rcpt_tos and ": 9 Blue" in m.subject]


def ann_deliveries(api, channel="email"):
    ann = api.users.ids["ann"]
    return api.rows(Delivery, Delivery.user_id == ann, Delivery.channel == channel)


def results_at_night(api, cup, count):
    matches = [new_match(api, cup) for _ in range(count)]
    for n, match in enumerate(matches):
        api.post(f"/matches/{match}/result", "admin", {"score_a": n, "score_b": 9}, expect=200)
    return matches


@pytest.fixture
def night_owl(api, cup, discord_server):
    """ann, in New York, with quiet hours 22:00-08:00, email and Discord for match results."""
    api.put("/preferences", "ann", {"timezone": "America/New_York", "quiet_hours": {"start": "22:00", "end": "08:00"},
                                    "discord_webhook_url": discord_server.webhook_url(33),
                                    "channels": {"match_result": ["in_app", "email", "discord"],
                                                 "match_scheduled": ["in_app"]}}, expect=200)
    return cup


def test_quiet_hours_hold_the_night_and_send_it_in_one_go_in_order(api, night_owl, run_jobs, smtp_server,
                                                                    discord_server):
    night, morning = next_local(23, 10), next_local(8, 0) + timedelta(days=1)
    with time_machine.travel(night, tick=True):
        results_at_night(api, night_owl, 5)
        run_jobs(with_scheduler=True)
        ann = api.users.ids["ann"]
        # In-app is never held; the other members (no quiet hours) got their emails at once.
        assert len(api.rows(Notification, Notification.user_id == ann, Notification.type == "match_result")) == 5
        assert len(emails_to(smtp_server, "cap")) == 5
        assert emails_to(smtp_server, "ann") == [] and discord_server.messages(33) == []
        held = ann_deliveries(api) + ann_deliveries(api, "discord")
        assert len(held) == 10 and {d.send_after for d in held} == {morning} and {d.status for d in held} == {"pending"}
        # One held job for the whole night, scheduled at the window's end.
        job = fetch_job(f"held-{ann}-{int(morning.timestamp())}", api.app)
        assert job is not None and job.get_status() == "scheduled"
        # Nothing else sends them early: the sweep sees the live job, a stray send refuses.
        with api.app.app_context():
            assert sweep_held_sends() == {"held": 1, "rescheduled": 0, "lost_sends": 0, "resent": 0,
                                          "retries_resent": 0}
            from deltacrown.notifications.delivery_jobs import send_deliveries
            send_deliveries.enqueue([d.id for d in held])
        run_jobs(with_scheduler=True)
        assert emails_to(smtp_server, "ann") == [] and {d.status for d in ann_deliveries(api)} == {"pending"}
    with time_machine.travel(morning - timedelta(seconds=30), tick=True):
        run_jobs(with_scheduler=True)
        assert emails_to(smtp_server, "ann") == []
    with time_machine.travel(morning + timedelta(seconds=1), tick=True):
        run_jobs(with_scheduler=True)
    mails = emails_to(smtp_server, "ann")
    assert [m.subject.removeprefix("🏁 ") for m in mails] == [f"Red {n} : 9 Blue" for n in range(5)]  # all five, in order
    assert len(discord_server.messages(33)) == 5
    assert job.get_status(refresh=True) == "finished" and job.return_value()["due"] == 10  # one send round
    assert {d.status for d in ann_deliveries(api)} == {"sent"}


def test_critical_types_are_not_held(api, night_owl, run_jobs, smtp_server):
    ann = api.users.ids["ann"]
    with time_machine.travel(next_local(23, 30), tick=True):
        with api.app.app_context():
            NotificationService().notify_about("payout_received", {
                "user_id": ann, "team_id": night_owl["red"], "tournament_id": night_owl["tournament"], "place": 1,
                "amount": 500}, "test:payout")
        run_jobs()
        assert [m.subject for m in smtp_server.messages if "ann@example.com" in m.rcpt_tos] == [
            "🪙 You received 500 coins"]
        assert [d.send_after for d in ann_deliveries(api)] == [None]


def test_outside_quiet_hours_nothing_is_held(api, night_owl, run_jobs, smtp_server):
    with time_machine.travel(next_local(12, 0), tick=True):
        results_at_night(api, night_owl, 1)
        run_jobs()
    assert len(emails_to(smtp_server, "ann")) == 1
    assert [d.send_after for d in ann_deliveries(api)] == [None]


@pytest.fixture
def waiter(api, cup):
    """ann wants an email only when she has not seen the news in the app after 15 minutes."""
    api.put("/preferences", "ann", {"email_after_unseen_minutes": 15, "channels": {"match_scheduled": ["in_app"]}},
            expect=200)
    return cup


def test_delayed_email_is_skipped_when_seen_in_the_app(api, waiter, run_jobs, smtp_server):
    ann = api.users.ids["ann"]
    start = datetime.now(timezone.utc)
    with time_machine.travel(start, tick=True):
        results_at_night(api, waiter, 1)
        run_jobs(with_scheduler=True)
        assert emails_to(smtp_server, "ann") == [] and len(emails_to(smtp_server, "cap")) == 1
        [delivery] = ann_deliveries(api)
        assert delivery.status == "pending" and delivery.send_after is not None
        assert timedelta(minutes=15) <= delivery.send_after - delivery.created_at < timedelta(minutes=15, seconds=1)
        with api.app.app_context():  # she opens the center: the notification is seen
            db.session.execute(update(Notification).where(Notification.user_id == ann,
                                                          Notification.type == "match_result")
                               .values(seen_at=datetime.now(timezone.utc)))
            db.session.commit()
    with time_machine.travel(start + timedelta(minutes=16), tick=True):
        run_jobs(with_scheduler=True)
    assert emails_to(smtp_server, "ann") == []
    [delivery] = ann_deliveries(api)
    assert (delivery.status, delivery.last_error) == ("skipped", "seen in app")


def test_delayed_email_is_sent_once_when_unseen(api, waiter, run_jobs, smtp_server, redis_url):
    start = datetime.now(timezone.utc)
    with time_machine.travel(start, tick=True):
        results_at_night(api, waiter, 1)
        run_jobs(with_scheduler=True)
    with time_machine.travel(start + timedelta(minutes=16), tick=True):
        run_jobs(with_scheduler=True)
        assert len(emails_to(smtp_server, "ann")) == 1
        # Redis loses everything; the sweep finds nothing left to send.
        from deltacrown.queue import get_redis
        get_redis(api.app).flushall()
        with api.app.app_context():
            assert sweep_held_sends() == {"held": 0, "rescheduled": 0, "lost_sends": 0, "resent": 0,
                                          "retries_resent": 0}
        run_jobs(with_scheduler=True)
    assert len(emails_to(smtp_server, "ann")) == 1
    assert [d.status for d in ann_deliveries(api)] == ["sent"]


def test_a_held_send_whose_job_was_lost_is_sent_by_the_sweep(api, waiter, run_jobs, smtp_server):
    start = datetime.now(timezone.utc)
    with time_machine.travel(start, tick=True):
        results_at_night(api, waiter, 2)
        run_jobs(with_scheduler=True)
        from deltacrown.queue import get_redis
        get_redis(api.app).flushall()  # the held jobs are gone; the rows remain
    with time_machine.travel(start + timedelta(minutes=16), tick=True):
        run_jobs(with_scheduler=True)
        assert emails_to(smtp_server, "ann") == []  # nobody knows of them any more...
        with api.app.app_context():
            swept = sweep_held_sends()
            assert swept["rescheduled"] >= 1
            assert sweep_held_sends()["rescheduled"] == 0  # two sweeps (two schedulers): no double job
        run_jobs(with_scheduler=True)
    assert [m.subject.removeprefix("🏁 ") for m in emails_to(smtp_server, "ann")] == ["Red 0 : 9 Blue", "Red 1 : 9 Blue"]
    assert {d.status for d in ann_deliveries(api)} == {"sent"}


def test_the_later_of_quiet_hours_and_the_delay_wins():
    utc = ZoneInfo("UTC")
    kwargs = dict(critical=False, zone=utc, quiet_start=time(22), quiet_end=time(8), has_in_app=True)
    evening = datetime(2026, 12, 1, 21, 50, tzinfo=timezone.utc)
    # the delay lands inside the window: the window's end
    assert send_after_for(evening, "email", delay_minutes=15, **kwargs) == datetime(2026, 12, 2, 8, tzinfo=timezone.utc)
    # inside the window, a delay ending after it: the delay
    dawn = datetime(2026, 12, 2, 7, 0, tzinfo=timezone.utc)
    assert send_after_for(dawn, "email", delay_minutes=240, **kwargs) == datetime(2026, 12, 2, 11, tzinfo=timezone.utc)
    # inside the window, a short delay: the window's end
    assert send_after_for(dawn, "email", delay_minutes=5, **kwargs) == datetime(2026, 12, 2, 8, tzinfo=timezone.utc)
    # Discord has no delay; critical types no quiet hours; no in-app copy, no delay
    assert send_after_for(dawn, "discord", delay_minutes=240, **kwargs) == datetime(2026, 12, 2, 8, tzinfo=timezone.utc)
    assert send_after_for(dawn, "email", delay_minutes=0, **{**kwargs, "critical": True}) is None
    noon = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
    assert send_after_for(noon, "email", delay_minutes=60, **{**kwargs, "has_in_app": False}) is None
    # a window that does not span midnight, in a zone west of UTC
    ny = dict(kwargs, zone=ZoneInfo("America/New_York"), quiet_start=time(13), quiet_end=time(14))
    assert send_after_for(datetime(2026, 12, 2, 18, 30, tzinfo=timezone.utc), "email", delay_minutes=0, **ny) == \
        datetime(2026, 12, 2, 19, 0, tzinfo=timezone.utc)
    assert send_after_for(datetime(2026, 12, 2, 19, 30, tzinfo=timezone.utc), "email", delay_minutes=0, **ny) is None


def test_preferences_validate_quiet_hours_and_the_delay(api, league):
    ok = api.put("/preferences", "ann", {"quiet_hours": {"start": "22:00", "end": "07:30"},
                                         "email_after_unseen_minutes": 60}, expect=200).json
    assert ok["quiet_hours"] == {"start": "22:00", "end": "07:30"} and ok["email_after_unseen_minutes"] == 60
    assert api.get("/preferences", "ann", expect=200).json["quiet_hours"] == {"start": "22:00", "end": "07:30"}
    for body, field in (({"quiet_hours": {"start": "25:00", "end": "07:00"}}, "quiet_hours"),
                        ({"quiet_hours": {"start": "22:00"}}, "quiet_hours"),
                        ({"quiet_hours": {"start": "22:00", "end": "22:00"}}, "quiet_hours"),
                        ({"quiet_hours": "22-08"}, "quiet_hours"),
                        ({"email_after_unseen_minutes": 7}, "email_after_unseen_minutes"),
                        ({"email_after_unseen_minutes": "15"}, "email_after_unseen_minutes"),
                        ({"email_after_unseen_minutes": -5, "quiet_hours": None}, "email_after_unseen_minutes")):
        response = api.put("/preferences", "ann", body, expect=422)
        assert field in response.json["error"]["fields"], (body, response.json)
    after = api.get("/preferences", "ann", expect=200).json  # nothing written by a refused change
    assert after["quiet_hours"] == {"start": "22:00", "end": "07:30"} and after["email_after_unseen_minutes"] == 60
    off = api.put("/preferences", "ann", {"quiet_hours": None, "email_after_unseen_minutes": 0}, expect=200).json
    assert off["quiet_hours"] is None and off["email_after_unseen_minutes"] == 0
    with api.app.app_context():
        from deltacrown.notifications.models import NotificationPreferenceChange
        changes = [c.changes for c in db.session.scalars(db.select(NotificationPreferenceChange)
                                                         .order_by(NotificationPreferenceChange.id))]
    assert changes[-2] == {"quiet_hours": [None, {"start": "22:00", "end": "07:30"}],
                           "email_after_unseen_minutes": [0, 60]}
    assert changes[-1] == {"quiet_hours": [{"start": "22:00", "end": "07:30"}, None],
                           "email_after_unseen_minutes": [60, 0]}


def _delayed_email_after(api, waiter, run_jobs, smtp_server, in_the_app):
    """A result at night with the 15-minute email delay; `in_the_app(item)` is what ann does with
    its notification before the delay is over. Asserts the email was skipped as seen in app."""
    start = datetime.now(timezone.utc)
    with time_machine.travel(start, tick=True):
        results_at_night(api, waiter, 1)
        run_jobs(with_scheduler=True)
        [item] = api.get("/notifications?type=match_result", "ann", expect=200).json["items"]
        in_the_app(item)
    with time_machine.travel(start + timedelta(minutes=16), tick=True):
        run_jobs(with_scheduler=True)
    assert emails_to(smtp_server, "ann") == []
    assert [(d.status, d.last_error) for d in ann_deliveries(api)] == [("skipped", "seen in app")]


def test_delayed_email_is_skipped_when_read_in_the_app(api, waiter, run_jobs, smtp_server):
    def read(item):
        api.post(f"/notifications/{item['id']}/read", "ann", expect=200)  # opened: seen all the more

    _delayed_email_after(api, waiter, run_jobs, smtp_server, read)


def test_delayed_email_is_skipped_when_seen_then_snoozed_in_the_app(api, waiter, run_jobs, smtp_server):
    """Remind me later resets "seen" for when it comes back; the app was still enough: no email."""
    def see_then_snooze(item):
        api.post("/notifications/seen", "ann", {"ids": [item["id"]]}, expect=200)
        until = (datetime.now(timezone.utc) + timedelta(hours=3)).isoformat()
        snoozed = api.post(f"/notifications/{item['id']}/snooze", "ann", {"until": until}, expect=200).json
        assert snoozed["seen_at"] is None  # unseen again for when it comes back

    _delayed_email_after(api, waiter, run_jobs, smtp_server, see_then_snooze)
