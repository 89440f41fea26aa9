"""Retention runs by itself: `cleanup-notifications` and `prune-records` are daily
recurring jobs, run by the real scheduler trigger and a real worker; "run now" needs no
arguments; deletion goes in batches of a constant number of statements."""
from __future__ import annotations

import json
import re
import time
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import bindparam, event, func, insert, select, text

from deltacrown.extensions import db
from deltacrown.notifications.models import (Delivery, Notification, NotificationDigest,
                                             notification_digest_items)
from deltacrown.ops.schedule import JOBS_BY_NAME, scheduler_job_id
from deltacrown.ops.runs import LAST_RUN_KEY
from deltacrown.ops.scheduler import make_scheduler, reconcile, silence_utcnow_deprecation
from deltacrown.outbox.models import OutboxEvent
from deltacrown.queue import fetch_job, get_queue, get_redis

UTC = timezone.utc
RETENTION = ("cleanup-notifications", "prune-records")


def ago(days: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


def seed(app, uid: int) -> dict:
    """One row of every kind, old and recent, finished and not; returns their ids by name."""
    with app.app_context():
        def event_row(name, created, handled=True):
            e = OutboxEvent(type="roster_changed", payload={"n": name}, created_at=created,
                            relayed_at=created, handled_at=created if handled else None)
            db.session.add(e)
            db.session.flush()
            return e.id

        def notification(title, created, read=True):
            n = Notification(user_id=uid, type="announcement", title=title, is_read=read, created_at=created)
            db.session.add(n)
            db.session.flush()
            return n.id

        def delivery(name, created, status, event_id=None, notification_id=None):
            d = Delivery(dedup_key=f"test:{name}", channel="email", target="alice@example.com", user_id=uid,
                         status=status, created_at=created, event_id=event_id, notification_id=notification_id,
                         payload={"type": "announcement", "title": name})
            db.session.add(d)
            db.session.flush()
            return d.id

        def digest(day, created, sent, notification_ids=()):
            d = NotificationDigest(user_id=uid, digest_date=day, is_sent=sent, created_at=created,
                                   sent_at=created if sent else None)
            db.session.add(d)
            db.session.flush()
            if notification_ids:
                db.session.execute(insert(notification_digest_items),
                                   [{"digest_id": d.id, "notification_id": n} for n in notification_ids])
            return d.id

        ids = {
            "n_old_read": notification("old read", ago(120)),
            "n_old_unread": notification("old unread", ago(120), read=False),
            "n_recent_read": notification("recent read", ago(10)),
        }
        ids.update(
            e_old_handled=event_row("old handled", ago(120)),
            e_old_sent_delivery=event_row("old, its delivery sent", ago(120)),
            e_old_pending_delivery=event_row("old, its delivery pending", ago(120)),
            e_old_unhandled=event_row("old unhandled", ago(120), handled=False),
            e_recent_handled=event_row("recent handled", ago(10)),
        )
        ids.update(
            d_old_sent=delivery("old sent", ago(120), "sent", event_id=ids["e_old_sent_delivery"]),
            d_old_failed=delivery("old failed", ago(100), "failed", notification_id=ids["n_old_unread"]),
            d_old_pending=delivery("old pending", ago(120), "pending", event_id=ids["e_old_pending_delivery"]),
            d_recent_sent=delivery("recent sent", ago(10), "sent"),
        )
        ids.update(
            g_old_sent=digest(ago(120).date(), ago(120), True, [ids["n_old_unread"], ids["n_recent_read"]]),
            g_old_unsent=digest(ago(110).date(), ago(110), False),
            g_recent_sent=digest(ago(10).date(), ago(10), True, [ids["n_recent_read"]]),
        )
        # The newest rows are recent, as they always are in a live database.
        ids["e_newest"] = event_row("newest", ago(0))
        ids["d_newest"] = delivery("newest", ago(0), "sent")
        ids["g_newest"] = digest(ago(0).date() + timedelta(days=1), ago(0), True)
        db.session.commit()
    return ids


def remaining(app) -> dict:
    with app.app_context():
        return {
            "notifications": sorted(db.session.scalars(select(Notification.id))),
            "events": sorted(db.session.scalars(select(OutboxEvent.id))),
            "deliveries": sorted(db.session.scalars(select(Delivery.id))),
            "digests": sorted(db.session.scalars(select(NotificationDigest.id))),
            "digest_items": sorted(tuple(r) for r in db.session.execute(select(notification_digest_items))),
            # rows pointing at something deleted (SQLite does not enforce foreign keys here)
            "orphans": db.session.scalar(text(
                "SELECT (SELECT count(*) FROM deliveries d WHERE d.event_id IS NOT NULL AND NOT EXISTS "
                "        (SELECT 1 FROM outbox_events e WHERE e.id = d.event_id))"
                " + (SELECT count(*) FROM notification_digest_items i WHERE NOT EXISTS "
                "        (SELECT 1 FROM notification_digests g WHERE g.id = i.digest_id))"
                " + (SELECT count(*) FROM notification_digest_items i WHERE NOT EXISTS "
                "        (SELECT 1 FROM notifications n WHERE n.id = i.notification_id))")),
        }


def test_retention_jobs_are_registered_daily_by_reconcile(app, client, users):
    silence_utcnow_deprecation()
    users.create("admin", admin=True)
    with app.app_context():
        connection = get_redis()
        report = reconcile(make_scheduler(app))
        for name in RETENTION:
            job_id = scheduler_job_id(JOBS_BY_NAME[name])
            assert job_id in report["added"]
            assert connection.zscore(make_scheduler(app).scheduled_jobs_key, job_id) is not None
            cron = get_queue("scheduled").fetch_job(job_id).meta["cron_string"]
            minute, hour, *every_day = cron.split()
            assert minute.isdigit() and hour.isdigit() and every_day == ["*", "*", "*"], cron
    listed = {j["name"]: j for j in client.get("/api/v1/jobs", headers=users.headers("admin")).json["items"]}
    for name in RETENTION:
        assert listed[name]["recurring"] is True and listed[name]["next_run_at"] is not None


def test_the_daily_runs_delete_exactly_what_is_old_and_finished(app, users, run_jobs):
    uid = users.create("alice")
    ids = seed(app, uid)
    silence_utcnow_deprecation()
    with app.app_context():
        connection = get_redis()
        scheduler = make_scheduler(app)
        reconcile(scheduler)
        # The day comes: both retention triggers are due (and only they).
        connection.zadd(scheduler.scheduled_jobs_key,
                        {scheduler_job_id(JOBS_BY_NAME[n]): time.time() - 1 for n in RETENTION})
        scheduler.enqueue_jobs()
    run_jobs()  # the triggers start the real jobs, which the same burst runs
    with app.app_context():
        runs = {k.decode(): v for k, v in connection.hgetall(LAST_RUN_KEY).items()}
        assert set(RETENTION) <= set(runs)  # (another job is due only if a cron minute just began)
        results = {}
        for name in RETENTION:
            run = json.loads(runs[name])
            assert (run["status"], run["trigger"], run["error"]) == ("finished", "schedule", None), run
            results[name] = fetch_job(run["job_id"]).return_value()
    assert results["cleanup-notifications"]["deleted"] == 1
    assert {k: results["prune-records"][k] for k in ("deliveries", "outbox_events", "digests", "days")} == {
        "deliveries": 2, "outbox_events": 2, "digests": 2, "days": 90}

    left = remaining(app)
    assert left["notifications"] == sorted([ids["n_old_unread"], ids["n_recent_read"]])
    assert left["events"] == sorted([ids["e_old_pending_delivery"], ids["e_old_unhandled"],
                                     ids["e_recent_handled"], ids["e_newest"]])
    assert left["deliveries"] == sorted([ids["d_old_pending"], ids["d_recent_sent"], ids["d_newest"]])
    assert left["digests"] == [ids["g_recent_sent"], ids["g_newest"]]
    assert left["digest_items"] == [(ids["g_recent_sent"], ids["n_recent_read"])]
    assert left["orphans"] == 0


def test_run_now_without_arguments_from_the_dashboard_and_the_api(app, client, users, auth, run_jobs):
    uid = users.create("alice")
    users.create("root", admin=True)
    ids = seed(app, uid)
    assert auth.login("root").status_code == 302
    html = client.get("/ops").get_data(as_text=True)
    for name in RETENTION:
        assert f"Run {name} now" in html
    text_ = client.post("/ops/jobs/cleanup-notifications/run", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert re.search(r"Started cleanup-notifications: job [0-9a-f-]+ is on the scheduled queue", text_), text_
    response = client.post("/api/v1/jobs/prune-records/run", headers=users.headers("root"))
    assert response.status_code == 202, response.json
    run_jobs()
    status = client.get(f"/api/v1/jobs/runs/{response.json['job_id']}", headers=users.headers("root")).json
    assert status["status"] == "finished" and status["result"]["days"] == 90
    left = remaining(app)
    assert ids["n_old_read"] not in left["notifications"] and ids["n_recent_read"] in left["notifications"]
    assert left["deliveries"] == sorted([ids["d_old_pending"], ids["d_recent_sent"], ids["d_newest"]])
    # ... and with an argument: a shorter age reaches the recent rows too (the newest rows stay).
    response = client.post("/api/v1/jobs/prune-records/run", json={"days": 5}, headers=users.headers("root"))
    assert response.status_code == 202
    run_jobs()
    left = remaining(app)
    assert left["deliveries"] == [ids["d_old_pending"], ids["d_newest"]]
    assert left["digests"] == [ids["g_newest"]]
    assert left["events"] == sorted([ids["e_old_pending_delivery"], ids["e_old_unhandled"], ids["e_newest"]])
    assert client.post("/api/v1/jobs/prune-records/run", json={"days": 0},
                       headers=users.headers("root")).status_code == 422


def test_retention_days_setting_and_cli(app, users, runner):
    uid = users.create("alice")
    ids = seed(app, uid)
    app.config["RETENTION_DAYS"] = 200  # nothing is that old
    result = runner.invoke(args=["prune-records"])
    assert result.exit_code == 0, result.output
    assert "Deleted 0 finished deliveries, 0 handled outbox event(s) and 0 digest(s) older than 200 days." \
        in result.output
    result = runner.invoke(args=["prune-records", "--days", "105"])
    assert result.exit_code == 0, result.output
    assert "Deleted 1 finished deliveries, 2 handled outbox event(s) and 2 digest(s) older than 105 days." \
        in result.output
    assert ids["d_old_failed"] in remaining(app)["deliveries"]  # 100 days old
    result = runner.invoke(args=["prune-records", "--days", "0"])
    assert result.exit_code == 2 and "--days" in result.output


def _add_old_rows(app, uid: int, n: int, start: int) -> None:
    """n old finished deliveries, n old handled events and n old sent digests, in one statement each."""
    with app.app_context():
        created = bindparam("old", ago(200), type_=Delivery.created_at.type)
        seq = f"WITH RECURSIVE seq(i) AS (SELECT {start} UNION ALL SELECT i + 1 FROM seq WHERE i < {start + n - 1})"
        day = ("DATE '1900-01-01' + i" if db.engine.dialect.name == "postgresql"
               else "date('1900-01-01', '+' || i || ' days')")
        db.session.execute(text(
            f"INSERT INTO deliveries (dedup_key, user_id, channel, target, status, attempts, created_at) "
            f"{seq} SELECT 'bulk:' || i, :uid, 'email', 'x@example.com', 'sent', 1, :old FROM seq"
        ).bindparams(created), {"uid": uid})
        db.session.execute(text(
            f"INSERT INTO outbox_events (type, payload, created_at, relayed_at, handled_at) "
            f"{seq} SELECT 'roster_changed', '{{}}', :old, :old, :old FROM seq").bindparams(created))
        db.session.execute(text(
            f"INSERT INTO notification_digests (user_id, digest_date, is_sent, created_at, sent_at) "
            f"{seq} SELECT :uid, {day}, true, :old, :old FROM seq").bindparams(created), {"uid": uid})
        db.session.commit()


def _add_newest_rows(app, uid: int, key: str) -> None:
    """A recent row at the end of each table, as in any live database."""
    with app.app_context():
        db.session.add(OutboxEvent(type="roster_changed", payload={}))
        db.session.add(Delivery(dedup_key=f"newest:{key}", user_id=uid, channel="email", target="x", status="sent"))
        db.session.add(NotificationDigest(user_id=uid, digest_date=date(2100, 1, 1) + timedelta(days=len(key)),
                                          is_sent=True))
        db.session.commit()


class Statements:
    """Every statement sent to the database, with its number of bound parameters."""

    def __init__(self, engine):
        self.engine, self.seen = engine, []

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self.before)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self.before)

    def before(self, conn, cursor, statement, parameters, context, executemany):
        size = len(parameters) if isinstance(parameters, (list, tuple, dict)) else 0
        self.seen.append((statement, size))


