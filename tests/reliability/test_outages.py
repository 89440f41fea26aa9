"""Outages: Redis stopped during a stream of API writes; a job's PostgreSQL connection terminated.

Redis: the API writes go over HTTP to a real gunicorn (2 workers) on the same
database and Redis as the worker; the test's redis-server is killed after a third
of the players and started again after two thirds. The API keeps answering 2xx
while Redis is down (the outbox rows commit
with the change; the after-commit relay fails quietly); Redis comes back EMPTY
on the same port (no persistence: the jobs queued before the outage are gone
too); the outbox sweep relays what was never relayed and relays again what was
relayed but lost; a real `python worker.py`, running throughout, handles every
event exactly once.

Database: a worker paused inside the payout transaction has its PostgreSQL
connections terminated (pg_terminate_backend); the job fails, RQ's retry (the
worker's own scheduler, no help from the test) pays exactly once.
"""
from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
import requests
from rq import Worker
from sqlalchemy import func, select, text

from deltacrown.accounts.services import create_user
from deltacrown.economy.jobs import distribute_payouts
from deltacrown.dedup import DedupKey
from deltacrown.economy.models import CoinTransaction
from deltacrown.economy.payouts import payout_dedup_key
from deltacrown.extensions import db
from deltacrown.notifications.models import Notification
from deltacrown.outbox.relay import sweep_outbox_now
from deltacrown.outbox.models import OutboxEvent
from deltacrown.queue import fetch_job, get_redis
from deltacrown.timeutil import utcnow
from tests.automation.money_factories import add_teams, add_tournament
from tests.support.processes import PYTHON, wait_for

from .conftest import WORKER_APP_NAME, PausedWorker, env_int, pg_backends, record_figures

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(600)]

PLAYERS = env_int("RELIABILITY_OUTAGE_PLAYERS", 30)
DB_ROUNDS = env_int("RELIABILITY_DB_ROUNDS", 3)


