"""While one job handles an outbox event (its rows committed, its sends going out, not yet
marked handled), a second job for the same event waits for it instead of reacting and sending
again, and a job draining the ready events skips it. The lease only saves work: a holder that
died loses it when it expires, and the event is then handled as before."""
from __future__ import annotations

import threading

from sqlalchemy import update

from deltacrown.extensions import db
from deltacrown.models import OutboxEvent
from deltacrown.outbox import dispatch
from deltacrown.outbox.dispatch import handle_event
from deltacrown.timeutil import utcnow


def invite_events(api, league, run_jobs, *names):
    run_jobs()
    for name in names:
        api.post(f"/teams/{league['red']}/invites", "cap", {"user_id": api.users.ids[name]}, expect=201)
    return [e.id for e in api.rows(OutboxEvent, OutboxEvent.type == "invite_sent", order_by=OutboxEvent.id)]


def handled(api, event_id):
    return api.rows(OutboxEvent, OutboxEvent.id == event_id)[0].handled_at is not None


def test_a_second_job_for_an_event_being_handled_waits_and_does_not_react_again(app, api, league, run_jobs):
    (event_id,) = invite_events(api, league, run_jobs, "eve")
    with app.app_context():
        release = dispatch._lease_event(event_id)  # as the job handling it holds it
    assert release is not None
    outcome = {}

    def second_job():
        with app.app_context():
            outcome.update(handle_event(event_id))

    job = threading.Thread(target=second_job)
    job.start()
    job.join(1.0)
    assert job.is_alive(), f"the second job did not wait for the event's lease: {outcome}"
    assert api.notified("invite_sent") == {}
    # The first job finishes: marks the event handled, then releases the lease.
    with app.app_context():
        db.session.execute(update(OutboxEvent).where(OutboxEvent.id == event_id).values(handled_at=utcnow()))
        db.session.commit()
        release()
    job.join(30)
    assert not job.is_alive()
    assert outcome["status"] == "already handled"
    assert api.notified("invite_sent") == {}  # the second job wrote nothing


def test_a_drain_skips_an_event_another_job_is_handling(app, api, league, run_jobs, users):
    users.create("fox")
    users.create("gil")
    first, busy, last = invite_events(api, league, run_jobs, "eve", "fox", "gil")
    with app.app_context():
        release = dispatch._lease_event(busy)
        assert handle_event(first)["more"] == 1  # took `last` along, not `busy`
        release()
    assert (handled(api, first), handled(api, busy), handled(api, last)) == (True, False, True)
    assert api.notified("invite_sent") == {"eve": 1, "gil": 1}
    run_jobs()  # busy's own job
    assert handled(api, busy) and api.notified("invite_sent") == {"eve": 1, "fox": 1, "gil": 1}


def test_a_lease_whose_holder_died_expires_and_the_event_is_handled(app, api, league, run_jobs, monkeypatch):
    monkeypatch.setattr(dispatch, "EVENT_LEASE_SECONDS", 1)
    (event_id,) = invite_events(api, league, run_jobs, "eve")
    with app.app_context():
        assert dispatch._lease_event(event_id) is not None  # never released: its holder was killed
        assert handle_event(event_id)["status"] == "handled"
    assert handled(api, event_id) and api.notified("invite_sent") == {"eve": 1}
