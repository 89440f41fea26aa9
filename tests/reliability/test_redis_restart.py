"""Redis restarts EMPTY while every process stays up.

A real `python worker.py --scheduler`, two real `python worker.py` and a real
gunicorn run on the test's own redis-server. Redis is killed; invites written
meanwhile commit their outbox events, which nothing can relay; Redis is started
again on the same port with no data at all (no persistence: the recurring jobs,
the workers' registrations and every queued job are gone). Nobody restarts
anything, yet:

- the scheduler notices within its cycle that its recurring jobs are gone and
  registers them again;
- the outbox sweep (a recurring job) therefore runs again, and every event
  written during the outage is handled within two minutes;
- the workers register themselves again, so `GET /healthz` is 200 with the
  right worker count (and a live scheduler) within a minute.

Then the same again without an outage: FLUSHALL on a running Redis.
"""
from __future__ import annotations

import time

import pytest
import requests
from rq_scheduler import Scheduler
from sqlalchemy import func, select

from deltacrown.accounts.services import create_user
from deltacrown.extensions import db
from deltacrown.notifications.models import Notification
from deltacrown.ops.schedule import RECURRING_JOBS, scheduler_job_id
from deltacrown.outbox.models import OutboxEvent
from deltacrown.queue import get_redis
from deltacrown.teams.models import Team
from deltacrown.teams.services import create_team, invite_user
from tests.support.processes import PYTHON, wait_for

from .conftest import record_figures

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(600)]

WORKERS = 2
SCHEDULER_INTERVAL = 2  # seconds; production default 60
INVITES_DURING_OUTAGE = 6
RECURRING_IDS = sorted(scheduler_job_id(s) for s in RECURRING_JOBS)


def registered_recurring(connection) -> list[str]:
    return sorted(m.decode() for m in connection.zrange(Scheduler.scheduled_jobs_key, 0, -1)
                  if m.decode().startswith("recurring-"))


def test_redis_restarted_empty_recovers_jobs_workers_and_health_without_restarts(
        rapp, redis_server, worker_env, spawn, start_web):
    with rapp.app_context():
        admin, _, _ = create_user("admin", "admin@example.com", password="admin-password", is_admin=True)
        players = [create_user(f"player{i}", f"player{i}@example.com", password=f"player{i}-pw")[0].id
                   for i in range(INVITES_DURING_OUTAGE)]
        team_id = create_team("Red", captain_id=admin.id).id
        admin_id = admin.id
    env = worker_env(SCHEDULER_INTERVAL=SCHEDULER_INTERVAL, OUTBOX_SWEEP_AGE_SECONDS=1)
    workers = [spawn([PYTHON, "worker.py"], env=env, name=f"worker-{i}") for i in range(WORKERS)]
    scheduler = spawn([PYTHON, "worker.py", "--scheduler"], env=env, name="scheduler")
    web = start_web(env, workers=1)
    processes = [*workers, scheduler, web.proc]
    connection = get_redis(rapp)
    http = requests.Session()

    def all_running():
        for proc in processes:
            assert proc.is_running(), f"{proc.name} exited with {proc.poll()}:\n{proc.output()[-3000:]}"
        return True

    def health() -> tuple[int, dict]:
        response = http.get(f"{web.url}/healthz", timeout=10)
        return response.status_code, response.json()

    def healthy():
        all_running()
        status, body = health()
        return status == 200 and body["workers"] == WORKERS

    def recurring_registered() -> bool:
        return registered_recurring(connection) == RECURRING_IDS

    def time_until(checks: dict, seen: dict[str, float], since: float, timeout: float, message: str) -> None:
        """Poll until each of `checks` has held once, every process staying up; `seen` gets the
        seconds from `since` to each one's first success (kept for the report if this times out)."""
        def all_held():
            all_running()
            elapsed = round(time.monotonic() - since, 1)
            for name, check in checks.items():
                if name not in seen and check():
                    seen[name] = elapsed
            return len(seen) == len(checks)

        wait_for(all_held, timeout=timeout, interval=0.5, message=message)

    wait_for(lambda: all_running() and recurring_registered(), timeout=90,
             message="the scheduler to register the recurring jobs")
    wait_for(healthy, timeout=90, message=f"/healthz 200 with {WORKERS} workers before the outage")

    # --- Redis dies; invites are written meanwhile; Redis comes back with nothing ---
    redis_server.stop()
    with rapp.app_context():
        team = db.session.get(Team, team_id)
        actor = db.session.get(type(admin), admin_id)
        for player_id in players:
            invite_user(actor, team, player_id)  # the relay after commit fails quietly
        unrelayed = db.session.scalar(select(func.count()).select_from(OutboxEvent)
                                      .where(OutboxEvent.relayed_at.is_(None)))
        db.session.rollback()
    assert unrelayed == INVITES_DURING_OUTAGE
    redis_server.start()
    restarted = time.monotonic()
    assert connection.dbsize() <= 1  # empty (a process may already have written a key)

    def events_handled() -> bool:
        with rapp.app_context():
            left = db.session.scalar(select(func.count()).select_from(OutboxEvent)
                                     .where(OutboxEvent.handled_at.is_(None)))
            db.session.rollback()
        return left == 0

    seen: dict[str, float] = {}
    try:
        time_until({"recurring_jobs_registered": recurring_registered, "healthz_200": healthy,
                    "events_handled": events_handled}, seen, since=restarted, timeout=120,
                   message="jobs, workers and health to recover")
    finally:
        print(f"\n[redis restarted empty] seconds until: {seen}; /healthz now: {health() if web.proc.is_running() else '-'}")
    # One scheduler cycle (plus one more for a round that met Redis still starting, and slack for a
    # loaded machine); the sweep then runs at its next minute.
    assert seen["recurring_jobs_registered"] <= 2 * SCHEDULER_INTERVAL + 5, seen
    assert seen["healthz_200"] <= 60, seen
    with rapp.app_context():
        invited = db.session.scalar(select(func.count()).select_from(Notification)
                                    .where(Notification.user_id.in_(players)))
        db.session.rollback()
    assert invited == INVITES_DURING_OUTAGE  # each invitee told exactly once
    status, body = health()
    assert (status, body["workers"], body.get("scheduler")) == (200, WORKERS, "ok"), body

    # --- FLUSHALL on a running Redis: no connection error for anyone to notice ---
    connection.flushall()
    flushed = time.monotonic()
    flush_seen: dict[str, float] = {}
    time_until({"recurring_jobs_registered": recurring_registered, "healthz_200": healthy}, flush_seen,
               since=flushed, timeout=60, message="jobs and workers to come back after FLUSHALL")
    assert flush_seen["recurring_jobs_registered"] <= 2 * SCHEDULER_INTERVAL + 5, flush_seen
    record_figures("redis_restarted_empty", scheduler_interval_seconds=SCHEDULER_INTERVAL, workers=WORKERS,
                   events_written_during_outage=INVITES_DURING_OUTAGE,
                   after_restart_seconds=seen, after_flushall_seconds=flush_seen, processes_restarted=0)
