"""Fan-out: an announcement to every user (default preferences) by batch_send_notifications(),
vs the same rows by a raw executemany INSERT, and vs the naive per-user ORM loop."""
from __future__ import annotations

import time
import uuid

from sqlalchemy import delete, func, insert, select

from .. import seed
from ..harness import BenchEnv, CaseResult, CaseUnavailable, measure, time_in_statements

TARGETS = {"fanout": "≤ 1.5× the raw executemany INSERT of the same rows",
           "fanout_inapp": "≤ 1.5× the raw executemany INSERT of the same rows",
           "fanout_naive": "≥ 50× faster than the per-user ORM loop"}
TITLE, BODY, URL = "Season 3 starts <Friday>", "Sign-ups are open. Good luck & have fun!", "/news/season-3"


def _service():
    try:
        from deltacrown.notifications.announcements import batch_send_notifications
    except ImportError:
        raise CaseUnavailable("the announcements fan-out (deltacrown.notifications.announcements."
                              "batch_send_notifications) is not on main yet") from None
    return batch_send_notifications


def _clear(env: BenchEnv):
    from deltacrown.notifications.models import Delivery, Notification
    from deltacrown.queue import get_redis

    db = env.db
    db.session.execute(delete(Delivery))
    db.session.execute(delete(Notification))
    db.session.commit()
    get_redis(env.app).flushdb()  # the send_delivery jobs ours enqueued


def _announce(env: BenchEnv, batch_send_notifications, expected: int):
    def run():
        out = batch_send_notifications(None, "announcement", TITLE, BODY, URL, announcement_id=uuid.uuid4().hex)
        if out["notifications"] != expected:
            raise AssertionError(f"batch_send_notifications wrote {out}, expected {expected} notifications")
    return run


def _raw_insert_of_what_ours_wrote(env: BenchEnv):
    """The rows ours just wrote (ids included), and a function writing them again with a Core
    executemany INSERT in one transaction: the floor of writing those rows."""
    from deltacrown.notifications.models import Delivery, Notification

    db = env.db
    n_rows = [dict(r._mapping) for r in db.session.execute(select(Notification.__table__))]
    d_rows = [dict(r._mapping) for r in db.session.execute(select(Delivery.__table__))]

    def raw():
        db.session.execute(insert(Notification.__table__), n_rows)
        if d_rows:
            db.session.execute(insert(Delivery.__table__), d_rows)
        db.session.commit()
    return n_rows, d_rows, raw


def run_fanout_inapp(env: BenchEnv) -> CaseResult:
    """The same with every recipient opted out of email: only the in-app rows, no sends to enqueue
    (separates the database side of the fan-out from the per-delivery enqueue)."""
    return run_fanout(env, in_app_only=True)


def run_fanout(env: BenchEnv, in_app_only: bool = False) -> CaseResult:
    from deltacrown.notifications.models import Delivery, Notification, NotificationPreference
    from deltacrown.queue import get_queue

    batch_send_notifications = _service()
    s, db = env.sizes, env.db
    name = "fanout_inapp" if in_app_only else "fanout"
    result = CaseResult(name, env.kind, size=f"{s.fanout_users:,} users, " + (
        "email opted out (in-app only)" if in_app_only else "default preferences"),
        target=TARGETS[name], ratio_label="ours / raw INSERT")
    with env.app.app_context():
        seed.users(s.fanout_users)
        if in_app_only:
            db.session.execute(NotificationPreference.__table__.update().values(opt_out_email=True))
            db.session.commit()
        env.analyze()
        announce = _announce(env, batch_send_notifications, s.fanout_users)
        _clear(env)
        announce()
        n_rows, d_rows, raw = _raw_insert_of_what_ours_wrote(env)
        enqueued = get_queue("notifications").count
        by_channel = dict(db.session.execute(select(Delivery.channel, func.count()).group_by(Delivery.channel)).all())

        # tracemalloc on N Redis enqueues multiplies the run time several times; traced only without them.
        result.ours = measure("batch_send_notifications(all users)", announce, setup=lambda: _clear(env),
                              repeats=s.repeats, engine=db.engine, trace_memory=in_app_only)
        if not in_app_only:
            result.notes.append("peak memory of ours not traced (tracemalloc over the Redis enqueues is too slow)")
        result.baseline = measure("Core executemany INSERT of the same rows, one transaction", raw,
                                  setup=lambda: _clear(env), repeats=s.repeats, engine=db.engine)
        _clear(env)
    result.notes.append(f"rows per run: {len(n_rows):,} notifications + {len(d_rows):,} deliveries {by_channel} "
                        f"({'email opted out' if in_app_only else 'announcement defaults: in-app and email'}); ours also enqueues {enqueued:,} send_delivery "
                        f"jobs to Redis, which the baseline does not")
    result.ratio = result.ours.median / result.baseline.median
    result.met = result.ratio <= 1.5
    return result


