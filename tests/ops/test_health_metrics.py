"""GET /healthz and GET /metrics: no login, real numbers from RQ and the database."""
from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rq import Worker
from rq.registry import FailedJobRegistry
from sqlalchemy import insert

from deltacrown.extensions import db
from deltacrown.notifications.models import Delivery
from deltacrown.ops.scheduler import make_scheduler, run_round, silence_utcnow_deprecation
from deltacrown.outbox.models import OutboxEvent
from deltacrown.queue import QUEUE_NAMES, get_queue, get_redis, make_worker, restore_registration
from deltacrown.timeutil import utcnow
from tests.support.processes import wait_for

from . import jobs


@pytest.fixture
def registered_worker(app):
    """A worker registered with Redis as `python worker.py` registers itself (no jobs run)."""
    with app.app_context():
        worker = make_worker(app, name="health-check-worker")
        worker.register_birth()
    yield worker
    with app.app_context():
        worker.register_death()


@pytest.fixture
def scheduler_round(app):
    """Runs one round of the scheduler process's loop (heartbeat, lock, jobs) in this process."""

    silence_utcnow_deprecation()

    def run():
        with app.app_context():
            assert run_round(make_scheduler(app), app.config["SCHEDULER_INTERVAL"])

    return run


def test_healthz_is_200_with_a_worker_and_a_live_scheduler(client, registered_worker, scheduler_round):
    scheduler_round()
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"db": "ok", "redis": "ok", "workers": 1, "scheduler": "ok"}


def test_healthz_is_503_without_workers(client, scheduler_round):
    scheduler_round()
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.get_json() == {"db": "ok", "redis": "ok", "workers": 0, "scheduler": "ok", "down": ["workers"]}


def test_healthz_names_the_scheduler_when_none_ever_beat(client, registered_worker):
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.get_json() == {"db": "ok", "redis": "ok", "workers": 1, "scheduler": "down",
                                   "down": ["scheduler"]}


def test_healthz_names_the_scheduler_when_its_heartbeat_is_stale(app, client, registered_worker, scheduler_round):
    app.config["SCHEDULER_HEARTBEAT_STALE_SECONDS"] = 1
    scheduler_round()
    assert client.get("/healthz").get_json()["scheduler"] == "ok"
    # No further round: the scheduler died or hangs. Its last heartbeat ages past the threshold.
    response = wait_for(lambda: (r := client.get("/healthz")).status_code == 503 and r, timeout=10,
                        message="/healthz to notice the stale scheduler heartbeat")
    assert response.get_json() == {"db": "ok", "redis": "ok", "workers": 1, "scheduler": "down",
                                   "down": ["scheduler"]}
    scheduler_round()  # it beats again
    assert client.get("/healthz").status_code == 200


def test_a_worker_forgotten_by_redis_registers_again_and_a_dead_one_does_not(app, client, scheduler_round):
    with app.app_context():
        worker = make_worker(app, name="forgotten-worker")
        worker.register_birth()
        worker.set_state("idle")
        get_redis().flushall()  # Redis restarted empty; the worker process goes on
        worker.heartbeat()  # RQ's own heartbeat alone does not make it visible again
    scheduler_round()
    assert client.get("/healthz").get_json()["workers"] == 0
    with app.app_context():
        assert restore_registration(worker)
        assert not restore_registration(worker)  # listed again: nothing to do
    body = client.get("/healthz").get_json()
    assert (body["workers"], body["scheduler"]) == (1, "ok")
    listed = Worker.all(connection=get_redis(app))  # what the ops page lists
    assert [(w.name, w.get_state(), w.queue_names()) for w in listed] == [
        ("forgotten-worker", "idle", list(QUEUE_NAMES))]
    with app.app_context():
        worker.register_death()
        assert not restore_registration(worker)  # a stopped worker stays gone
    assert client.get("/healthz").get_json()["workers"] == 0


def test_healthz_names_redis_when_it_is_unreachable(app_without_redis):
    response = app_without_redis.test_client().get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["redis"] == "down" and body["db"] == "ok" and body["scheduler"] == "down"
    assert body["down"] == ["redis", "workers", "scheduler"]


