"""A write's event goes on the ready list, and one queued job at a time takes what is there:
a burst of writes while the workers are busy is one job, not a job per event, and nobody is
notified twice. A job that fails takes the same events again on its retry."""
from __future__ import annotations

from collections import Counter

from sqlalchemy import select

from deltacrown.extensions import db
from deltacrown.models import Notification, OutboxEvent
from deltacrown.outbox import dispatch
from deltacrown.queue import get_queue, get_redis

READY_JOB = "deltacrown.outbox.dispatch.handle_ready_events"


def queued_jobs(app):
    with app.app_context():
        return get_queue("notifications").jobs


def invite(api, league, name):
    api.post(f"/teams/{league['red']}/invites", "cap", {"user_id": api.users.ids[name]}, expect=201)


def invites_by_user(app):
    with app.app_context():
        rows = Counter(db.session.scalars(select(Notification.user_id).where(Notification.type == "invite_sent")))
        db.session.rollback()
    return rows


def unhandled(app):
    with app.app_context():
        ids = list(db.session.scalars(select(OutboxEvent.id).where(OutboxEvent.handled_at.is_(None))
                                      .order_by(OutboxEvent.id)))
        db.session.rollback()
    return ids


def test_a_burst_of_writes_is_one_event_job_that_handles_them_all(app, api, league, users, run_jobs):
    users.create("fay")
    run_jobs()
    for name in ("eve", "dee", "cyd"):
        invite(api, league, name)
    job, = queued_jobs(app)  # one job for the three events (not a job each)
    assert job.func_name == READY_JOB
    run_jobs()
    with app.app_context():
        job.refresh()
    assert job.get_status() == "finished" and job.return_value() == {"events": 3, "handled": 3}
    assert invites_by_user(app) == Counter({api.users.ids[n]: 1 for n in ("eve", "dee", "cyd")})
    assert unhandled(app) == []

    invite(api, league, "fay")  # the job took the mark with the ids: a later write queues a new one
    assert [j.func_name for j in queued_jobs(app)] == [READY_JOB]
    run_jobs()
    assert invites_by_user(app)[api.users.ids["fay"]] == 1 and unhandled(app) == []


def test_a_job_takes_at_most_its_share_and_queues_one_for_the_rest(app, api, league, run_jobs, monkeypatch):
    from deltacrown.queue import ReadyList

    monkeypatch.setattr(dispatch, "READY_EVENTS", ReadyList("dc:events", per_job=2))
    run_jobs()
    with app.app_context():
        finished_before = set(get_queue("notifications").finished_job_registry.get_job_ids())
    for name in ("eve", "dee", "cyd"):
        invite(api, league, name)
    first, = queued_jobs(app)
    run_jobs()
    with app.app_context():
        first.refresh()
        finished = get_queue("notifications").finished_job_registry.get_job_ids()
        second, = (job for job in get_queue("notifications").job_class.fetch_many(
            finished, connection=get_redis()) if job.id not in finished_before | {first.id})
    assert first.return_value() == {"events": 2, "handled": 2}
    assert second.func_name == READY_JOB and second.return_value() == {"events": 1, "handled": 1}
    assert invites_by_user(app) == Counter({api.users.ids[n]: 1 for n in ("eve", "dee", "cyd")})
    assert unhandled(app) == []


def test_a_failed_event_job_takes_the_same_events_again_on_its_retry(app, api, league, users, run_jobs,
                                                                     monkeypatch):
    users.create("fay")
    run_jobs()
    for name in ("eve", "dee", "cyd"):
        invite(api, league, name)
    job, = queued_jobs(app)
    ids = unhandled(app)
    reactions = dispatch._reactions["invite_sent"]

    def fails_for_dee(event):  # the second invite's
        if event.id == ids[1]:
            raise RuntimeError("the invite reaction failed")
        return sum(react(event) for react in reactions)

    monkeypatch.setitem(dispatch._reactions, "invite_sent", (fails_for_dee,))
    run_jobs()  # the job fails on dee's event after handling the others; RQ schedules its retry
    with app.app_context():
        job.refresh()
        assert job.get_status() == "scheduled"
        assert [int(i) for i in get_redis().lrange(dispatch.READY_EVENTS.taken_key(job.id), 0, -1)] == ids
    assert unhandled(app) == [ids[1]]
    assert invites_by_user(app) == Counter({api.users.ids["eve"]: 1, api.users.ids["cyd"]: 1})

    monkeypatch.undo()  # fixed
    invite(api, league, "fay")  # a write after the take: a job of its own, not the retry's
    newer, = queued_jobs(app)
    assert newer.id != job.id
    with app.app_context():
        get_queue("notifications").enqueue_job(job)  # the retry, now instead of in 10 s
    run_jobs()
    with app.app_context():
        job.refresh()
        newer.refresh()
        assert get_redis().exists(dispatch.READY_EVENTS.taken_key(job.id)) == 0
    assert job.return_value() == {"events": 3, "handled": 1, "already handled": 2}
    assert newer.return_value() == {"events": 1, "handled": 1}
    assert unhandled(app) == []
    assert invites_by_user(app) == Counter({api.users.ids[n]: 1 for n in ("eve", "dee", "cyd", "fay")})


def test_events_left_under_a_mark_whose_job_never_reached_the_queue_get_one_from_the_sweep(app, api, league,
                                                                                           run_jobs):
    from deltacrown.outbox.relay import sweep_outbox_now

    run_jobs()
    with app.app_context():  # a relay's process died between setting the mark and queueing its job
        get_redis().set(dispatch.READY_EVENTS.mark_key, "a-job-never-queued", ex=30)
    invite(api, league, "eve")  # pushed under that mark: no job of its own
    assert queued_jobs(app) == []
    with app.app_context():
        assert sweep_outbox_now() == {"relayed": 0, "ready_job_queued": True}
        assert sweep_outbox_now() == {"relayed": 0}  # the job it queued will take them: not a second
    assert [j.func_name for j in queued_jobs(app)] == [READY_JOB]
    run_jobs()
    assert invites_by_user(app) == Counter({api.users.ids["eve"]: 1}) and unhandled(app) == []