def run_fanout_naive(env: BenchEnv) -> CaseResult:
    from deltacrown.accounts.models import User
    from deltacrown.notifications.models import Notification, NotificationPreference
    from deltacrown.notifications.types import IN_APP

    batch_send_notifications = _service()
    s, db = env.sizes, env.db
    result = CaseResult("fanout_naive", env.kind, size=f"{s.naive_users:,} users, default preferences",
                        target=TARGETS["fanout_naive"], ratio_label="naive / ours")
    with env.app.app_context():
        ids = seed.users(s.naive_users)
        env.analyze()
        announce = _announce(env, batch_send_notifications, s.naive_users)

        def naive():
            key = f"announcement:{uuid.uuid4().hex}"
            for uid in ids:
                user = db.session.get(User, uid)
                pref = NotificationPreference.get_or_create_for_user(user)
                if IN_APP in pref.get_channels_for_type("announcement"):
                    db.session.add(Notification(user_id=uid, type="announcement", title=TITLE, body=BODY, url=URL,
                                                dedup_key=key))
                db.session.commit()
            written = db.session.scalar(select(func.count()).select_from(Notification))
            if written != len(ids):
                raise AssertionError(f"naive loop wrote {written} notifications")

        result.ours = measure("batch_send_notifications(all users)", announce, setup=lambda: _clear(env),
                              repeats=s.repeats, engine=db.engine)
        # The floor for any fan-out that writes what ours writes: the same rows by a raw INSERT.
        _clear(env)
        announce()
        n_rows, d_rows, raw = _raw_insert_of_what_ours_wrote(env)
        floor = measure("Core executemany INSERT of the rows ours writes", raw, setup=lambda: _clear(env),
                        repeats=s.repeats, engine=db.engine, trace_memory=False)
        result.baseline = measure("per-user loop: get, get-or-create preferences, ORM insert, commit", naive,
                                  setup=lambda: _clear(env), engine=db.engine, warmup=False)
        # Where ours' time goes: one more run (not in the ratio), split into the database's statements
        # (inside the driver's execute) and the rest (Python: ours, SQLAlchemy, the Redis enqueues).
        _clear(env)
        with time_in_statements(db.engine) as in_statements:
            start = time.perf_counter()
            announce()
            split_run = time.perf_counter() - start
        _clear(env)
    result.notes.append("the naive loop is run once (it is the slow side); it writes only the in-app rows, "
                        "ours also writes the email deliveries and enqueues their sends")
    result.notes.append(f"floor: a raw executemany INSERT of the {len(n_rows):,} notifications and {len(d_rows):,} "
                        f"deliveries ours writes takes {floor.median * 1000:.0f} ms (ours {result.ours.median * 1000:.0f} "
                        f"ms, {result.ours.median / floor.median:.2f}× it); naive / floor = "
                        f"{result.baseline.median / floor.median:.1f}, the best ratio any code writing these rows "
                        f"could reach here")
    in_db = max(in_statements["seconds"], 1e-9)  # (never 0: ours always runs statements)
    result.notes.append(f"ours, one more run split: {split_run * 1000:.0f} ms, of which {in_db * 1000:.0f} ms "
                        f"({in_db / split_run:.0%}) inside the database driver's execute calls and "
                        f"{(split_run - in_db) * 1000:.0f} ms the rest (our Python, SQLAlchemy, the commits, Redis): "
                        f"were the rest nothing, naive / ours would be {result.baseline.median / in_db:.1f}")
    result.ratio = result.baseline.median / result.ours.median
    result.met = result.ratio >= 50
    return result
