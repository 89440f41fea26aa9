"""Digests: send_daily_digest() to an SMTP server on loopback vs the same prerendered messages
sent with smtplib over one connection."""
from __future__ import annotations

import smtplib
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, select

from tests.support.processes import wait_for

from .. import seed
from ..harness import BenchEnv, CaseResult, measure, python_subprocess

TARGET = "≤ 3× smtplib over one connection"
UTC = timezone.utc
NOW = datetime(2026, 3, 5, 9, 0, tzinfo=UTC)  # 09:00 UTC: every default (08:00 UTC) digest is due
YESTERDAY = datetime(2026, 3, 4, 0, 0, tzinfo=UTC)
COUNT_KEY = "bench:smtp:received"


def run(env: BenchEnv) -> CaseResult:
    from deltacrown import create_app
    from deltacrown.accounts.models import User
    from deltacrown.devredis import free_port
    from deltacrown.notifications.content import ChannelMessage
    from deltacrown.notifications.digests import send_daily_digest
    from deltacrown.notifications.emails import render_daily_digest
    from deltacrown.notifications.models import Notification, NotificationDigest, notification_digest_items
    from deltacrown.queue import get_redis

    s = env.sizes
    result = CaseResult("digests", env.kind, size=f"{s.digest_users:,} users × {s.digest_unread} unread",
                        target=TARGET, ratio_label="ours / smtplib one connection")
    redis = get_redis(env.app)
    port = free_port()
    sink = python_subprocess("bench.smtp_sink", "--port", str(port), "--redis", env.redis_url, "--key", COUNT_KEY,
                             env=env.subprocess_env(), stdout=-1, text=True)
    try:
        if sink.stdout.readline().strip() != "ready":
            raise RuntimeError("bench.smtp_sink did not start")
        app = create_app({**env.config, "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": port, "MAIL_SUPPRESS_SEND": False})
        db = env.db
        with app.app_context():
            user_ids = seed.users(s.digest_users)
            seed.notifications(user_ids, s.digest_unread, YESTERDAY + timedelta(hours=1), timedelta(hours=20))
            env.analyze()

            def fresh():
                db.session.execute(delete(notification_digest_items))
                db.session.execute(delete(NotificationDigest))
                db.session.commit()
                redis.set(COUNT_KEY, 0)

            def received(n):
                wait_for(lambda: int(redis.get(COUNT_KEY) or 0) >= n, 60, interval=0.02,
                         message=f"{n} emails at the SMTP server")
                return int(redis.get(COUNT_KEY))

            def ours():
                counts = send_daily_digest(now=NOW)
                if counts["sent"] != len(user_ids):
                    raise AssertionError(f"send_daily_digest sent {counts}")
                received(len(user_ids))

            # The same messages, rendered up front (untimed): what the digest run sends.
            messages = []
            people = {u.id: u for u in db.session.scalars(select(User))}
            by_user: dict[int, list] = {}
            for n in db.session.scalars(select(Notification).order_by(Notification.id)):
                by_user.setdefault(n.user_id, []).append(n)
            sender = app.config["MAIL_DEFAULT_SENDER"]
            import flask_mail

            for uid in user_ids:
                rendered = render_daily_digest(people[uid], NOW.date(), [ChannelMessage.from_notification(n)
                                                                        for n in by_user[uid]])
                msg = flask_mail.Message(subject=rendered.subject, recipients=[people[uid].email], body=rendered.text,
                                         html=rendered.html, extra_headers=dict(rendered.headers), sender=sender)
                messages.append((people[uid].email, msg.as_bytes()))
            db.session.remove()

            def raw():
                with smtplib.SMTP("127.0.0.1", port) as smtp:
                    for to, data in messages:
                        smtp.sendmail(sender, [to], data)
                received(len(messages))

            result.ours = measure("send_daily_digest()", ours, setup=fresh, repeats=s.repeats, engine=db.engine)
            result.baseline = measure("prerendered, smtplib, one connection", raw, setup=fresh, repeats=s.repeats)
            size = sum(len(d) for _, d in messages) / len(messages)
            result.notes.append(f"every run checked: {len(user_ids):,} digests marked sent and {len(user_ids):,} "
                                f"messages accepted by the loopback aiosmtpd server (own process); "
                                f"mean message {size / 1024:.1f} KiB")
            db.session.remove()
            db.engine.dispose()
    finally:
        sink.terminate()
        sink.wait(10)
    result.ratio = result.ours.median / result.baseline.median
    result.met = result.ratio <= 3.0
    return result
