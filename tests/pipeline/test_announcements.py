"""Announcements: fan-out to many users in chunks of bulk statements, idempotent under retry."""
from __future__ import annotations

import pytest
from sqlalchemy import func, insert, select

from deltacrown.extensions import db
from deltacrown.models import Delivery, Notification, NotificationPreference, User
from deltacrown.notifications.announcements import batch_send_notifications
from deltacrown.queue import fetch_job

PLATFORM = "https://discord.com/api/webhooks/1/platform-token"


@pytest.fixture
def app_config():
    return {"DISCORD_WEBHOOK_URL": PLATFORM}


def test_announcement_to_everyone(api, league, run_jobs):
    api.put("/preferences", "bob", {"opt_out_email": True}, expect=200)
    api.put("/preferences", "ann", {"channels": {"announcement": ["email"]}}, expect=200)
    answer = api.post("/announcements", "admin", {"title": "Season 2", "body": "Starts Monday."}, expect=202).json
    run_jobs(queues=["default"])  # the fan-out job (sends are the channels part's)
    everyone = {"admin", "cap", "ann", "bob", "cyd", "dee", "eve"}
    assert api.notified("announcement") == {name: 1 for name in everyone - {"ann"}}
    assert api.deliveries("announcement") == sorted(
        [("email", n) for n in everyone - {"bob"}] + [("discord", "platform")])
    with api.app.app_context():
        job = fetch_job(answer["job_id"])
        assert job.meta["progress"]["done"] == job.meta["progress"]["total"] == 7
        assert job.return_value()["notifications"] == 6


def test_announcement_to_named_users_and_bad_requests(api, league, run_jobs):
    ids = api.users.ids
    api.post("/announcements", "admin", {"title": "Hi", "user_ids": [ids["ann"], ids["eve"]]}, expect=202)
    run_jobs(queues=["default"])
    assert api.notified("announcement") == {"ann": 1, "eve": 1}
    assert api.post("/announcements", "cap", {"title": "Hi"}, expect=403).json["error"]["code"] == "forbidden"
    assert api.post("/announcements", None, {"title": "Hi"}, expect=401).json["error"]["code"] == "unauthorized"
    missing = api.post("/announcements", "admin", {"title": "Hi", "user_ids": [ids["ann"], 999]}, expect=404).json
    assert "user_ids" in missing["error"]["fields"]
    assert "title" in api.post("/announcements", "admin", {"body": "no title"}, expect=422).json["error"]["fields"]
    for link in ("javascript:alert(1)", "//evil.example/x", "data:text/html,hi"):
        assert "url" in api.post("/announcements", "admin", {"title": "Hi", "url": link},
                                 expect=422).json["error"]["fields"]
    api.post("/announcements", "admin", {"title": "Hi", "url": "/tournaments/1"}, expect=202)


def test_retry_of_the_same_announcement_writes_nothing_new(app, league, api):
    with app.app_context():
        first = batch_send_notifications(None, "announcement", "Once", "", None, announcement_id="a1", chunk_size=3)
        rows = db.session.query(Notification).count(), db.session.query(Delivery).count()
        again = batch_send_notifications(None, "announcement", "Once", "", None, announcement_id="a1", chunk_size=3)
        assert (db.session.query(Notification).count(), db.session.query(Delivery).count()) == rows
        assert first["notifications"] == 7 and again["notifications"] == 0


def test_retry_without_personal_deliveries_counts_nothing_new(app, league, api):
    """In-app only (no deliveries to link): a retry still counts only what it inserted."""
    with app.app_context():
        for user in db.session.scalars(select(User)).all():
            NotificationPreference.get_or_create_for_user(user).opt_out_email = True
        db.session.commit()
        first = batch_send_notifications(None, "announcement", "Quiet", "", None, announcement_id="q1", chunk_size=3)
        again = batch_send_notifications(None, "announcement", "Quiet", "", None, announcement_id="q1", chunk_size=3)
        assert first["notifications"] == 7 and again["notifications"] == 0
        assert db.session.scalar(select(func.count(Notification.id)).where(Notification.title == "Quiet")) == 7
        assert db.session.scalar(select(func.count(Delivery.id)).where(Delivery.user_id.is_not(None))) == 0


def _bulk_users(app, n: int, prefix: str) -> None:
    with app.app_context():
        for start in range(0, n, 5000):
            db.session.execute(insert(User), [
                {"username": f"{prefix}{i}", "email": f"{prefix}{i}@example.org", "password_hash": "!",
                 "is_admin": False, "timezone": "UTC"} for i in range(start, min(n, start + 5000))])
        db.session.commit()


def test_statements_do_not_grow_with_the_audience(app, api, users, run_jobs, count_queries):
    """1,000 then 10,000 users: the statements per chunk of users are constant."""
    users.create("admin", admin=True)
    chunk_size = app.config["ANNOUNCEMENT_CHUNK_SIZE"] = 500  # below SQLAlchemy's 1,000 rows per INSERT
    counts = {}
    for total in (1_000, 10_000):
        with app.app_context():
            have = db.session.scalar(select(func.count(User.id)))
        _bulk_users(app, total - have, f"p{total}_")
        with count_queries() as q:
            api.post("/announcements", "admin", {"title": f"To {total}"}, expect=202)
            run_jobs(queues=["default"])
        counts[total] = q.count
        with app.app_context():
            assert db.session.scalar(select(func.count(Notification.id))
                                     .where(Notification.title == f"To {total}")) == total
    chunks = {n: -(-n // chunk_size) for n in counts}
    per_chunk, remainder = divmod(counts[10_000] - counts[1_000], chunks[10_000] - chunks[1_000])
    assert remainder == 0 and per_chunk <= 4, counts
    assert counts[1_000] - per_chunk * chunks[1_000] <= 6, counts  # the rest is constant overhead
