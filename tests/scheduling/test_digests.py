"""Daily digests go out at each user's local digest time, once per local date; old read
notifications are cleaned up. Real SMTP server (aiosmtpd), real worker, time frozen
with time-machine."""
from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import delete, func, select, update

from deltacrown.extensions import db
from deltacrown.notifications import jobs
from deltacrown.notifications.types import NOTIFICATION_TYPES
from deltacrown.notifications.digests import cleanup_old_notifications, send_daily_digest
from deltacrown.notifications.models import (Notification, NotificationDigest, NotificationPreference,
                                             notification_digest_items)

UTC = timezone.utc
DAY0 = datetime(2026, 3, 5, 0, 0, tzinfo=UTC)  # no DST change near it in any zone used here

# name: (time zone, digest time, digest enabled)
PEOPLE = {
    "alice": ("UTC", time(8, 0), True),  # the defaults: like a daily 08:00 UTC run
    "bob": ("Asia/Tokyo", time(7, 30), True),  # 22:30 UTC the day before
    "carol": ("America/New_York", time(20, 0), True),  # 01:00 UTC the next day
    "dave": ("UTC", time(8, 0), False),  # digest off
}


def set_prefs(app, users, people=PEOPLE):
    ids = {}
    for name, (zone, at, enabled) in people.items():
        ids[name] = users.create(name, timezone=zone)
        with app.app_context():
            pref = db.session.scalar(select(NotificationPreference).where(NotificationPreference.user_id == ids[name]))
            if pref is None:
                pref = NotificationPreference(user_id=ids[name], channels={}, timezone=zone)
                db.session.add(pref)
            pref.timezone, pref.digest_time, pref.enable_daily_digest = zone, at, enabled
            db.session.commit()
    return ids


def add_notification(app, user_id, at, title, read=False, type_="announcement"):
    with app.app_context():
        n = Notification(user_id=user_id, type=type_, title=title, body="", is_read=read, created_at=at)
        db.session.add(n)
        db.session.commit()
        return n.id


def test_each_user_gets_one_digest_per_local_date_at_their_local_time(app, users, smtp_server):
    ids = set_prefs(app, users)
    # Unread notifications every 3 hours from two days before the sweep to its end.
    with app.app_context():
        for uid in ids.values():
            t = DAY0 - timedelta(days=2)
            while t < DAY0 + timedelta(days=3):
                db.session.add(Notification(user_id=uid, type="announcement", title=f"n {t:%d %H}", body="",
                                            created_at=t))
                t += timedelta(hours=3)
        db.session.commit()

    sent_at: dict[tuple[str, str], list[datetime]] = {}
    by_address = {f"{name}@example.com": name for name in ids}
    step = DAY0
    while step <= DAY0 + timedelta(hours=48):
        with time_machine.travel(step, tick=False), app.app_context():
            before = len(smtp_server.messages)
            result = send_daily_digest()
            new = smtp_server.messages[before:]
        assert result["sent"] == len(new) and result["failed"] == 0
        for message in new:
            name = by_address[message["To"]]
            local_date = step.astimezone(ZoneInfo(PEOPLE[name][0])).date()
            sent_at.setdefault((name, local_date.isoformat()), []).append(step)
        step += timedelta(hours=1)

    # Every send happened at the first hourly run at or after the local digest time.
    for (name, local_date), times in sent_at.items():
        assert len(times) == 1, f"{name} got {len(times)} digests for {local_date}"
        zone, at, _ = PEOPLE[name]
        local = times[0].astimezone(ZoneInfo(zone))
        if times[0] == DAY0:  # the sweep's first run catches up a time already passed
            assert local.time() >= at
            continue
        assert local.time() >= at and (local - timedelta(hours=1)).time() < at
    assert sorted(sent_at) == [
        ("alice", "2026-03-05"), ("alice", "2026-03-06"),  # 08:00 UTC; the sweep ends 00:00 on the 7th
        ("bob", "2026-03-05"), ("bob", "2026-03-06"), ("bob", "2026-03-07"),  # first run, then 23:00 UTC
        ("carol", "2026-03-04"), ("carol", "2026-03-05"),  # 20:00 EST = 01:00 UTC on 5th, 6th
    ]
    assert sent_at[("alice", "2026-03-05")] == [DAY0 + timedelta(hours=8)]
    assert sent_at[("bob", "2026-03-06")] == [DAY0 + timedelta(hours=23)]  # 07:30 JST -> the 08:00 JST run
    assert sent_at[("carol", "2026-03-05")] == [DAY0 + timedelta(days=1, hours=1)]
    with app.app_context():
        rows = db.session.execute(select(NotificationDigest.user_id, NotificationDigest.is_sent)).all()
    assert len(rows) == 7 and all(sent for _, sent in rows)


