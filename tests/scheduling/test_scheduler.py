"""The scheduler: reconciled fixed ids, cron in SCHEDULER_TIMEZONE, JSON jobs a real
worker runs, and two scheduler processes enqueueing each job once per period."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from rq_scheduler import Scheduler

from deltacrown.ops.schedule import JOBS_BY_NAME, RECURRING_JOBS, JobSpec, scheduler_job_id
from deltacrown.ops.runs import LAST_RUN_KEY
from deltacrown.ops.scheduler import (HEARTBEAT_KEY, make_scheduler, read_heartbeat, reconcile,
                                      run_round, silence_utcnow_deprecation, use_scheduler_timezone)
from deltacrown.queue import fetch_job, get_queue, get_redis
from tests.support.processes import WaitTimeout, wait_for

ROOT = Path(__file__).resolve().parents[2]
SET = Scheduler.scheduled_jobs_key
# The recurring jobs whose functions this branch has (others are other parts' files).
OWN = tuple(JOBS_BY_NAME[n] for n in ("send-digests", "clean-expired-invites", "expire-sponsors",
                                      "process-promotions"))


@pytest.fixture
def redis_only(database_url):
    if database_url.startswith("postgresql"):
        pytest.skip("Redis and processes only; the database plays no part")


@pytest.fixture
def local_tz():
    """Restore the process's time zone after a test changes it."""
    old = os.environ.get("TZ")
    silence_utcnow_deprecation()
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


def scheduled_ids(connection) -> list[str]:
    return sorted(m.decode() for m in connection.zrange(SET, 0, -1))


def test_reconcile_registers_fixed_ids_without_duplicates(app, local_tz):
    use_scheduler_timezone("UTC")
    with app.app_context():
        connection = get_redis()
        scheduler = make_scheduler(app)
        first = reconcile(scheduler)
        assert sorted(first["added"]) == sorted(scheduler_job_id(s) for s in RECURRING_JOBS)
        scores = dict(connection.zrange(SET, 0, -1, withscores=True))
        again = reconcile(make_scheduler(app))  # a restart, or a second scheduler starting
        assert again["added"] == again["replaced"] == again["removed"] == []
        assert dict(connection.zrange(SET, 0, -1, withscores=True)) == scores  # next runs kept
        assert scheduled_ids(connection) == sorted(f"recurring-{s.name}" for s in RECURRING_JOBS)

        # The table changes: one cron changed, one job dropped, one added.
        changed = JobSpec("send-digests", "deltacrown.notifications.jobs.send_digests", "d", cron="30 * * * *")
        added = JobSpec("brand-new", "deltacrown.teams.jobs.expire_sponsors", "d", cron="0 5 * * *")
        table = [changed, added] + [s for s in RECURRING_JOBS if s.name not in ("send-digests", "expire-sponsors")]
        report = reconcile(scheduler, table)
        assert report["replaced"] == ["recurring-send-digests"]
        assert report["added"] == ["recurring-brand-new"]
        assert report["removed"] == ["recurring-expire-sponsors"]
        assert scheduled_ids(connection) == sorted(f"recurring-{s.name}" for s in table)
        assert not connection.exists("rq:job:recurring-expire-sponsors")
        job = get_queue("scheduled").fetch_job("recurring-send-digests")
        assert job.meta["cron_string"] == "30 * * * *"
        next_run = datetime.fromtimestamp(connection.zscore(SET, "recurring-send-digests"), timezone.utc)
        assert next_run.minute == 30


