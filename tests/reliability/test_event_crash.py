"""Crash: worker.py SIGKILLed while it handles an outbox event in its own process.

An event's job (`handle_ready_events`) runs in the worker process itself (WarmWorker, no work horse), so a kill
there takes the worker down with the job. The promise is the same as for forked jobs:
nothing accelerated, a new worker retries the job within two minutes (it takes the events
the dead run took, kept under its job id), and every notification exists exactly once (the
retry runs the reactions again).
"""
from __future__ import annotations

import time

import pytest
from rq.registry import StartedJobRegistry
from sqlalchemy import func, select

from deltacrown.accounts.services import create_user
from deltacrown.extensions import db
from deltacrown.notifications.models import Notification
from deltacrown.outbox.models import OutboxEvent
from deltacrown.queue import QUEUE_NOTIFICATIONS, get_queue
from deltacrown.teams.services import create_team, invite_user
from tests.support.processes import PYTHON, wait_for

from .conftest import PausedWorker, record_figures

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(600)]


def invite_rows(app, user_id):
    with app.app_context():
        notes = db.session.scalar(select(func.count()).select_from(Notification).where(
            Notification.user_id == user_id, Notification.type == "invite_sent"))
        unhandled = db.session.scalar(select(func.count()).select_from(OutboxEvent).where(
            OutboxEvent.type == "invite_sent", OutboxEvent.handled_at.is_(None)))
        db.session.rollback()
    return notes, unhandled


def test_worker_killed_inside_an_in_process_event_job_is_retried_within_two_minutes(rapp, worker_env, spawn,
                                                                                   tmp_path):
    env = worker_env()
    with rapp.app_context():
        captain, _, _ = create_user("cap", "cap@example.com", password="crash-password")
        partner, _, _ = create_user("mate", "mate@example.com", password="crash-password")
        team = create_team("Crash", captain.id)
        invite_user(captain, team, partner.id)  # commits the invite and its event; relayed to Redis
        partner_id = partner.id

    worker = PausedWorker(spawn, env, tmp_path / "pause", "event:before_mark", "worker")
    pid = worker.wait_paused()
    assert pid == worker.proc.pid  # the job runs in worker.py's own process: no horse
    registry = StartedJobRegistry(queue=get_queue(QUEUE_NOTIFICATIONS, rapp))
    (entry, lapses_at), = registry.connection.zrange(registry.key, 0, -1, withscores=True)
    # Its heartbeat lapses as soon as a horse's would (job monitoring interval + 60 s).
    assert lapses_at - time.time() <= 75, lapses_at - time.time()
    # The invite email is a send, so the reaction committed the notification before enqueueing
    # it; the event itself is not marked handled yet.
    assert invite_rows(rapp, partner_id) == (1, 1)
    worker.kill()
    assert invite_rows(rapp, partner_id) == (1, 1)

    killed_at = time.monotonic()
    spawn([PYTHON, "worker.py"], env=env, name="recovery")
    wait_for(lambda: invite_rows(rapp, partner_id) == (1, 0), timeout=240,
             message="the dead worker's event job to be retried by a new worker")
    recovered = round(time.monotonic() - killed_at, 1)
    # DESIGN: a job whose worker was SIGKILLed is retried within two minutes.
    assert recovered < 120, recovered
    assert invite_rows(rapp, partner_id) == (1, 0)
    record_figures("crash_event_in_process", killed=1, notifications=1, recovery_seconds=recovered)
