"""The outbox: events are relayed after commit, never for a rollback, never lost when
Redis is down, and handling one twice writes nothing twice."""
from __future__ import annotations

import pytest
from sqlalchemy import bindparam, insert, literal, select, text, update

from deltacrown.devredis import start_redis_server
from deltacrown.extensions import db
from deltacrown.models import Delivery, Notification, OutboxEvent, Team
from deltacrown.outbox.dispatch import READY_EVENTS, handle_event
from deltacrown.outbox.jobs import sweep_outbox
from deltacrown.outbox.relay import sweep_outbox_now
from deltacrown.outbox.services import emit
from deltacrown.queue import get_queue, get_redis


def queued(app, name="notifications"):
    with app.app_context():
        return [j.func_name for j in get_queue(name).jobs]


def test_commit_relays_its_event_to_the_ready_job_and_marks_it(api, league, run_jobs, app):
    run_jobs()
    api.post(f"/teams/{league['red']}/invites", "cap", {"user_id": api.users.ids["eve"]}, expect=201)
    assert queued(app) == ["deltacrown.outbox.dispatch.handle_ready_events"]
    event = api.rows(OutboxEvent, OutboxEvent.type == "invite_sent")[0]
    assert event.payload == {"invite_id": 1} and event.relayed_at is not None and event.handled_at is None
    run_jobs()
    assert api.rows(OutboxEvent, OutboxEvent.id == event.id)[0].handled_at is not None


def test_a_write_claims_its_own_events_in_its_own_transaction(api, league, run_jobs, app):
    """The relay's claim rides in the write's transaction: one commit per write, not a second
    transaction just to mark its events relayed (an e2e trip's time)."""
    from sqlalchemy import event

    run_jobs()
    with app.app_context():
        engine = db.engine
    commits = []
    listener = lambda conn: commits.append(conn)  # noqa: E731
    event.listen(engine, "commit", listener)
    try:
        api.post(f"/teams/{league['red']}/invites", "cap", {"user_id": api.users.ids["eve"]}, expect=201)
    finally:
        event.remove(engine, "commit", listener)
    assert len(commits) == 1
    event_row = api.rows(OutboxEvent, OutboxEvent.type == "invite_sent")[0]
    assert event_row.relayed_at is not None and queued(app) == ["deltacrown.outbox.dispatch.handle_ready_events"]
    run_jobs()
    assert api.notified("invite_sent") == {"eve": 1}


def test_rollback_produces_no_event_and_no_notification(app, api, league, run_jobs):
    run_jobs()
    with app.app_context():
        before = db.session.query(OutboxEvent).count()
        team = db.session.get(Team, league["red"])
        team.name = "Renamed"
        emit("roster_changed", team_id=team.id, user_id=api.users.ids["ann"], action="removed", actor_id=1)
        db.session.flush()  # the event has an id now...
        db.session.rollback()  # ...and is gone
        # a savepoint rolled back inside a committed transaction relays nothing either
        kept = emit("ranking_changed", team_id=league["red"], old_rank=None, new_rank=1)
        db.session.flush()
        savepoint = db.session.begin_nested()
        emit("sponsor_approved", sponsor_id=999)
        db.session.flush()
        savepoint.rollback()
        db.session.commit()
        assert [e.type for e in db.session.query(OutboxEvent).filter(OutboxEvent.id > before)] == ["ranking_changed"]
        assert db.session.get(OutboxEvent, kept.id).relayed_at is not None
    assert queued(app) == ["deltacrown.outbox.dispatch.handle_ready_events"]
    run_jobs()
    assert api.notified("roster_changed") == {"cap": 2, "ann": 2, "bob": 1, "cyd": 1, "dee": 1}
    assert api.notified("sponsor_approved") == {}


def test_rejected_request_writes_nothing(api, league, run_jobs):
    tid = api.tournament()
    api.post(f"/tournaments/{tid}/registrations", "cap", {"team_id": league["red"]}, expect=201)
    count = len(api.rows(OutboxEvent))
    again = api.post(f"/tournaments/{tid}/registrations", "cap", {"team_id": league["red"]}, expect=409)
    assert again.json["error"]["code"] == "conflict"
    assert len(api.rows(OutboxEvent)) == count