def test_digest_lists_yesterdays_unread_grouped_and_nothing_else(app, users, smtp_server):
    ids = set_prefs(app, users, {"alice": ("Asia/Tokyo", time(8, 0), True),
                                 "erin": ("UTC", time(8, 0), True)})
    alice = ids["alice"]
    # Local day before 2026-03-05 in Tokyo is 2026-03-04 00:00 JST = 2026-03-03 15:00 UTC ... 03-04 15:00 UTC.
    add_notification(app, alice, datetime(2026, 3, 3, 14, 59, tzinfo=UTC), "too early")
    add_notification(app, alice, datetime(2026, 3, 3, 15, 0, tzinfo=UTC), "first <b>one</b>")
    add_notification(app, alice, datetime(2026, 3, 4, 9, 0, tzinfo=UTC), "a match", type_="match_result")
    add_notification(app, alice, datetime(2026, 3, 4, 10, 0, tzinfo=UTC), "already read", read=True)
    add_notification(app, alice, datetime(2026, 3, 4, 15, 0, tzinfo=UTC), "today's")
    add_notification(app, ids["erin"], datetime(2026, 3, 5, 1, 0, tzinfo=UTC), "erin today only")
    with time_machine.travel(datetime(2026, 3, 4, 23, 0, tzinfo=UTC), tick=False), app.app_context():
        result = send_daily_digest()  # 08:00 JST on the 5th; erin: nothing unread on the 3rd
    assert (result["sent"], result["skipped"]) == (1, 1)
    with time_machine.travel(datetime(2026, 3, 5, 8, 0, tzinfo=UTC), tick=False), app.app_context():
        result = send_daily_digest()  # erin is due but had nothing unread yesterday: no email, no row
    assert (result["sent"], result["skipped"], result["already_sent"]) == (0, 1, 1)
    [message] = smtp_server.messages
    text = message.text
    assert "first <b>one</b>" in text and "a match" in text
    assert "too early" not in text and "already read" not in text and "today's" not in text
    with app.app_context():
        digest = db.session.scalar(select(NotificationDigest))
        assert (digest.user_id, digest.digest_date.isoformat(), digest.is_sent) == (alice, "2026-03-05", True)
        assert sorted(n.title for n in digest.notifications) == ["a match", "first <b>one</b>"]
        assert db.session.scalar(select(func.count()).select_from(NotificationDigest)) == 1