def test_each_round_registers_the_recurring_jobs_again_after_redis_lost_them(app, local_tz):
    use_scheduler_timezone("UTC")
    with app.app_context():
        connection = get_redis()
        a, b = make_scheduler(app, name="scheduler-a"), make_scheduler(app, name="scheduler-b")
        reconcile(a)
        registered = scheduled_ids(connection)
        assert run_round(a, 60)  # nothing missing
        assert scheduled_ids(connection) == registered == sorted(scheduler_job_id(s) for s in RECURRING_JOBS)

        connection.flushall()  # Redis restarted empty
        # B is mid-round (holds the lock): A's round beats but leaves the jobs to B.
        assert b.acquire_lock()
        assert not run_round(a, 60)
        assert scheduled_ids(connection) == [] and read_heartbeat(connection)["name"] == "scheduler-a"
        b.remove_lock()
        assert run_round(a, 60)
        assert scheduled_ids(connection) == sorted(scheduler_job_id(s) for s in RECURRING_JOBS)
        assert run_round(b, 60)  # the other scheduler finds nothing missing, adds no copy
        assert scheduled_ids(connection) == sorted(scheduler_job_id(s) for s in RECURRING_JOBS)
        assert 0 < connection.ttl(HEARTBEAT_KEY) and read_heartbeat(connection)["name"] == "scheduler-b"


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Tokyo"])
def test_cron_times_are_in_the_scheduler_time_zone(app, local_tz, zone):
    use_scheduler_timezone(zone)
    spec = JobSpec("expire-sponsors", "deltacrown.teams.jobs.expire_sponsors", "d", cron="0 3 * * *")
    with app.app_context():
        reconcile(make_scheduler(app), [spec])
        score = get_redis().zscore(SET, "recurring-expire-sponsors")
    at = datetime.fromtimestamp(score, ZoneInfo(zone))
    assert (at.hour, at.minute) == (3, 0)
    assert datetime.fromtimestamp(score, timezone.utc).hour != 3
    assert timedelta(0) < at - datetime.now(ZoneInfo(zone)) <= timedelta(days=1)


def test_scheduler_stores_json_jobs_that_a_real_worker_runs(app, run_jobs, local_tz):
    use_scheduler_timezone("UTC")
    silence_utcnow_deprecation()
    with app.app_context():
        connection = get_redis()
        scheduler = make_scheduler(app)
        reconcile(scheduler, OWN)
        data = connection.hget("rq:job:recurring-send-digests", "data")
        assert json.loads(zlib.decompress(data)) [0] == "deltacrown.ops.scheduler.run_recurring"
        # Time passes: every job is due.
        connection.zadd(SET, {scheduler_job_id(s): time.time() - 1 for s in OWN})
        scheduler.enqueue_jobs()
        assert get_queue("scheduled").count == len(OWN)
    run_jobs()
    with app.app_context():
        runs = {k.decode(): json.loads(v) for k, v in connection.hgetall(LAST_RUN_KEY).items()}
        assert sorted(runs) == sorted(s.name for s in OWN)
        for name, run in runs.items():
            assert (run["status"], run["trigger"], run["error"]) == ("finished", "schedule", None), name
            job = fetch_job(run["job_id"])
            assert job.get_status() == "finished" and job.meta["job_name"] == name
        # ... and the triggers are scheduled again for their next period.
        now = time.time()
        assert all(connection.zscore(SET, scheduler_job_id(s)) > now for s in OWN)
        assert get_queue("scheduled").fetch_job("recurring-send-digests").get_status() == "finished"


def test_a_trigger_whose_job_is_missing_is_reported_failed(app, run_jobs, local_tz, monkeypatch):
    use_scheduler_timezone("UTC")
    missing = JobSpec("process-promotions", "deltacrown.teams.jobs.no_such_function", "d", cron="0 * * * *")
    with app.app_context():
        connection = get_redis()
        scheduler = make_scheduler(app)
        reconcile(scheduler, [missing])
        connection.zadd(SET, {"recurring-process-promotions": time.time() - 1})
        scheduler.enqueue_jobs()
    import deltacrown.ops.schedule as schedule

    monkeypatch.setitem(schedule.JOBS_BY_NAME, "process-promotions", missing)
    run_jobs()
    run = json.loads(connection.hget(LAST_RUN_KEY, "process-promotions"))
    assert run["status"] == "failed" and "not available" in run["error"]
    assert run["job_id"] == "recurring-process-promotions"
    assert connection.exists("rq:job:recurring-process-promotions")  # a failed trigger stays scheduled
    assert connection.zscore(SET, "recurring-process-promotions") > time.time()


SCHEDULER_SCRIPT = """
import sys
from deltacrown import create_app
from deltacrown.ops.scheduler import run_scheduler
app = create_app()
app.config["SCHEDULER_INTERVAL"] = 1
sys.exit(run_scheduler(app, burst=True))
"""


def scheduler_env(redis_url, tmp_path):
    return {**os.environ, "REDIS_URL": redis_url, "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite'}",
            "PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING"}


