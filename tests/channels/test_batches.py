"""Sends go out in batches (one send_deliveries job per DELIVERY_BATCH_SIZE deliveries):
each delivery is still sent exactly once, and one that fails temporarily continues as its
own send_delivery job on the retry schedule without holding up the rest."""
from __future__ import annotations

from sqlalchemy import select

from deltacrown.notifications.delivery_jobs import send_deliveries
from deltacrown.extensions import db
from deltacrown.models import Delivery
from deltacrown.notifications.service import enqueue_sends
from deltacrown.queue import QUEUE_SENDS, get_queue


def _email_deliveries(users, make, names):
    ids = []
    for name in names:
        uid = users.create(name)
        ids.append(make.delivery("email", f"{name}@example.com", notification_id=make.notification(uid), user_id=uid))
    return ids


def test_enqueue_sends_makes_one_job_per_batch(app, users, make):
    app.config["DELIVERY_BATCH_SIZE"] = 2
    ids = _email_deliveries(users, make, ["ada", "ben", "cal", "dan", "eli"])
    with app.app_context():
        enqueue_sends(ids)
        jobs = get_queue(QUEUE_SENDS).get_jobs()
    assert [job.func_name for job in jobs] == ["deltacrown.notifications.delivery_jobs.send_deliveries"] * 3
    assert [job.args[0] for job in jobs] == [ids[0:2], ids[2:4], ids[4:5]]


def test_a_temporary_failure_leaves_the_batch_and_is_retried_alone(app, users, make, run_jobs, smtp_server):
    app.config["DELIVERY_RETRY_INTERVALS"] = [0, 0]
    ids = _email_deliveries(users, make, ["fay", "gus", "hal"])
    smtp_server.defer("gus@example.com", times=2)  # the batch's try and the first retry
    with app.app_context():
        enqueue_sends(ids)
    run_jobs()
    received = sorted(m.rcpt_tos[0] for m in smtp_server.wait_for(3))
    assert received == ["fay@example.com", "gus@example.com", "hal@example.com"]  # each exactly once
    fay, gus, hal = (make.get(i) for i in ids)
    assert (fay.status, fay.attempts) == ("sent", 1) and (hal.status, hal.attempts) == ("sent", 1)
    assert (gus.status, gus.attempts) == ("sent", 3)  # batch try + 2 retries of its own job


def test_without_retries_the_batch_try_is_final(app, users, make, run_jobs, smtp_server):
    app.config["DELIVERY_RETRY_INTERVALS"] = []
    ids = _email_deliveries(users, make, ["ivy", "jon"])
    smtp_server.defer("ivy@example.com", times=1)
    with app.app_context():
        enqueue_sends(ids)
    run_jobs()
    ivy, jon = (make.get(i) for i in ids)
    assert ivy.status == "failed" and "451" in ivy.last_error and jon.status == "sent"


def test_rerunning_a_batch_sends_nothing_twice(app, users, make, run_jobs, smtp_server):
    ids = _email_deliveries(users, make, ["kim", "lea"])
    with app.app_context():
        first = send_deliveries(ids)
        again = send_deliveries(ids)
        statuses = db.session.scalars(select(Delivery.status).where(Delivery.id.in_(ids))).all()
    assert first == {"sent": 2} and again == {"already_sent": 2}
    assert statuses == ["sent", "sent"] and len(smtp_server.wait_for(2)) == 2


def test_a_batch_past_its_time_budget_hands_the_rest_to_a_new_batch(app, users, make, smtp_server):
    from deltacrown.notifications.deliveries import send_batch

    ids = _email_deliveries(users, make, ["max", "ned", "oli"])
    continued = []
    with app.app_context():
        counts = send_batch(ids, retry_later=None, budget_seconds=0, continue_later=continued.append)
    # The first send always goes out; past the budget the rest waits for the next batch job.
    assert counts == {"sent": 1, "continued_in_new_batch": 2} and continued == [ids[1:]]
    assert [make.get(i).status for i in ids] == ["sent", "pending", "pending"]
