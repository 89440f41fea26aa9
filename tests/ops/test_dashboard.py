"""The /ops dashboard: access, rendering from real RQ state, and Redis being down."""
from __future__ import annotations

import os
import re

from sqlalchemy import insert

from deltacrown.economy.models import CoinTransaction
from deltacrown.extensions import db
from deltacrown.notifications.models import Delivery
from deltacrown.outbox.models import OutboxEvent
from deltacrown.timeutil import utcnow
from tests.support.processes import wait_for

from . import jobs


def test_logged_out_visitor_goes_to_login_and_back(client):
    response = client.get("/ops")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]
    assert "next=%2Fops" in response.headers["Location"]


def test_non_admin_gets_403(client, users, auth):
    users.create("player")
    auth.login("player")
    assert client.get("/ops").status_code == 403
    assert client.get("/ops/live").status_code == 403
    assert client.post("/ops/failed/requeue-all").status_code == 403


def test_partial_refresh_after_logout_redirects_the_page(client):
    response = client.get("/ops/live", headers={"HX-Request": "true"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"].startswith("/login")


def test_dashboard_shows_queues_failed_jobs_deliveries_and_payouts(app, admin, run_jobs, users):
    with app.app_context():
        jobs.fail.enqueue("boom <b>not markup</b>")
        run_jobs()
        jobs.succeed.enqueue(1)  # left waiting
        player = users.create("player")
        db.session.add_all([
            Delivery(dedup_key="d1", channel="email", target="a@example.com", status="sent", attempts=2),
            Delivery(dedup_key="d2", channel="email", target="b@example.com", status="failed", attempts=5),
            Delivery(dedup_key="d3", channel="discord", target="team:1", status="pending", attempts=0),
            Delivery(dedup_key="d4", channel="email", target="c@example.com", status="skipped", attempts=1),
            CoinTransaction(user_id=player, amount=1000, transaction_type="payout",
                            dedup_key="payout:t1", meta={"place": 1}),
        ])
        db.session.commit()
        # An event whose relay after commit did not happen (written outside the session, which
        # the relay hook does not watch): it waits for the sweep, and the dashboard must show it.
        with db.engine.begin() as conn:
            conn.execute(insert(OutboxEvent).values(type="invite_sent", payload={"invite_id": 1},
                                                    created_at=utcnow()))
    html = admin.get("/ops").get_data(as_text=True)
    assert "Operations" in html
    queue_row = re.search(r"<th scope=\"row\">default</th>(.*?)</tr>", html, re.S).group(1)
    assert re.findall(r'<td class="num">(\d+)</td>', queue_row) == ["1", "0", "1", "0"]  # waiting, running, failed, scheduled
    assert "tests.ops.jobs.fail" in html
    assert "ValueError: boom &lt;b&gt;not markup&lt;/b&gt;" in html  # escaped, never markup
    assert "Traceback" in html
    assert "payout:t1" in html
    assert "No dedup key pays a user twice (1 key checked)" in html
    assert re.search(r"1 event waiting to be relayed;\s+the oldest since 2\d{3}-", html)
    assert "<svg" in html and "Delivery success per channel: in_app: no deliveries; email: 50.0% success" in html
    email_row = re.search(r'<section id="deliveries".*?<th scope="row">email</th>(.*?)</tr>', html, re.S).group(1)
    # sent, failed, bounced, skipped (the player withdrew consent: neither sent nor a failure), suppressed,
    # pending, retried
    assert re.findall(r'<td class="num">(\d+)</td>', email_row) == ["1", "1", "0", "1", "0", "0", "2"]
    # the outcome is in words, not colour alone
    assert re.search(r'<span class="level level-ok">ok</span>', html)


def test_duplicate_payout_is_flagged(app, admin, users):
    with app.app_context():
        player = users.create("player")
        db.session.add_all([CoinTransaction(user_id=player, amount=500, transaction_type="payout",
                                            dedup_key="payout:t9", meta={}) for _ in range(2)])
        db.session.commit()
    html = admin.get("/ops/live").get_data(as_text=True)
    assert "Some dedup keys paid a user more than once" in html
    assert f"payout:t9</span>: user {player}, 2 times" in html


def test_progress_of_a_running_job_is_a_progress_bar(app, admin, worker_process):
    from deltacrown.queue import get_redis

    with app.app_context():
        job = jobs.with_progress.enqueue(3, 10)

        def live_with_progress():
            assert worker_process.proc.poll() is None, "the worker died before the job showed its progress"
            html = admin.get("/ops/live").get_data(as_text=True)
            return html if '<progress value="3" max="10">' in html else None

        html = wait_for(live_with_progress, timeout=30, interval=0.1, message="the job's progress bar")
        assert "3 of 10 (30%)" in html
        assert "tests.ops.jobs.with_progress" in html
        # the worker that runs it is listed with its current job
        assert job.id in html and "busy" in html
        get_redis().set(jobs.RELEASE_KEY, 1)
        wait_for(lambda: job.get_status(refresh=True) in ("finished", "failed"), timeout=30, message="the job to end")
        assert job.get_status() == "finished"


def test_dashboard_renders_when_redis_is_down(app_without_redis):
    client = app_without_redis.test_client()
    client.post("/login", data={"username": "root", "password": "root-password"})
    response = client.get("/ops")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Redis is unreachable" in html
    assert "failed jobs cannot be listed" in html
    assert "No dedup key pays a user twice" in html  # database sections still work
    # the recurring jobs still show their schedule (computed from cron)
    assert "recompute-rankings" in html
    assert "not registered with the scheduler" in html
    # and an action says nothing was done
    response = client.post("/ops/failed/requeue-all", headers={"HX-Request": "true"})
    assert "Nothing was done: Redis is unreachable" in response.get_data(as_text=True)


def test_dashboard_sql_statements_do_not_grow_with_the_data(app, admin, users, count_queries):
    def statements():
        with count_queries() as q:
            assert admin.get("/ops/live").status_code == 200
        return q.count

    with app.app_context():
        player = users.create("player")
        db.session.add(CoinTransaction(user_id=player, amount=1, transaction_type="payout", dedup_key="k0", meta={}))
        db.session.commit()
    few = statements()
    with app.app_context():
        more = [users.create(f"player{i}") for i in range(5)]
        db.session.add_all([CoinTransaction(user_id=u, amount=10, transaction_type="payout", dedup_key=f"k{u}",
                                            meta={}) for u in more for _ in range(4)])
        db.session.add_all([Delivery(dedup_key=f"d{i}", channel="email", target="x@example.com", status="sent")
                            for i in range(20)])
        db.session.execute(insert(OutboxEvent), [{"type": "invite_sent", "payload": {}, "created_at": utcnow()}
                                                 for _ in range(10)])
        db.session.commit()
    assert statements() == few


def _recurring_row(html: str, name: str) -> str:
    return re.search(rf"{name}</span>.*?</tr>", html, re.S).group(0)


def test_dashboard_shows_the_scheduler_and_flags_an_overdue_job(app, admin, test_schedule):
    import time

    from rq_scheduler import Scheduler

    from deltacrown.ops.scheduler import make_scheduler, run_round
    from deltacrown.queue import get_redis

    html = admin.get("/ops/recurring").get_data(as_text=True)
    assert "no heartbeat: no scheduler process is running" in html

    with app.app_context():
        assert run_round(make_scheduler(app), app.config["SCHEDULER_INTERVAL"])  # a real round: beat, register
        connection = get_redis()
    html = admin.get("/ops").get_data(as_text=True)
    state = re.search(r'<p id="scheduler-state">(.*?)</p>', html, re.S).group(1)
    assert "running, last heartbeat" in state and f"pid {os.getpid()}" in state
    assert "overdue" not in html

    # The scheduler stops moving jobs: test-tick's next run stays in the past.
    connection.zadd(Scheduler.scheduled_jobs_key, {"recurring-test-tick": time.time() - 3600})
    html = admin.get("/ops/recurring").get_data(as_text=True)
    assert "overdue by 1 h 0 min" in _recurring_row(html, "test-tick")
    assert "overdue" not in _recurring_row(html, "test-missing")

    # ... and its heartbeat ages past the threshold.
    app.config["SCHEDULER_HEARTBEAT_STALE_SECONDS"] = 1
    html = wait_for(lambda: "stale: last heartbeat" in (h := admin.get("/ops/recurring").get_data(as_text=True))
                    and h, timeout=10, message="the dashboard to call the scheduler stale")
    assert "dead or stuck" in html