def test_an_abandoned_claim_is_retried_and_a_live_one_is_left_alone(app, users, smtp_server):
    ids = set_prefs(app, users, {"alice": ("UTC", time(8, 0), True), "bob": ("UTC", time(8, 0), True)})
    now = datetime(2026, 3, 5, 9, 0, tzinfo=UTC)
    for uid in ids.values():
        add_notification(app, uid, datetime(2026, 3, 4, 12, 0, tzinfo=UTC), "yesterday")
    with app.app_context():
        # alice: claimed 2 hours ago by a worker that died before sending; bob: claimed just now.
        db.session.add(NotificationDigest(user_id=ids["alice"], digest_date=now.date(), is_sent=False,
                                          created_at=now - timedelta(hours=2)))
        db.session.add(NotificationDigest(user_id=ids["bob"], digest_date=now.date(), is_sent=False,
                                          created_at=now - timedelta(minutes=1)))
        db.session.commit()
        result = send_daily_digest(now=now)
    assert (result["sent"], result["retried"], result["already_sent"]) == (1, 1, 1)
    assert [m["To"] for m in smtp_server.messages] == ["alice@example.com"]
    with app.app_context():
        assert send_daily_digest(now=now)["sent"] == 0


def test_a_refused_email_leaves_the_claim_for_a_later_retry(app, users, smtp_server):
    ids = set_prefs(app, users, {"alice": ("UTC", time(8, 0), True)})
    add_notification(app, ids["alice"], datetime(2026, 3, 4, 12, 0, tzinfo=UTC), "yesterday")
    now = datetime(2026, 3, 5, 8, 0, tzinfo=UTC)
    smtp_server.refuse_data_with = "451 4.3.0 try again later"
    with app.app_context():
        assert send_daily_digest(now=now)["failed"] == 1
        assert db.session.scalar(select(NotificationDigest.is_sent)) is False
    smtp_server.refuse_data_with = None
    with app.app_context():
        assert send_daily_digest(now=now + timedelta(minutes=5))["already_sent"] == 1  # claim still fresh
        assert send_daily_digest(now=now + timedelta(hours=1))["sent"] == 1
    assert len(smtp_server.messages) == 1