def test_redis_outage_during_api_writes_loses_and_doubles_no_event(rapp, redis_server, worker_env, spawn, start_web):
    rapp.config["OUTBOX_REDELIVER_AGE_SECONDS"] = 1  # the sweep below runs in this process
    with rapp.app_context():
        admin, admin_token, _ = create_user("admin", "admin@example.com", password="admin-password", is_admin=True)
        cap, cap_token, _ = create_user("cap", "cap@example.com", password="cap-password")
        players = [create_user(f"player{i}", f"player{i}@example.com", password=f"player{i}-password")[:2] for i in range(PLAYERS)]
        players = [(user.id, token) for user, token in players]
        cap_id = cap.id
    env = worker_env()
    web = start_web(env, workers=2)  # the API writes go over HTTP to real gunicorn workers
    http = requests.Session()
    bearer = lambda token: {"Authorization": f"Bearer {token}"}  # noqa: E731
    worker = spawn([PYTHON, "worker.py"], env=env, name="worker")

    def worker_ready():  # the outage hits a running system (a worker starting meanwhile would just exit)
        assert worker.is_running(), worker.output()[-3000:]
        return Worker.count(connection=get_redis(rapp)) == 1

    wait_for(worker_ready, timeout=90, message="the worker to register with Redis")

    def events_so_far() -> int:
        with rapp.app_context():
            count = db.session.scalar(select(func.count()).select_from(OutboxEvent))
            db.session.rollback()
        return count

    statuses = Counter()
    team = http.post(f"{web.api}/teams", json={"name": "Red", "captain_id": cap_id}, headers=bearer(admin_token),
                     timeout=60)
    assert team.status_code == 201, team.text
    team_id = team.json()["id"]
    outage = (PLAYERS // 3, 2 * PLAYERS // 3)
    writes_while_down = 0
    events_at = {}
    for i, (player_id, token) in enumerate(players):
        if i == outage[0]:
            redis_server.stop()
            events_at["stop"] = events_so_far()
        if i == outage[1]:
            events_at["start"] = events_so_far()
            redis_server.start()
        invite = http.post(f"{web.api}/teams/{team_id}/invites", json={"user_id": player_id},
                           headers=bearer(cap_token), timeout=60)
        statuses[invite.status_code] += 1
        assert invite.status_code == 201, (i, invite.status_code, invite.text[:500])
        accepted = http.post(f"{web.api}/invites/{invite.json()['id']}/accept", headers=bearer(token), timeout=60)
        statuses[accepted.status_code] += 1
        writes_while_down += 2 if outage[0] <= i < outage[1] else 0
    assert set(statuses) <= {200, 201}, statuses
    assert web.proc.is_running(), web.proc.output()[-3000:]
    assert worker.is_running(), worker.output()[-3000:]

    with rapp.app_context():
        unrelayed = db.session.scalar(select(func.count()).select_from(OutboxEvent)
                                      .where(OutboxEvent.relayed_at.is_(None)))
        db.session.rollback()
    events_while_down = events_at["start"] - events_at["stop"]
    assert events_while_down > 0
    assert unrelayed >= events_while_down  # the writes during the outage could not enqueue their events

    def lost_jobs_count_as_lost():  # OUTBOX_REDELIVER_AGE_SECONDS (1 s) since the last relay
        with rapp.app_context():
            newest = db.session.scalar(select(func.max(OutboxEvent.relayed_at))
                                       .where(OutboxEvent.handled_at.is_(None)))
            db.session.rollback()
        age = timedelta(seconds=rapp.config["OUTBOX_REDELIVER_AGE_SECONDS"])
        return newest is None or utcnow() - newest > age

    wait_for(lost_jobs_count_as_lost, 10, interval=0.05, message="the relayed events' redelivery age")
    with rapp.app_context():
        swept = sweep_outbox_now(min_age_seconds=0)

    def all_handled():
        assert worker.is_running(), f"worker exited with {worker.poll()}: {worker.output()[-3000:]}"
        with rapp.app_context():
            left = db.session.scalar(select(func.count()).select_from(OutboxEvent)
                                     .where(OutboxEvent.handled_at.is_(None)))
            db.session.rollback()
        return left == 0

    wait_for(all_handled, timeout=120, message="every outbox event to be handled")

    with rapp.app_context():
        events = db.session.scalars(select(OutboxEvent).order_by(OutboxEvent.id)).all()
        per_user_event = Counter(db.session.execute(
            select(Notification.user_id, Notification.dedup_key).where(Notification.dedup_key.like("event:%"))).all())
        invites = {e.id: e.payload for e in events if e.type == "invite_sent"}
        invitee_of = {}
        from deltacrown.teams.models import TeamInvite

        for event_id, payload in invites.items():
            invitee_of[event_id] = db.session.get(TeamInvite, payload["invite_id"]).user_id
    doubled = sum(1 for n in per_user_event.values() if n > 1)
    missing = sum(1 for event_id, user_id in invitee_of.items() if per_user_event[(user_id, f"event:{event_id}")] != 1)
    assert len(invites) == PLAYERS
    assert doubled == 0 and missing == 0
    record_figures("redis_outage", api_writes=sum(statuses.values()) + 1, writes_while_redis_down=writes_while_down,
                   events_while_redis_down=events_while_down, web_workers=2,
                   non_2xx=sum(n for s, n in statuses.items() if s >= 300), events=len(events),
                   unrelayed_after_outage=unrelayed, relayed_by_sweep=swept["relayed"],
                   relayed_again=swept.get("redelivered", 0), handled=len(events), doubled=doubled, missing=missing,
                   worker_restarts_after_lost_redis=worker.output().count("quit after an error"))


def test_terminated_database_connection_mid_payout_is_retried_and_pays_once(rapp, worker_env, spawn, tmp_path):
    env = worker_env()
    terminated_total, rounds_ok = 0, 0
    for round_no in range(DB_ROUNDS):
        with rapp.app_context():
            cup = add_tournament(status="completed", placements=add_teams(3))
            job_id = distribute_payouts.enqueue(cup).id
        worker = PausedWorker(spawn, env, tmp_path / f"pause-{round_no}", "payout:after_coins", f"worker-{round_no}")
        worker.wait_paused()
        busy = [b for b in pg_backends(rapp) if b[1] == "idle in transaction"]
        assert busy, pg_backends(rapp)  # the job's connection, inside the payout transaction
        with rapp.app_context():
            terminated = db.session.execute(text(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = :name"),
                {"name": WORKER_APP_NAME}).scalar()
            db.session.rollback()
        terminated_total += terminated
        (worker.pause_dir / "payout-after_coins.release").write_text("go")

        # The job fails on its dead connection; RQ retries it (10 s later, the worker's scheduler).
        def finished():
            assert worker.proc.is_running(), worker.proc.output()[-3000:]
            job = fetch_job(job_id, rapp)
            return job.get_status() == "finished" and job

        job = wait_for(finished, timeout=120, message="the payout to be retried after its connection was terminated")
        assert job.retries_left == len(job.retry_intervals) - 1  # it failed once, then succeeded
        assert job.return_value()["status"] == "distributed"
        with rapp.app_context():
            amounts = sorted(db.session.scalars(select(CoinTransaction.amount)
                                                .where(CoinTransaction.dedup_key == payout_dedup_key(cup))))
            keys = db.session.scalar(select(func.count()).select_from(DedupKey)
                                     .where(DedupKey.key == payout_dedup_key(cup)))
            db.session.rollback()
        assert amounts == [250, 500, 1000] and keys == 1
        rounds_ok += 1
        worker.proc.stop()
    record_figures("database_terminated", rounds=DB_ROUNDS, connections_terminated=terminated_total,
                   completed_once_by_retry=rounds_ok, duplicates=0)
