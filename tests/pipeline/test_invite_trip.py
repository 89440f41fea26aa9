"""An invite's trip, API write → the invitee's notification, in SQL statements: the hot path of
the e2e benchmark and of the load test. Each statement is a round trip and an ORM call on the
path a player waits on, so the count is the guard (timing would be flaky)."""
from __future__ import annotations

import re

from deltacrown.extensions import db
from deltacrown.models import Delivery, OutboxEvent, Team, TeamInvite
from deltacrown.outbox.dispatch import READY_EVENTS, handle_event
from deltacrown.outbox.services import emit
from deltacrown.queue import get_queue, get_redis

_TARGET = re.compile(r"^\s*(?:(SELECT)\s+\"?(\w+)\"?\.|(INSERT) INTO\s+\"?(\w+)|(UPDATE)\s+\"?(\w+)|"
                     r"(DELETE) FROM\s+\"?(\w+))", re.I)


def kinds(statements) -> list[tuple[str, str]]:
    """(verb, table) of each statement, the table of a SELECT being that of its first column:
    what a reader of the SQL log would see."""
    out = []
    for sql in statements:
        match = _TARGET.match(sql)
        verb, table = [g for g in match.groups() if g] if match else (sql.split()[0], "?")
        out.append((verb.upper(), table))
    return out


def test_an_invite_is_one_read_of_the_invitee_and_nothing_after_its_commit(app, api, league, run_jobs,
                                                                          count_queries):
    run_jobs()
    eve = api.users.ids["eve"]
    with count_queries() as q:
        invite = api.post(f"/teams/{league['red']}/invites", "cap", {"user_id": eve}, expect=201).json
    # The caller's token, the team, then the invitee with "on the team?" and "invited already?"
    # in one read; the invite and its event written, the event claimed in its own INSERT; the
    # answer made from what was written (no read after the commit).
    assert kinds(q.statements) == [("SELECT", "users"), ("SELECT", "teams"), ("SELECT", "users"),
                                   ("INSERT", "team_invites"), ("INSERT", "outbox_events")]
    assert invite["status"] == "pending" and invite["user_id"] == eve and invite["team_id"] == league["red"]
    stored = api.rows(TeamInvite, TeamInvite.id == invite["id"])[0]
    assert invite["created_at"] == stored.created_at.isoformat()

    event = api.rows(OutboxEvent, OutboxEvent.type == "invite_sent")[0]
    assert event.relayed_at is not None and event.payload == {"invite_id": invite["id"]}
    with app.app_context():  # on the ready list, for the one queued event job
        assert [j.func_name for j in get_queue("notifications").jobs] == [
            "deltacrown.outbox.dispatch.handle_ready_events"]
        assert get_redis().lrange(READY_EVENTS.ready_key, 0, -1) == [str(event.id).encode()]
    run_jobs()
    assert api.notified("invite_sent") == {"eve": 1}


def test_an_invite_event_alone_in_the_queue_is_one_read_of_the_invite_and_no_search_for_more(
        app, api, league, run_jobs, count_queries):
    run_jobs()
    api.post(f"/teams/{league['red']}/invites", "cap", {"user_id": api.users.ids["eve"]}, expect=201)
    event_id = api.rows(OutboxEvent, OutboxEvent.type == "invite_sent")[0].id
    with app.app_context():
        get_queue("notifications").empty()  # this job is the one running: nothing waits behind it
    with count_queries() as q:
        with app.app_context():
            assert handle_event(event_id) == {"event_id": event_id, "status": "handled", "deliveries": 1}
    reads = kinds(q.statements)
    # The invite comes with its team (one statement), and with no job waiting there is no
    # search of the outbox for events to take along (the queue said so, in one LLEN).
    assert reads.count(("SELECT", "team_invites")) == 1 and ("SELECT", "teams") not in reads
    assert reads.count(("SELECT", "outbox_events")) == 1  # its own event, FOR UPDATE
    assert api.notified("invite_sent") == {"eve": 1}


def test_events_queued_behind_are_still_taken_along(app, api, league, run_jobs):
    run_jobs()
    for name in ("eve", "dee"):
        api.post(f"/teams/{league['red']}/invites", "cap", {"user_id": api.users.ids[name]}, expect=201)
    first, second = (e.id for e in api.rows(OutboxEvent, OutboxEvent.type == "invite_sent"))
    with app.app_context():  # a job per event, as the relay queued them before the ready list
        get_queue("notifications").empty()
        get_redis().delete(READY_EVENTS.ready_key, READY_EVENTS.mark_key)
        handle_event.enqueue_many([(first,), (second,)])
        assert get_queue("notifications").count == 2  # both jobs wait; the first is run here
        assert handle_event(first)["more"] == 1
    assert api.rows(OutboxEvent, OutboxEvent.id == second)[0].handled_at is not None
    run_jobs()  # the second event's own job finds it handled
    assert api.notified("invite_sent") == {"eve": 1, "dee": 1}


def test_a_decline_answers_from_its_update_with_no_read_after_the_commit(app, api, league, count_queries):
    eve = api.users.ids["eve"]
    invite = api.post(f"/teams/{league['red']}/invites", "cap", {"user_id": eve}, expect=201).json
    with count_queries() as q:
        declined = api.post(f"/invites/{invite['id']}/decline", "eve", expect=200).json
    # The caller's token, the invite, its conditional UPDATE; the answer is what the UPDATE
    # wrote (a read after the commit would be a statement and a transaction of its own).
    assert kinds(q.statements) == [("SELECT", "users"), ("SELECT", "team_invites"), ("UPDATE", "team_invites")]
    stored = api.rows(TeamInvite, TeamInvite.id == invite["id"])[0]
    assert declined["status"] == stored.status == "declined"
    assert declined["responded_at"] == stored.responded_at.isoformat()


def test_the_unread_count_is_one_statement_after_the_token(app, api, league, run_jobs, count_queries):
    for name in ("eve", "dee"):
        api.post(f"/teams/{league['red']}/invites", "cap", {"user_id": api.users.ids[name]}, expect=201)
    run_jobs()
    notes = api.get("/notifications", "eve").json["items"]
    api.post(f"/notifications/{notes[0]['id']}/read", "eve", expect=200)
    with count_queries() as q:
        counts = api.get("/notifications/unread-count", "eve").json
    assert kinds(q.statements)[0] == ("SELECT", "users") and len(q.statements) == 2
    assert counts == {"count": len(notes) - 1, "unseen": len(notes) - 1}


def test_a_team_event_reads_its_team_once_and_finds_its_webhook_there(app, api, league, run_jobs, count_queries):
    """A roster change (the throughput benchmark's event): its composer reads the team, and the
    team's webhook delivery is decided from that read, not from a second SELECT of the team."""
    run_jobs()
    red, ids = league["red"], api.users.ids
    with app.app_context():
        db.session.get(Team, red).discord_webhook_url = "http://127.0.0.1:9/team-hook"
        event = emit("roster_changed", team_id=red, user_id=ids["bob"], action="left", actor_id=ids["cap"])
        db.session.commit()
        event_id = event.id
        assert get_queue("notifications").count == 1  # its job waits, so the sends are enqueued
    with count_queries() as q:
        with app.app_context():
            assert handle_event(event_id)["status"] == "handled"
    assert kinds(q.statements).count(("SELECT", "teams")) == 1
    team_sends = api.rows(Delivery, Delivery.event_id == event_id, Delivery.channel == "discord")
    assert [d.target for d in team_sends] == [f"team:{red}"]