@pytest.mark.postgres
def test_racing_runs_send_each_digest_once(app, users, smtp_server, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("threads racing need a server database")
    people = {f"racer{i}": ("UTC", time(8, 0), True) for i in range(12)}
    ids = set_prefs(app, users, people)
    for uid in ids.values():
        add_notification(app, uid, datetime(2026, 3, 4, 12, 0, tzinfo=UTC), "yesterday")
    now = datetime(2026, 3, 5, 8, 0, tzinfo=UTC)
    barrier = threading.Barrier(4)
    results = []

    def run():
        with app.app_context():
            barrier.wait()
            results.append(send_daily_digest(now=now, chunk_size=5))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(r["sent"] for r in results) == 12
    assert Counter(m["To"] for m in smtp_server.messages) == Counter(f"{n}@example.com" for n in people)


def test_statements_per_chunk_do_not_grow_with_users(app, users, smtp_server, count_queries):
    people = {f"quiet{i}": ("UTC", time(8, 0), True) for i in range(30)}
    set_prefs(app, users, people)
    now = datetime(2026, 3, 5, 8, 0, tzinfo=UTC)
    counts = []
    for chunk_size in (10, 30):
        with app.app_context(), count_queries() as q:
            assert send_daily_digest(now=now, chunk_size=chunk_size)["skipped"] == 30
        counts.append((chunk_size, q.count))
    # users with nothing unread: 1 count + per chunk (users, digests, notifications) + the empty last read
    assert counts == [(10, 1 + 3 * 3 + 1), (30, 1 + 3 * 1 + 1)]


def test_statements_and_connections_per_chunk_do_not_grow_with_digests_sent(app, users, smtp_server, count_queries):
    people = {f"busy{i}": ("UTC", time(8, 0), True) for i in range(20)}
    ids = set_prefs(app, users, people)
    with app.app_context():
        for uid in ids.values():
            for k in range(3):
                db.session.add(Notification(user_id=uid, type="announcement", title=f"news {k}", body="",
                                            created_at=datetime(2026, 3, 4, 10 + k, tzinfo=UTC)))
        db.session.commit()
    now = datetime(2026, 3, 5, 8, 0, tzinfo=UTC)
    counts = []
    for chunk_size in (5, 20):
        with app.app_context():
            db.session.execute(delete(notification_digest_items))
            db.session.execute(delete(NotificationDigest))
            db.session.commit()
        smtp_server.clear()
        with app.app_context(), count_queries() as q:
            assert send_daily_digest(now=now, chunk_size=chunk_size)["sent"] == 20
        counts.append((chunk_size, q.count, len(smtp_server.connections)))
        with app.app_context():
            assert db.session.scalar(select(func.count()).select_from(NotificationDigest)
                                     .where(NotificationDigest.is_sent.is_(True))) == 20
            assert db.session.scalar(select(func.count()).select_from(notification_digest_items)) == 60
        assert sorted(m["To"] for m in smtp_server.messages) == sorted(f"{n}@example.com" for n in people)
    # 1 count + per chunk 6 (users, digests, notifications, claim INSERT, mark UPDATE, items INSERT)
    # + the empty last read; one SMTP connection per chunk.
    assert counts == [(5, 1 + 4 * 6 + 1, 4), (20, 1 + 6 + 1, 1)]


def test_one_refused_address_bounces_only_that_digest_of_the_chunk_and_is_never_retried(app, users, smtp_server):
    people = {f"pal{i}": ("UTC", time(8, 0), True) for i in range(5)}
    ids = set_prefs(app, users, people)
    for uid in ids.values():
        add_notification(app, uid, datetime(2026, 3, 4, 12, 0, tzinfo=UTC), "yesterday")
    smtp_server.refuse("pal2@example.com")
    now = datetime(2026, 3, 5, 8, 0, tzinfo=UTC)
    with app.app_context():
        result = send_daily_digest(now=now)
        rows = dict(db.session.execute(select(NotificationDigest.user_id, NotificationDigest.is_sent)).all())
        items = db.session.scalar(select(func.count()).select_from(notification_digest_items))
    assert (result["sent"], result["bounced"], result["failed"]) == (4, 1, 0)
    assert sorted(m["To"] for m in smtp_server.messages) == [f"pal{i}@example.com" for i in (0, 1, 3, 4)]
    assert len(smtp_server.connections) == 1  # the refusal did not cost the connection
    # pal2's claim is closed (a 550 is permanent): never retried, the address suppressed.
    assert rows == {uid: True for uid in ids.values()} and items == 4
    smtp_server.refused.clear()
    with app.app_context():
        assert send_daily_digest(now=now + timedelta(hours=1))["sent"] == 0
        assert send_daily_digest(now=now + timedelta(days=1))["suppressed"] == 0  # nothing unread for that day
    assert not any(m["To"] == "pal2@example.com" for m in smtp_server.messages)


def test_an_injected_sender_gets_plain_data_oldest_first_by_type(app, users, smtp_server):
    ids = set_prefs(app, users, {"alice": ("UTC", time(8, 0), True)})
    add_notification(app, ids["alice"], datetime(2026, 3, 4, 14, 0, tzinfo=UTC), "later news")
    add_notification(app, ids["alice"], datetime(2026, 3, 4, 9, 0, tzinfo=UTC), "a match", type_="match_result")
    add_notification(app, ids["alice"], datetime(2026, 3, 4, 8, 0, tzinfo=UTC), "early news")
    calls = []
    with app.app_context():
        result = send_daily_digest(now=datetime(2026, 3, 5, 8, 0, tzinfo=UTC),
                                   send_email=lambda *args: calls.append(args))
    assert result["sent"] == 1 and not smtp_server.messages
    [(recipient, digest_date, items)] = calls
    assert (recipient.username, recipient.email, digest_date.isoformat()) == ("alice", "alice@example.com", "2026-03-05")
    order = [t for t in NOTIFICATION_TYPES if t in ("announcement", "match_result")]
    expected = {"announcement": ["early news", "later news"], "match_result": ["a match"]}
    assert [i.title for i in items] == [title for t in order for title in expected[t]]


def test_job_on_a_real_worker_and_the_cli(app, users, smtp_server, run_jobs, runner):
    ids = set_prefs(app, users, {"alice": ("UTC", time(0, 0), True), "bob": ("UTC", time(0, 0), True)})
    yesterday = datetime.now(UTC) - timedelta(days=1)
    add_notification(app, ids["alice"], yesterday.replace(hour=12), "for alice")
    with app.app_context():
        job = jobs.send_digests.enqueue()
    run_jobs()
    job.refresh()
    assert job.get_status() == "finished"
    assert job.return_value()["sent"] == 1 and job.return_value()["skipped"] == 1
    assert job.meta["progress"] == {"done": 2, "total": 2}
    assert [m["To"] for m in smtp_server.messages] == ["alice@example.com"]
    result = runner.invoke(args=["send-digests"])
    assert result.exit_code == 0, result.output
    assert "Digests: 0 sent, 1 skipped (nothing unread), 1 already sent" in result.output
    result = runner.invoke(args=["send-digests", "--enqueue"])
    assert result.exit_code == 0 and "Enqueued send_digests as job" in result.output


def test_cleanup_deletes_old_read_notifications_in_batches(app, users, run_jobs, runner, count_queries):
    uid = users.create("alice")
    now = datetime.now(UTC)
    with app.app_context():
        for i in range(25):
            db.session.add(Notification(user_id=uid, type="announcement", title=f"old read {i}", is_read=True,
                                        created_at=now - timedelta(days=91 + i)))
        db.session.add(Notification(user_id=uid, type="announcement", title="old unread", is_read=False,
                                    created_at=now - timedelta(days=400)))
        db.session.add(Notification(user_id=uid, type="announcement", title="recent read", is_read=True,
                                    created_at=now - timedelta(days=89)))
        digest = NotificationDigest(user_id=uid, digest_date=now.date(), is_sent=True)
        db.session.add(digest)
        db.session.flush()
        digest.notifications = list(db.session.scalars(select(Notification).limit(3)))
        db.session.commit()
        with count_queries() as q:
            assert cleanup_old_notifications(90, batch_size=10)["deleted"] == 25
        assert q.count <= 3 * (4 + 1)  # 3 batches of 4 statements (+ commit bookkeeping)
        titles = sorted(db.session.scalars(select(Notification.title)))
        assert titles == ["old unread", "recent read"]
        db.session.execute(update(Notification).values(created_at=now - timedelta(days=40)))
        db.session.commit()
    result = runner.invoke(args=["cleanup-notifications", "--days", "30"])
    assert result.exit_code == 0 and "Deleted 1 read notification(s) older than 30 days." in result.output
    result = runner.invoke(args=["cleanup-notifications", "--days", "0"])
    assert result.exit_code == 2 and "--days" in result.output
    with app.app_context():
        job = jobs.cleanup_notifications.enqueue(7)
    run_jobs()
    job.refresh()
    assert job.get_status() == "finished" and job.return_value()["deleted"] == 0


def test_users_without_a_preference_row_get_the_defaults_in_their_own_zone(app, users, smtp_server):
    uid = users.create("kenji", timezone="Asia/Tokyo")
    with app.app_context():
        db.session.execute(NotificationPreference.__table__.delete())
        db.session.commit()
    add_notification(app, uid, datetime(2026, 3, 4, 3, 0, tzinfo=UTC), "yesterday in Tokyo")
    with app.app_context():
        before = send_daily_digest(now=datetime(2026, 3, 4, 22, 59, tzinfo=UTC))  # 07:59 JST
        at = send_daily_digest(now=datetime(2026, 3, 4, 23, 0, tzinfo=UTC))  # 08:00 JST
    assert (before["not_due"], before["sent"], at["sent"]) == (1, 0, 1)
    assert [m["To"] for m in smtp_server.messages] == ["kenji@example.com"]