def test_handling_twice_creates_nothing_new(app, api, league, run_jobs):
    tid = api.tournament()
    for team in (league["red"], league["blue"]):
        api.post(f"/tournaments/{tid}/registrations", "admin", {"team_id": team}, expect=201)
    api.post(f"/tournaments/{tid}/bracket-ready", "admin", expect=200)
    run_jobs()
    notes, deliveries = len(api.rows(Notification)), len(api.rows(Delivery))
    assert notes and deliveries
    events = api.rows(OutboxEvent)
    with app.app_context():
        # A duplicated relay (e.g. the sweep and the after-commit relay both fired) ...
        for e in events:
            handle_event.enqueue(e.id)
        # ... and a crash after the rows were committed but before handled_at was set.
        db.session.execute(update(OutboxEvent).values(handled_at=None, relayed_at=None))
        db.session.commit()
        assert sweep_outbox_now(min_age_seconds=0) == {"relayed": len(events)}
    run_jobs()
    assert len(api.rows(Notification)) == notes
    assert len(api.rows(Delivery)) == deliveries
    assert all(e.handled_at is not None for e in api.rows(OutboxEvent))


def test_sweep_ignores_fresh_and_relayed_events(app, api, league, run_jobs):
    run_jobs()
    with app.app_context():
        emit("ranking_changed", team_id=league["red"], old_rank=2, new_rank=1)
        db.session.commit()  # relayed right away
        assert sweep_outbox_now(min_age_seconds=0) == {"relayed": 0}


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test's own, so it can be stopped and restarted."""
    url, proc = start_redis_server(tmp_path / "redis")
    state = {"url": url, "proc": proc, "port": int(url.rsplit(":", 1)[1].split("/")[0])}
    yield state
    state["proc"].kill()
    state["proc"].wait(10)


@pytest.fixture
def app_config(own_redis):
    return {"REDIS_URL": own_redis["url"], "OUTBOX_SWEEP_AGE_SECONDS": 0}


def test_redis_down_during_writes_loses_nothing(app, api, league, run_jobs, own_redis, tmp_path):
    run_jobs()
    handled_before = len(api.rows(OutboxEvent))
    own_redis["proc"].kill()
    own_redis["proc"].wait(10)

    # Writes still succeed while Redis is down; their events wait in the outbox.
    invite = api.post(f"/teams/{league['red']}/invites", "cap", {"user_id": api.users.ids["eve"]}, expect=201).json
    api.post(f"/invites/{invite['id']}/accept", "eve", expect=200)
    tid = api.tournament()
    api.post(f"/tournaments/{tid}/registrations", "cyd", {"team_id": league["blue"]}, expect=201)
    waiting = api.rows(OutboxEvent, OutboxEvent.relayed_at.is_(None))
    assert [e.type for e in waiting] == ["invite_sent", "invite_accepted", "roster_changed", "tournament_registered"]

    _, own_redis["proc"] = start_redis_server(tmp_path / "redis2", port=own_redis["port"])
    with app.app_context():
        sweep_outbox.enqueue()  # as the scheduler does every minute
    run_jobs()

    events = api.rows(OutboxEvent)
    assert len(events) == handled_before + 4
    assert all(e.relayed_at and e.handled_at for e in events)
    assert api.notified("invite_sent") == {"eve": 1}
    assert api.notified("invite_accepted") == {"cap": 1}
    assert api.notified("tournament_registered") == {"cyd": 1, "dee": 1}
    assert api.deliveries("invite_accepted") == [("email", "cap")]


def test_relay_outbox_command_relays_what_the_commit_did_not(app, runner):
    from sqlalchemy import insert

    from deltacrown.extensions import db
    from deltacrown.outbox.models import OutboxEvent
    from deltacrown.queue import get_queue
    from deltacrown.timeutil import utcnow

    with app.app_context():
        # Written on a connection outside the session, which the after-commit relay does not
        # watch: left unrelayed like the events of a Redis outage.
        with db.engine.begin() as conn:
            conn.execute(insert(OutboxEvent), [{"type": "bracket_ready", "payload": {"tournament_id": 1},
                                                "created_at": utcnow()} for _ in range(3)])
    result = runner.invoke(args=["relay-outbox", "--min-age", "0"])
    assert result.exit_code == 0, result.output
    assert "Relayed 3 event(s)." in result.output
    with app.app_context():  # one job for the three (a job per event was most of a big relay's time)
        assert [(j.func_name, j.args) for j in get_queue("notifications").jobs] == [
            ("deltacrown.outbox.dispatch.handle_events", [sorted(db.session.scalars(select(OutboxEvent.id)))])]
        assert db.session.query(OutboxEvent).filter(OutboxEvent.relayed_at.is_(None)).count() == 0
    assert "Relayed 0 event(s)." in runner.invoke(args=["relay-outbox", "--min-age", "0"]).output


