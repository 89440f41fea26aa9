"""worker.py's WarmWorker: the hot queue's jobs (notifications) run in the worker's own
process on warm connections; the other queues' jobs still get a forked work horse. Timeouts
and heartbeats hold for in-process jobs as for forked ones.

The workers here run in the test process (burst mode) on the test's real Redis, so a job's
answer can name the process it ran in.
"""
from __future__ import annotations

import os
import time

from rq.job import JobStatus

from deltacrown.queue import (QUEUE_DEFAULT, QUEUE_NAMES, QUEUE_NOTIFICATIONS, background_job,
                              fetch_job, get_redis, make_worker)
from tests.support.processes import WaitTimeout, wait_for


@background_job(queue=QUEUE_NOTIFICATIONS, retry_intervals=())
def report_pid_in_process() -> int:
    return os.getpid()


@background_job(queue=QUEUE_DEFAULT, retry_intervals=())
def report_pid_forked() -> int:
    return os.getpid()


@background_job(queue=QUEUE_NOTIFICATIONS, timeout=1, retry_intervals=())
def run_past_timeout() -> str:
    # Busy, standing in for a slow statement; bounded: the 1 s timeout must stop it long before.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pass
    return "not stopped"


@background_job(queue=QUEUE_NOTIFICATIONS, retry_intervals=())
def watch_own_heartbeat() -> bool:
    """True once the job's last_heartbeat in Redis moves on while this job is still running."""
    from rq import get_current_job

    job = get_current_job()
    first = job.connection.hget(job.key, "last_heartbeat")
    try:
        return wait_for(lambda: job.connection.hget(job.key, "last_heartbeat") != first, timeout=15,
                        message="the job's heartbeat to move on")
    except WaitTimeout:
        return False


def _run(app, *jobs, **worker_options):
    with app.app_context():
        enqueued = [job.enqueue() for job in jobs]
    worker = make_worker(app, QUEUE_NAMES, name=f"warm-test-{os.getpid()}-{time.monotonic_ns()}",
                         **worker_options)
    worker.work(burst=True, logging_level="WARNING")
    return [fetch_job(job.id, app) for job in enqueued]


def test_in_process_jobs_run_in_the_worker_and_the_rest_in_a_horse(app):
    get_redis(app).flushdb()
    in_process, forked = _run(app, report_pid_in_process, report_pid_forked)
    assert in_process.origin == QUEUE_NOTIFICATIONS and forked.origin == QUEUE_DEFAULT
    assert in_process.get_status() == JobStatus.FINISHED and forked.get_status() == JobStatus.FINISHED
    assert in_process.return_value() == os.getpid()
    assert forked.return_value() not in (None, os.getpid())


def test_an_in_process_job_past_its_timeout_is_stopped_and_fails(app):
    get_redis(app).flushdb()
    started = time.monotonic()
    (job,) = _run(app, run_past_timeout)
    assert time.monotonic() - started < 15
    assert job.get_status() == JobStatus.FAILED
    assert "JobTimeoutException" in job.latest_result().exc_string


def test_an_in_process_job_keeps_its_heartbeat_going(app):
    """Without beats, a job longer than the heartbeat TTL would look abandoned to other workers."""
    get_redis(app).flushdb()
    (job,) = _run(app, watch_own_heartbeat, job_monitoring_interval=1)
    assert job.get_status() == JobStatus.FINISHED
    assert job.return_value() is True
