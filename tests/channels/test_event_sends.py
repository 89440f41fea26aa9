"""An outbox event's few sends are made by the event's own job, right after its rows commit:
no send job of their own (RQ's per-job work cost more than the send). While events wait,
or in the minute after a send failed temporarily or was slow, they are gathered for one
ready-sends job (however many events); many sends go to batch jobs."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import time_machine

from deltacrown.models import Delivery
from deltacrown.notifications import service
from deltacrown.notifications.delivery_jobs import send_deliveries
from deltacrown.notifications.jobs import sweep_held_sends
from deltacrown.queue import QUEUE_NOTIFICATIONS, QUEUE_SENDS, get_queue, get_redis, run_burst
from tests.api.conftest import api, league  # noqa: F401  (same fixtures)

SEND_BATCH = "deltacrown.notifications.delivery_jobs.send_deliveries"
READY_SENDS = "deltacrown.notifications.delivery_jobs.send_ready_deliveries"


@pytest.fixture(autouse=True)
def sends_in_event_jobs_not_paused(monkeypatch):
    # The pause after a temporary failure lasts a minute in this process: no test inherits one.
    monkeypatch.setattr(service, "_sends_in_event_job_paused_until", 0.0)


def send_jobs(app):
    with app.app_context():
        return [job.func_name for job in get_queue(QUEUE_SENDS).get_jobs()]


def invite(api, league, name):
    api.post(f"/teams/{league['red']}/invites", "cap", {"user_id": api.users.ids[name]}, expect=201)


def email_to(api, name):
    return api.rows(Delivery, Delivery.channel == "email", Delivery.user_id == api.users.ids[name])


def test_an_events_email_is_sent_by_the_events_own_job(app, api, league, run_jobs, smtp_server):
    run_jobs()
    invite(api, league, "eve")
    run_burst(app, queues=[QUEUE_NOTIFICATIONS])  # only the event's job: no send job runs
    (mail,) = smtp_server.wait_for(1)
    assert mail.rcpt_tos == ["eve@example.com"]
    (delivery,) = email_to(api, "eve")
    assert (delivery.status, delivery.attempts) == ("sent", 1)
    assert send_jobs(app) == []
    run_jobs()
    assert len(smtp_server.messages) == 1  # sent once


def test_more_sends_than_an_event_job_makes_go_to_a_batch_job(app, api, league, run_jobs, smtp_server,
                                                              monkeypatch):
    monkeypatch.setattr(service, "SENDS_IN_EVENT_JOB", 0)  # an invite's one email is then "too many"
    run_jobs()
    invite(api, league, "eve")
    run_burst(app, queues=[QUEUE_NOTIFICATIONS])
    assert send_jobs(app) == [SEND_BATCH] and smtp_server.messages == []
    assert email_to(api, "eve")[0].status == "pending"
    run_jobs()
    assert [m.rcpt_tos for m in smtp_server.wait_for(1)] == [["eve@example.com"]]
    assert email_to(api, "eve")[0].status == "sent"


def test_after_a_temporary_failure_event_sends_go_to_jobs_for_a_while(app, api, league, users, run_jobs,
                                                                       smtp_server):
    users.create("fox")
    app.config["DELIVERY_RETRY_INTERVALS"] = [60]  # the retry waits: only the first try runs here
    run_jobs()
    smtp_server.defer("eve@example.com", times=1)
    invite(api, league, "eve")
    run_burst(app, queues=[QUEUE_NOTIFICATIONS])
    eve = email_to(api, "eve")[0]
    assert (eve.status, eve.attempts) == ("pending", 1) and "451" in eve.last_error  # tried in the event's job
    # The channel just failed: the next event's send is left to a send job, behind the event jobs.
    invite(api, league, "fox")
    run_burst(app, queues=[QUEUE_NOTIFICATIONS])
    assert send_jobs(app) == [READY_SENDS]
    assert (email_to(api, "fox")[0].status, email_to(api, "fox")[0].attempts) == ("pending", 0)
    run_jobs()
    assert [m.rcpt_tos for m in smtp_server.wait_for(1)] == [["fox@example.com"]]


def test_after_slow_sends_event_sends_go_to_jobs_for_a_while(app, api, league, users, run_jobs, smtp_server,
                                                            monkeypatch):
    # A relay slower than SENDS_IN_EVENT_JOB_SLOW_SECONDS: here every send counts as slow.
    monkeypatch.setattr(service, "SENDS_IN_EVENT_JOB_SLOW_SECONDS", 0.0)
    users.create("fox")
    run_jobs()
    invite(api, league, "eve")
    run_burst(app, queues=[QUEUE_NOTIFICATIONS])
    assert [m.rcpt_tos for m in smtp_server.wait_for(1)] == [["eve@example.com"]]  # made by the event's job
    invite(api, league, "fox")
    run_burst(app, queues=[QUEUE_NOTIFICATIONS])
    assert send_jobs(app) == [READY_SENDS] and email_to(api, "fox")[0].status == "pending"
    run_jobs()
    assert sorted(m.rcpt_tos[0] for m in smtp_server.wait_for(2)) == ["eve@example.com", "fox@example.com"]


def test_while_event_jobs_wait_their_sends_are_gathered_for_one_job(app, api, league, users, run_jobs,
                                                                     smtp_server):
    # A backlog (a burst of writes, one event job taking them all): each event's in-app copy is
    # marked handled without waiting for its email, so the events behind it are not held up by
    # the emails before theirs; and the emails of all of them go to one job, not a job each. The
    # last event has nothing behind it: its job sends its email.
    for name in ("fox", "gus", "hal", "ivy"):
        users.create(name)
    run_jobs()
    for name in ("eve", "fox", "gus"):
        invite(api, league, name)  # one event job takes the three
    run_burst(app, queues=[QUEUE_NOTIFICATIONS])
    assert [m.rcpt_tos[0] for m in smtp_server.wait_for(1)] == ["gus@example.com"]
    assert [email_to(api, name)[0].status for name in ("eve", "fox", "gus")] == ["pending", "pending", "sent"]
    assert send_jobs(app) == [READY_SENDS]
    run_jobs()
    assert sorted(m.rcpt_tos[0] for m in smtp_server.wait_for(3)) == [f"{n}@example.com" for n in ("eve", "fox", "gus")]
    assert [email_to(api, name)[0].status for name in ("eve", "fox", "gus")] == ["sent"] * 3
    # Events handled after that job took its sends queue a new one.
    invite(api, league, "hal")
    invite(api, league, "ivy")
    run_burst(app, queues=[QUEUE_NOTIFICATIONS])
    assert send_jobs(app) == [READY_SENDS] and email_to(api, "hal")[0].status == "pending"
    run_jobs()
    assert sorted(m.rcpt_tos[0] for m in smtp_server.wait_for(5)) == [
        f"{n}@example.com" for n in ("eve", "fox", "gus", "hal", "ivy")]


def test_sends_left_under_a_mark_whose_job_never_reached_the_queue_are_sent_after_the_minute_sweep(
        app, api, league, users, run_jobs, smtp_server):
    from deltacrown.notifications import delivery_jobs

    users.create("fox")
    run_jobs()
    with app.app_context():  # a process died between setting the mark and queueing its job
        get_redis().set(delivery_jobs.READY_SENDS.mark_key, "a-job-never-queued", ex=30)
    invite(api, league, "eve")
    invite(api, league, "fox")  # eve's event has fox's behind it: its email is gathered
    run_burst(app, queues=[QUEUE_NOTIFICATIONS])
    assert email_to(api, "eve")[0].status == "pending" and send_jobs(app) == []
    with app.app_context():
        assert sweep_held_sends()["ready_job_queued"] is True
    assert send_jobs(app) == [READY_SENDS]
    run_jobs()
    assert email_to(api, "eve")[0].status == "sent"
    assert sorted(m.rcpt_tos[0] for m in smtp_server.wait_for(2)) == ["eve@example.com", "fox@example.com"]


def test_a_send_whose_job_redis_lost_is_sent_by_the_minute_sweep(app, api, league, run_jobs, smtp_server,
                                                                  monkeypatch):
    monkeypatch.setattr(service, "SENDS_IN_EVENT_JOB", 0)  # the invite's email goes to a send job
    run_jobs()
    start = datetime.now(timezone.utc)
    with time_machine.travel(start, tick=True):
        invite(api, league, "eve")
        run_burst(app, queues=[QUEUE_NOTIFICATIONS])  # the event is handled; its send job waits
        assert send_jobs(app) == [SEND_BATCH]
        get_redis(app).flushall()  # Redis restarted empty: the send job is gone, the row stays pending
        run_jobs()
        with app.app_context():
            too_young = sweep_held_sends()  # its job may still be queued behind a backlog
        run_jobs()
    assert smtp_server.messages == [] and email_to(api, "eve")[0].status == "pending"

    with time_machine.travel(start + timedelta(hours=1), tick=True):  # past service.LOST_SEND_AGE
        with app.app_context():
            send_deliveries.enqueue([])  # a send job queued: sends are under way, and may be its own
            busy = sweep_held_sends()
        run_jobs()
        with app.app_context():
            first, second = sweep_held_sends(), sweep_held_sends()  # (a second scheduler's sweep: its job is queued)
        run_jobs()
    assert [m.rcpt_tos for m in smtp_server.wait_for(1)] == [["eve@example.com"]]
    assert email_to(api, "eve")[0].status == "sent"
    assert too_young.get("lost_sends") == 0 and busy.get("resent") == 0
    assert (first["lost_sends"], first["resent"], second["resent"]) == (1, 1, 0)  # one job for it, not two
    run_jobs()
    assert len(smtp_server.messages) == 1


def test_a_send_tried_once_whose_retry_redis_lost_is_retried_by_the_minute_sweep(app, api, league, run_jobs,
                                                                                 smtp_server, monkeypatch):
    monkeypatch.setattr(service, "SENDS_IN_EVENT_JOB", 0)  # the invite's email goes to a send job
    app.config["DELIVERY_RETRY_INTERVALS"] = [60]  # the retry waits a minute in the scheduled registry
    run_jobs()
    start = datetime.now(timezone.utc)
    smtp_server.defer("eve@example.com", times=1)
    with time_machine.travel(start - timedelta(hours=2), tick=True):
        invite(api, league, "eve")
        run_burst(app, queues=[QUEUE_NOTIFICATIONS])  # written two hours ago; its send job waited
    with time_machine.travel(start, tick=True):
        run_jobs()  # tried only now (a backlog): the first try fails (451), its retry is scheduled
        assert (email_to(api, "eve")[0].status, email_to(api, "eve")[0].attempts) == ("pending", 1)
        get_redis(app).flushall()  # Redis restarted empty: the retry is gone, the row stays pending
        with app.app_context():
            within_its_retries = sweep_held_sends()  # counted from its try, not from when it was written
        run_jobs()
    assert smtp_server.messages == [] and email_to(api, "eve")[0].status == "pending"

    with time_machine.travel(start + timedelta(hours=1), tick=True):  # past its retry interval
        with app.app_context():
            first = sweep_held_sends()
            # A second scheduler's sweep past the queue check at the same moment: the job is live.
            racing = service._resend_lost_retries(service.utcnow())
        run_jobs()
    assert [m.rcpt_tos for m in smtp_server.wait_for(1)] == [["eve@example.com"]]
    eve = email_to(api, "eve")[0]
    assert (eve.status, eve.attempts) == ("sent", 2)
    assert within_its_retries.get("retries_resent") == 0
    assert (first["retries_resent"], racing) == (1, 0)  # one job for it, not two
    run_jobs()
    assert len(smtp_server.messages) == 1