def _relayed(app) -> tuple[dict, list]:
    """{how it was written: relayed?} of this test's events, and the event ids on the notifications queue."""
    with app.app_context():
        rows = db.session.execute(select(OutboxEvent.id, OutboxEvent.payload, OutboxEvent.relayed_at))
        # A lone event on the ready list, or handle_events(ids) for a relay of several: the ids queued
        jobs = sorted([i for j in get_queue("notifications").jobs if j.args for i in j.args[0]]
                      + [int(i) for i in get_redis().lrange(READY_EVENTS.ready_key, 0, -1)])
        return {payload["via"]: (id_, relayed_at is not None) for id_, payload, relayed_at in rows
                if "via" in payload}, jobs


def test_events_written_by_sql_in_the_session_are_relayed_at_commit(app, league):
    from deltacrown.timeutil import utcnow

    now = bindparam("now", utcnow(), type_=OutboxEvent.created_at.type)
    with app.app_context():
        # Left unrelayed earlier (say Redis was down): the sweep's, not this commit's.
        with db.engine.begin() as conn:
            conn.execute(insert(OutboxEvent).values(type="bracket_ready", payload={"via": "earlier"},
                                                    created_at=utcnow()))
        get_queue("notifications").empty()
        get_redis().delete(READY_EVENTS.ready_key, READY_EVENTS.mark_key)

        team = db.session.get(Team, league["red"])
        team.name = "Renamed"
        db.session.execute(insert(OutboxEvent).from_select(
            ["type", "payload", "created_at"],
            select(literal("roster_changed"), literal({"via": "from_select"}, OutboxEvent.payload.type),
                   now).where(Team.id == team.id)))
        db.session.execute(text("INSERT INTO outbox_events (type, payload, created_at) "
                                "VALUES ('sponsor_approved', :payload, :now)")
                           .bindparams(now, bindparam("payload", type_=OutboxEvent.payload.type)),
                           {"payload": {"via": "text"}})
        # ORM objects, as emit() adds them (emit itself would refuse these marker payloads)
        db.session.add(OutboxEvent(type="ranking_changed", payload={"via": "emit"}))
        with db.session.begin_nested():  # a savepoint released inside the transaction
            db.session.add(OutboxEvent(type="ranking_changed", payload={"via": "emit in savepoint"}))
            db.session.execute(insert(OutboxEvent).values(type="ranking_changed", payload={"via": "sql in savepoint"},
                                                          created_at=utcnow()))
        savepoint = db.session.begin_nested()
        db.session.execute(insert(OutboxEvent).values(type="ranking_changed", payload={"via": "rolled back"},
                                                      created_at=utcnow()))
        db.session.add(OutboxEvent(type="ranking_changed", payload={"via": "emit rolled back"}))
        db.session.flush()  # written (and claimed) inside the savepoint, then gone with it
        savepoint.rollback()
        assert _relayed(app)[1] == []  # nothing before the commit
        db.session.commit()
    relayed, jobs = _relayed(app)
    assert {via: done for via, (_, done) in relayed.items()} == {
        "earlier": False, "from_select": True, "text": True, "emit": True, "emit in savepoint": True,
        "sql in savepoint": True}
    assert jobs == sorted(id_ for id_, done in relayed.values() if done)  # each once, nothing else

    # A rolled-back transaction relays nothing, and leaves nothing for the next commit to relay.
    with app.app_context():
        db.session.execute(insert(OutboxEvent).values(type="ranking_changed", payload={"via": "rollback"},
                                                      created_at=utcnow()))
        db.session.rollback()
        db.session.get(Team, league["red"]).name = "Renamed again"
        db.session.commit()
    assert _relayed(app) == (relayed, jobs)