def test_two_scheduler_processes_enqueue_each_job_once_per_period(app, redis_url, tmp_path, local_tz, redis_only):
    with app.app_context():
        connection = get_redis()
        reconcile(make_scheduler(app))
    env = scheduler_env(redis_url, tmp_path)
    queue_key = "rq:queue:scheduled"
    for period in range(3):
        # The period is over: every recurring job is due (scores in the past).
        connection.zadd(SET, {scheduler_job_id(s): time.time() - 5 for s in RECURRING_JOBS})
        period_started = time.time()
        procs = [subprocess.Popen([sys.executable, "-c", SCHEDULER_SCRIPT], env=env, cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
        for proc in procs:
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0, out.decode()
            assert b"Warning" not in out, out.decode()  # rq-scheduler's utcnow() warnings are filtered
        enqueued = sorted(m.decode() for m in connection.lrange(queue_key, 0, -1))
        assert enqueued == sorted(scheduler_job_id(s) for s in RECURRING_JOBS), f"period {period}"
        # Each job moved on to a later run (compared with when the schedulers ran, not with
        # "now": the every-minute job's next run may already be due on a loaded machine).
        assert all(connection.zscore(SET, scheduler_job_id(s)) > period_started for s in RECURRING_JOBS)
        connection.delete(queue_key)  # the workers took them
    assert scheduled_ids(connection) == sorted(scheduler_job_id(s) for s in RECURRING_JOBS)


def test_a_scheduler_waits_while_another_holds_the_lock(app, redis_url, tmp_path, local_tz, redis_only):
    """Scheduler A is in the middle of moving jobs (holds the lock); B starts meanwhile."""
    use_scheduler_timezone("UTC")
    with app.app_context():
        connection = get_redis()
        a = make_scheduler(app, name="scheduler-a", interval=1)
        reconcile(a)
        connection.zadd(SET, {scheduler_job_id(s): time.time() - 5 for s in RECURRING_JOBS})
        assert a.acquire_lock()
        b = subprocess.Popen([sys.executable, "-c", SCHEDULER_SCRIPT], env=scheduler_env(redis_url, tmp_path),
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        # B retries every second while the lock is held and says so; wait (bounded) for that.
        seen = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = b.stdout.readline()
            seen.append(line)
            if b"Lock already taken" in line or not line:
                break
        assert b"Lock already taken" in seen[-1], b"".join(seen).decode()
        assert connection.llen("rq:queue:scheduled") == 0
        a.enqueue_jobs()
        a.remove_lock()
        out, _ = b.communicate(timeout=60)
    assert b.returncode == 0, out.decode()
    enqueued = sorted(m.decode() for m in connection.lrange("rq:queue:scheduled", 0, -1))
    assert enqueued == sorted(scheduler_job_id(s) for s in RECURRING_JOBS)


def test_worker_and_scheduler_processes_end_to_end(app, redis_url, database_url, tmp_path, local_tz, redis_only):
    """`python worker.py --scheduler` enqueues due jobs; `python worker.py` runs them (JSON, app context)."""
    use_scheduler_timezone("UTC")
    with app.app_context():
        connection = get_redis()
        reconcile(make_scheduler(app), OWN)  # as a previous scheduler run left them
        connection.zadd(SET, {scheduler_job_id(s): time.time() - 5 for s in OWN})  # and now they are due
    env = {**scheduler_env(redis_url, tmp_path), "DATABASE_URL": database_url}
    worker = subprocess.Popen([sys.executable, "worker.py"], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    scheduler = subprocess.Popen([sys.executable, "worker.py", "--scheduler"], env=env, cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def last_runs():
            return {k.decode(): json.loads(v) for k, v in connection.hgetall(LAST_RUN_KEY).items()}

        try:
            wait_for(lambda: all(last_runs().get(s.name, {}).get("status") == "finished" for s in OWN),
                     timeout=60, interval=0.2, message="every own job finished")
        except WaitTimeout:
            pass  # the assertion below names what did not finish
        runs = last_runs()
        assert {n: r["status"] for n, r in runs.items()} == {s.name: "finished" for s in OWN}
    finally:
        for proc in (scheduler, worker):
            proc.terminate()
        outputs = [proc.communicate(timeout=30)[0].decode() for proc in (scheduler, worker)]
    # The restart did not duplicate anything, and the full table is registered.
    assert scheduled_ids(connection) == sorted(scheduler_job_id(s) for s in RECURRING_JOBS), outputs
    assert "Warning" not in outputs[0], outputs[0]
