"""Failed jobs, "run now" and the job-health numbers, with a real RQ worker."""
from __future__ import annotations

import re

from rq.registry import FailedJobRegistry

from deltacrown.ops import stats
from deltacrown.queue import fetch_job, get_queue, get_redis

from . import jobs


def _failed_ids(app):
    with app.app_context():
        return FailedJobRegistry("default", connection=get_redis()).get_job_ids()


def test_requeue_turns_a_failed_job_into_a_finished_one(app, admin, run_jobs):
    with app.app_context():
        job = jobs.flaky.enqueue(7)
        run_jobs()
        assert job.get_status() == "failed"
    assert _failed_ids(app) == [job.id]
    html = admin.get("/ops").get_data(as_text=True)
    assert f"Requeue job {job.id}" in html and "flaky-may-succeed is not set yet" in html

    with app.app_context():
        get_redis().set(jobs.FLAKY_KEY, 1)
    response = admin.post(f"/ops/failed/{job.id}/requeue", headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert f"Job {job.id} (tests.ops.jobs.flaky) is back on the default queue." in response.get_data(as_text=True)
    assert _failed_ids(app) == []
    with app.app_context():
        assert job.get_status() == "queued"
        run_jobs()
        assert job.get_status() == "finished"
        assert fetch_job(job.id).return_value() == {"value": 7}


def test_requeue_of_a_job_that_no_longer_exists_says_so(app, admin, run_jobs):
    with app.app_context():
        job = jobs.fail.enqueue("gone soon")
        run_jobs()
        job.delete(remove_from_queue=False)  # its data expired, say; the registry may still list it
    response = admin.post(f"/ops/failed/{job.id}/requeue", headers={"HX-Request": "true"})
    assert f"Job {job.id} no longer exists" in response.get_data(as_text=True)
    # without HTMX: redirect back with the message flashed
    response = admin.post("/ops/failed/no-such-job/requeue", follow_redirects=True)
    assert response.status_code == 200
    assert "Job no-such-job no longer exists" in response.get_data(as_text=True)


def test_delete_and_requeue_all(app, admin, run_jobs):
    with app.app_context():
        doomed = jobs.fail.enqueue("delete me")
        again = [jobs.flaky.enqueue(i) for i in range(3)]
        run_jobs()
    assert len(_failed_ids(app)) == 4
    response = admin.post(f"/ops/failed/{doomed.id}/delete", headers={"HX-Request": "true"})
    assert f"Job {doomed.id} was deleted." in response.get_data(as_text=True)
    with app.app_context():
        assert fetch_job(doomed.id) is None
        get_redis().set(jobs.FLAKY_KEY, 1)
    response = admin.post("/ops/failed/requeue-all", headers={"HX-Request": "true"})
    assert "Requeued 3 failed jobs." in response.get_data(as_text=True)
    with app.app_context():
        run_jobs()
        assert [fetch_job(j.id).get_status() for j in again] == ["finished"] * 3
    assert _failed_ids(app) == []


def test_run_now_enqueues_the_right_job(app, admin, run_jobs, test_schedule):
    html = admin.get("/ops").get_data(as_text=True)
    assert "Run test-tick now" in html
    response = admin.post("/ops/jobs/test-tick/run", headers={"HX-Request": "true"})
    text = response.get_data(as_text=True)
    job_id = re.search(r"Started test-tick: job ([0-9a-f-]+) is on the default queue", text).group(1)
    with app.app_context():
        queue = get_queue("default")
        assert queue.get_job_ids() == [job_id]
        job = fetch_job(job_id)
        assert job.func_name == "tests.ops.jobs.tick"
        run_jobs()
        assert job.get_status() == "finished"
    # the recurring table now shows that run as the last one
    html = admin.get("/ops/recurring").get_data(as_text=True)
    row = re.search(r"test-tick</span>.*?</tr>", html, re.S).group(0)
    assert "finished" in row


def test_run_now_of_a_job_whose_code_is_missing_says_so(app, admin, test_schedule):
    response = admin.post("/ops/jobs/test-missing/run", headers={"HX-Request": "true"})
    text = response.get_data(as_text=True)
    assert "job test-missing is not available in this deployment (tests.ops.no_such_module.job)" in text
    with app.app_context():
        assert get_queue("default").count == 0
    assert admin.post("/ops/jobs/no-such-job/run").status_code == 404
    # a job that needs arguments is not started with none
    text = admin.post("/ops/jobs/test-double/run", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "test-double needs value: start it from the API" in text
    with app.app_context():
        assert get_queue("default").count == 0


def test_health_numbers_come_from_real_runs(app, admin, run_jobs):
    with app.app_context():
        succeeded = [jobs.succeed.enqueue(i) for i in range(3)]
        jobs.fail.enqueue("on purpose")
        run_jobs()
        health = stats.job_health(get_redis())
    by_func = {t.func: t for t in health.types}
    ok, bad = by_func["tests.ops.jobs.succeed"], by_func["tests.ops.jobs.fail"]
    assert (ok.runs, ok.finished, ok.failed, ok.success_rate, ok.success_level) == (3, 3, 0, 1.0, "ok")
    assert (bad.runs, bad.failed, bad.success_rate, bad.success_level) == (1, 1, 0.0, "alert")
    assert health.runs == 4 and health.failed == 1
    assert sum(h.finished for h in health.hours) == 3 and sum(h.failed for h in health.hours) == 1
    # durations: positive, p50 <= p95, and within what RQ itself measured for these runs
    with app.app_context():
        rq_seconds = [(j.ended_at - j.started_at).total_seconds() for j in (fetch_job(s.id) for s in succeeded)]
    assert 0 < ok.p50 <= ok.p95 <= max(rq_seconds)
    assert ok.p50_level == "ok" and ok.level == "ok" and bad.level == "alert"

    html = admin.get("/ops/live").get_data(as_text=True)
    row = re.search(r'<th scope="row" title="tests.ops.jobs.succeed">succeed</th>(.*?)</tr>', html, re.S).group(1)
    assert re.findall(r'<td class="num">(\d+)</td>', row) == ["3", "0"]
    assert "100.0% <span class=\"level level-ok\">ok</span>" in row
    row = re.search(r'<th scope="row" title="tests.ops.jobs.fail">fail</th>(.*?)</tr>', html, re.S).group(1)
    assert "0.0% <span class=\"level level-alert\">alert</span>" in row
    assert "Jobs per hour over the last 24 hours: 4 runs, 1 failed" in html


def test_thresholds():
    assert [stats.success_level(r) for r in (1.0, 0.99, 0.98, 0.95, 0.949)] == \
        ["ok", "ok", "warning", "warning", "alert"]
    assert [stats.duration_level(s) for s in (0.1, 4.99, 5.0, 30.0, 30.1)] == \
        ["ok", "ok", "warning", "warning", "alert"]
    assert [stats.queue_level(n) for n in (0, 99, 100, 1000, 1001)] == ["ok", "ok", "warning", "warning", "alert"]
    assert stats.percentile([1, 2, 3, 4], 50) == 2 and stats.percentile([1, 2, 3, 4], 95) == 4
    assert stats.percentile([], 50) is None


def test_recording_never_breaks_a_job(app, run_jobs, caplog):
    """A Redis error while recording is logged, and the job still finishes."""
    with app.app_context():
        # Make the recording's writes fail in real Redis: a key of the wrong type.
        get_redis().set(f"{stats.PREFIX}:types", "not a sorted set")
        job = jobs.succeed.enqueue(2)
        run_jobs()
        assert job.get_status() == "finished"
        assert fetch_job(job.id).return_value() == {"doubled": 4}
    assert "could not record the run of tests.ops.jobs.succeed" in caplog.text


def test_run_records_are_bounded(app):
    with app.app_context():
        connection = get_redis()
        for i in range(stats.SAMPLE_CAP + 5):
            stats.record_run(connection, "x.job", f"id{i}", 1_000_000.0 + i, 0.5, ok=True)
        assert connection.zcard(f"{stats.PREFIX}:runs:x.job") == stats.SAMPLE_CAP
        assert 0 < connection.ttl(f"{stats.PREFIX}:runs:x.job") <= stats.RETENTION_SECONDS
        assert 0 < connection.ttl(f"{stats.PREFIX}:hour:{stats.hour_of(1_000_000.0)}") <= stats.RETENTION_SECONDS + 3600


def test_recurring_jobs_show_the_schedulers_next_run_in_the_admins_time_zone(app, admin, test_schedule,
                                                                               monkeypatch):
    import warnings
    from datetime import datetime, timezone

    from rq_scheduler import Scheduler

    from deltacrown.ops import schedule

    # rq 3 accepts only [A-Za-z0-9_-] in job ids, so "recurring:<name>" cannot be
    # registered; the scheduler part owns the id format, the dashboard reads whatever it is.
    monkeypatch.setattr(schedule, "scheduler_job_id", lambda spec: f"recurring-{spec.name}")
    scheduler_job_id = schedule.scheduler_job_id
    tick = test_schedule[0]
    with app.app_context(), warnings.catch_warnings():
        # rq-scheduler's own calls (naive utcnow, crontab without a zone), not ours.
        warnings.filterwarnings("ignore", "datetime.datetime.utcnow", DeprecationWarning)
        warnings.filterwarnings("ignore", "Version 0.22.0\\+ of crontab", FutureWarning)
        scheduler = Scheduler(queue_name="scheduled", connection=get_redis())
        scheduler.cron(tick.cron, func=jobs.tick, id=scheduler_job_id(tick), queue_name="scheduled")
        next_at = dict((j.id, t) for j, t in scheduler.get_jobs(with_times=True))[scheduler_job_id(tick)]
    next_at = next_at.replace(tzinfo=timezone.utc) if next_at.tzinfo is None else next_at
    from zoneinfo import ZoneInfo

    shown = next_at.astimezone(ZoneInfo("Europe/Berlin")).strftime("%Y-%m-%d %H:%M:%S %Z")
    html = admin.get("/ops/recurring").get_data(as_text=True)
    row = re.search(r"test-tick</span>.*?</tr>", html, re.S).group(0)
    assert shown in row and "not registered" not in row
    other = re.search(r"test-missing</span>.*?</tr>", html, re.S).group(0)
    assert "not registered with the scheduler" in other
    assert re.search(r"\d{4}-\d\d-\d\d 0?[45]:00:00 CES?T", other)  # 04:00 UTC in Berlin
    assert isinstance(next_at, datetime)