def test_prune_deletes_in_batches_of_constant_statements(app, users):
    from deltacrown.notifications.retention import prune_records

    uid = users.create("alice")
    counts = {}
    with app.app_context():
        engine = db.engine
        for rows, start in ((6, 0), (12, 1000)):
            _add_old_rows(app, uid, rows, start)
            _add_newest_rows(app, uid, "x" * rows)
            with Statements(engine) as statements:
                result = prune_records(90, batch_size=3)
            assert (result["deliveries"], result["outbox_events"], result["digests"]) == (rows, rows, rows)
            counts[rows] = len(statements.seen)
            assert max(size for _, size in statements.seen) <= 8, statements.seen
    # Per table: its newest id and the empty SELECT that ends it, and per batch of 3 rows one
    # SELECT of the batch's end and one DELETE (digests: two, their items first); the empty
    # bounce ledger: its newest id only.
    for rows, count in counts.items():
        assert count == 3 * 2 + 1 + rows // 3 * (2 + 2 + 3), counts


def test_one_batch_larger_than_the_bind_parameter_limit(app, users):
    """PostgreSQL accepts at most 65,535 bound parameters per statement: ranges, not id lists."""
    from deltacrown.notifications.retention import prune_records

    uid = users.create("alice")
    rows = 66_000
    _add_old_rows(app, uid, rows, 0)
    _add_newest_rows(app, uid, "x")
    with app.app_context():
        result = prune_records(90, batch_size=100_000)
        assert (result["deliveries"], result["outbox_events"], result["digests"]) == (rows, rows, rows)
        assert db.session.scalar(select(func.count()).select_from(Delivery)) == 1


def test_retention_days_is_validated():
    from deltacrown.config import ConfigError, load_config

    assert load_config({})["RETENTION_DAYS"] == 90
    assert load_config({"RETENTION_DAYS": "30"})["RETENTION_DAYS"] == 30
    for bad in ("0", "ninety", "36501"):
        with pytest.raises(ConfigError, match=r"^RETENTION_DAYS: "):
            load_config({"RETENTION_DAYS": bad})