def _metrics(client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_match_the_registries_and_the_database(app, client, run_jobs):
    with app.app_context():
        for i in range(3):
            jobs.succeed.enqueue(i)
        jobs.fail.enqueue("counted")
        run_jobs()
        waiting = [jobs.succeed.enqueue(10), jobs.succeed.enqueue(11)]  # left on the queue
        db.session.add_all([
            Delivery(dedup_key="d1", channel="email", target="a@example.com", status="sent", attempts=1),
            Delivery(dedup_key="d2", channel="email", target="b@example.com", status="sent", attempts=3),
            Delivery(dedup_key="d3", channel="email", target="c@example.com", status="failed", attempts=5),
            Delivery(dedup_key="d4", channel="discord", target="team:1", status="pending", attempts=0),
            # Not sent because the player withdrew consent: counted, and not as a failure.
            Delivery(dedup_key="d5", channel="email", target="d@example.com", status="skipped", attempts=1),
        ])
        db.session.commit()
        # Two events whose relay after commit did not happen (written outside the session, which
        # the relay hook does not watch) and one already relayed.
        with db.engine.begin() as conn:
            conn.execute(insert(OutboxEvent), [
                {"type": "invite_sent", "payload": {"invite_id": 1}, "created_at": utcnow(), "relayed_at": None},
                {"type": "invite_sent", "payload": {"invite_id": 2}, "created_at": utcnow(), "relayed_at": None},
                {"type": "invite_sent", "payload": {"invite_id": 3}, "created_at": utcnow(), "relayed_at": utcnow()},
            ])
        connection = get_redis()
        rq_lengths = {q: get_queue(q).count for q in QUEUE_NAMES}
        rq_failed = {q: FailedJobRegistry(q, connection=connection).count for q in QUEUE_NAMES}

    m = _metrics(client)
    for q in QUEUE_NAMES:
        assert m[("deltacrown_queue_length", (("queue", q),))] == rq_lengths[q]
        assert m[("deltacrown_queue_registry_jobs", (("queue", q), ("registry", "failed")))] == rq_failed[q]
    assert rq_lengths["default"] == len(waiting) and rq_failed["default"] == 1
    assert m[("deltacrown_queue_oldest_job_age_seconds", (("queue", "default"),))] >= 0
    assert m[("deltacrown_failed_jobs", ())] == sum(rq_failed.values()) == 1

    succeed, fail = "tests.ops.jobs.succeed", "tests.ops.jobs.fail"
    assert m[("deltacrown_jobs_total", (("job", succeed), ("status", "finished")))] == 3
    assert m[("deltacrown_jobs_total", (("job", succeed), ("status", "failed")))] == 0
    assert m[("deltacrown_jobs_total", (("job", fail), ("status", "failed")))] == 1
    assert m[("deltacrown_job_duration_seconds_count", (("job", succeed),))] == 3
    assert m[("deltacrown_job_duration_seconds_bucket", (("job", succeed), ("le", "+Inf")))] == 3
    assert m[("deltacrown_job_duration_seconds_sum", (("job", succeed),))] > 0

    assert m[("deltacrown_deliveries", (("channel", "email"), ("status", "sent")))] == 2
    assert m[("deltacrown_deliveries", (("channel", "email"), ("status", "failed")))] == 1
    assert m[("deltacrown_deliveries", (("channel", "discord"), ("status", "pending")))] == 1
    assert m[("deltacrown_deliveries", (("channel", "email"), ("status", "skipped")))] == 1
    assert m[("deltacrown_deliveries", (("channel", "in_app"), ("status", "sent")))] == 0
    assert m[("deltacrown_deliveries_retried", (("channel", "email"),))] == 2
    assert m[("deltacrown_outbox_backlog", ())] == 2
    assert m[("deltacrown_workers", (("state", "idle"),))] == 0  # the burst worker has left
    assert m[("deltacrown_up", (("component", "redis"),))] == 1
    assert m[("deltacrown_up", (("component", "db"),))] == 1


def test_metrics_counters_survive_across_apps(app, database_url, redis_url, run_jobs):
    """Numbers live in Redis, not in a process: another app (process) reports the same."""
    from ..conftest import make_test_app

    with app.app_context():
        jobs.succeed.enqueue(1)
        run_jobs()
    other = make_test_app(database_url, redis_url)
    first, second = _metrics(app.test_client()), _metrics(other.test_client())
    key = ("deltacrown_jobs_total", (("job", "tests.ops.jobs.succeed"), ("status", "finished")))
    assert first[key] == second[key] == 1
    with other.app_context():
        db.engine.dispose()


def test_metrics_without_redis_still_answer(app_without_redis):
    m = _metrics(app_without_redis.test_client())
    assert m[("deltacrown_up", (("component", "redis"),))] == 0
    assert m[("deltacrown_up", (("component", "db"),))] == 1
    assert m[("deltacrown_outbox_backlog", ())] == 0
    assert not any(name == "deltacrown_queue_length" for name, _ in m)
