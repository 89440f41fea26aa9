"""A `handle_event` job (a job per event, as the relay queued them before the ready list, and as
the bench's throughput case does) goes on to the events committed after its own: a backlog
drains in one job, the later jobs find their events handled, and nobody is notified twice. An event that fails
while taken along is left, untouched, to its own job."""
from __future__ import annotations

from collections import Counter

from sqlalchemy import func, insert, select

from deltacrown.extensions import db
from deltacrown.models import Notification, OutboxEvent
from deltacrown.outbox import dispatch
from deltacrown.outbox.dispatch import handle_event


def invite_events(app):
    with app.app_context():
        ids = list(db.session.scalars(select(OutboxEvent.id).where(OutboxEvent.type == "invite_sent")
                                      .order_by(OutboxEvent.id)))
        db.session.rollback()
    return ids


def invite_notifications(app):
    with app.app_context():
        rows = Counter(db.session.scalars(select(Notification.user_id).where(Notification.type == "invite_sent")))
        db.session.rollback()
    return rows


def handled(app, ids):
    with app.app_context():
        rows = dict(db.session.execute(select(OutboxEvent.id, OutboxEvent.handled_at)
                                       .where(OutboxEvent.id.in_(ids))).all())
        db.session.rollback()
    return [rows[i] is not None for i in ids]


def test_the_first_job_handles_the_events_queued_behind_it(app, api, league, run_jobs):
    run_jobs()
    for name in ("eve", "dee", "cyd"):
        api.post(f"/teams/{league['red']}/invites", "cap", {"user_id": api.users.ids[name]}, expect=201)
    first, *rest = invite_events(app)
    assert len(rest) == 2 and handled(app, [first, *rest]) == [False, False, False]

    with app.app_context():
        result = handle_event(first)
    assert result["status"] == "handled" and result["more"] == 2
    assert handled(app, [first, *rest]) == [True, True, True]
    assert invite_notifications(app) == Counter({api.users.ids[n]: 1 for n in ("eve", "dee", "cyd")})

    with app.app_context():  # jobs for the later events (as the relay queued them before) find nothing to do
        assert [handle_event(i)["status"] for i in rest] == ["already handled", "already handled"]
    run_jobs()
    assert invite_notifications(app) == Counter({api.users.ids[n]: 1 for n in ("eve", "dee", "cyd")})


def test_a_failing_event_taken_along_is_left_to_its_own_job(app, api, league, run_jobs, monkeypatch):
    run_jobs()
    api.post(f"/teams/{league['red']}/invites", "cap", {"user_id": api.users.ids["eve"]}, expect=201)
    api.post(f"/teams/{league['red']}/members", "cap", {"user_id": api.users.ids["dee"]}, expect=201)
    api.post(f"/teams/{league['red']}/invites", "cap", {"user_id": api.users.ids["cyd"]}, expect=201)
    with app.app_context():
        events = list(db.session.execute(select(OutboxEvent.id, OutboxEvent.type)
                                         .where(OutboxEvent.handled_at.is_(None)).order_by(OutboxEvent.id)))
        db.session.rollback()
    assert [kind for _, kind in events] == ["invite_sent", "roster_changed", "invite_sent"]
    ids = [i for i, _ in events]

    def broken(event):
        db.session.add(Notification(user_id=api.users.ids["dee"], type="roster_changed", title="half-written"))
        db.session.flush()
        raise RuntimeError("the roster reaction failed")

    monkeypatch.setitem(dispatch._reactions, "roster_changed", (broken,))
    with app.app_context():
        result = handle_event(ids[0])
    assert result["more"] == 1  # the third event; the second was rolled back and skipped
    assert handled(app, ids) == [True, False, True]
    with app.app_context():  # nothing of the failed reaction was kept
        assert db.session.scalar(select(Notification.id).where(Notification.title == "half-written")) is None
        db.session.rollback()

    monkeypatch.undo()  # fixed: its own job (still queued) handles it
    run_jobs()
    assert handled(app, ids) == [True, True, True]
    assert invite_notifications(app) == Counter({api.users.ids["eve"]: 1, api.users.ids["cyd"]: 1})


def test_a_commit_with_many_events_is_relayed_as_jobs_of_a_hundred(app, api, league, run_jobs):
    """A rankings recompute commits thousands of events: one job per 100 of them, each event
    handled once; a failing one fails its job for the retry and does not stop the others."""
    from deltacrown.outbox.relay import EVENTS_PER_JOB
    from deltacrown.outbox.services import emit
    from deltacrown.queue import get_queue

    run_jobs()
    with app.app_context():
        get_queue("notifications").empty()
        before = db.session.scalar(select(func.max(OutboxEvent.id)))
        for _ in range(EVENTS_PER_JOB + 5):
            emit("roster_changed", team_id=league["red"], user_id=api.users.ids["ann"], action="added", actor_id=None)
        db.session.commit()
        jobs = get_queue("notifications").jobs
        ids = list(db.session.scalars(select(OutboxEvent.id).where(OutboxEvent.id > before)
                                      .order_by(OutboxEvent.id)))
    assert [j.func_name for j in jobs] == ["deltacrown.outbox.dispatch.handle_events"] * 2
    assert [j.args[0] for j in jobs] == [ids[:EVENTS_PER_JOB], ids[EVENTS_PER_JOB:]]
    run_jobs()
    assert handled(app, ids) == [True] * len(ids)
    with app.app_context():
        per_event = Counter(db.session.scalars(select(Notification.dedup_key).where(
            Notification.type == "roster_changed", Notification.user_id == api.users.ids["cap"])))
    assert all(per_event[f"event:{i}"] == 1 for i in ids) and set(per_event.values()) == {1}


def test_handle_events_goes_on_past_a_failing_event_and_fails_for_the_retry(app, api, league, run_jobs,
                                                                            monkeypatch):
    import pytest

    from deltacrown.outbox.dispatch import handle_events

    run_jobs()
    from deltacrown.timeutil import utcnow

    with app.app_context(), db.engine.begin() as conn:  # outside the session: not relayed; by hand below
        ids = [conn.scalar(insert(OutboxEvent).values(**row).returning(OutboxEvent.id)) for row in (
            {"type": "sponsor_approved", "payload": {"sponsor_id": 1}, "created_at": utcnow()},
            {"type": "roster_changed", "created_at": utcnow(), "payload": {
                "team_id": league["red"], "user_id": api.users.ids["ann"], "action": "added", "actor_id": None}})]

    def broken(event):
        raise RuntimeError("the sponsor reaction failed")

    monkeypatch.setitem(dispatch._reactions, "sponsor_approved", (broken,))
    with app.app_context(), pytest.raises(RuntimeError, match=str(ids[0])):
        handle_events(ids)
    assert handled(app, ids) == [False, True]
