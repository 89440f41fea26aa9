"""SMTP down then up; Discord answering 429 and 500 in bursts: every message once, rate limit held.

Announcements fan out to users who chose email and Discord (all users' personal
webhook is the same Discord webhook, so it gets one message per user and
announcement), plus the platform's public webhook (one message per
announcement). Two real `python worker.py` processes (with RQ's scheduler, so
retries fire) send them with short DELIVERY_RETRY_INTERVALS. The SMTP stand-in
is stopped before the first email (nothing listens on its port: connections are
refused) and started again on the same port once emails have been refused and
retried (and refused again); the Discord stand-in answers
bursts of 429 and 500 from the start and again half-way. Afterwards each stand-in
has each message exactly once, and no webhook saw more than 5 requests in any
one second.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from datetime import time as clock

import pytest
from sqlalchemy import func, insert, select

from deltacrown.accounts.models import User
from deltacrown.extensions import db
from deltacrown.notifications.announcements import new_announcement_id
from deltacrown.notifications.jobs import batch_send_notifications
from deltacrown.notifications.models import Delivery, NotificationPreference
from deltacrown.timeutil import utcnow
from tests.support.processes import PYTHON, wait_for

from .conftest import env_int, record_figures

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(600)]

USERS = env_int("RELIABILITY_CHANNEL_USERS", 5)
ANNOUNCEMENTS = env_int("RELIABILITY_CHANNEL_ANNOUNCEMENTS", 8)
PLATFORM, PERSONAL = 1, 2  # webhook ids at the Discord stand-in


def test_smtp_outage_and_discord_bursts_deliver_every_message_once_within_the_rate_limit(
        rapp, worker_env, spawn, smtp_server, discord_server):
    now = utcnow()
    with rapp.app_context():
        db.session.execute(insert(User.__table__), [
            {"username": f"fan{i}", "email": f"fan{i}@example.com", "password_hash": "!", "is_admin": False,
             "timezone": "UTC", "created_at": now} for i in range(USERS)])
        ids = list(db.session.scalars(select(User.id).order_by(User.id)))
        db.session.execute(insert(NotificationPreference.__table__), [
            {"user_id": uid, "channels": {"announcement": ["in_app", "email", "discord"]},
             "opt_out_email": False, "opt_out_in_app": False, "opt_out_discord": False,
             "enable_daily_digest": False, "digest_time": clock(8), "timezone": "UTC",
             "discord_webhook_url": discord_server.webhook_url(PERSONAL), "updated_at": now} for uid in ids])
        db.session.commit()

    smtp_server.stop()  # SMTP down: nothing listens on its port until it is started again
    assert smtp_server.refuses_connections()
    discord_server.rate_limit_next(PERSONAL, retry_after=1.0, times=3)
    discord_server.fail_next(PERSONAL, 500, times=3)
    discord_server.fail_next(PLATFORM, 500, times=2)
    discord_server.rate_limit_next(PLATFORM, retry_after=0.5, times=2)

    env = worker_env(**smtp_server.env(), **discord_server.env(),
                     DISCORD_WEBHOOK_URL=discord_server.webhook_url(PLATFORM),
                     DELIVERY_RETRY_INTERVALS="1,1,2,2,3,5,5,8,8,10")
    workers = [spawn([PYTHON, "worker.py"], env=env, name=f"worker-{n}") for n in (1, 2)]
    titles = [f"News {k:03d}" for k in range(ANNOUNCEMENTS)]
    with rapp.app_context():
        rapp.config["DISCORD_WEBHOOK_URL"] = discord_server.webhook_url(PLATFORM)  # the platform delivery rows
        for title in titles:
            batch_send_notifications.enqueue(None, "announcement", title, "Read all about it.", None,
                                             new_announcement_id())

    def deliveries(**where):
        with rapp.app_context():
            stmt = select(func.count()).select_from(Delivery)
            for key, value in where.items():
                stmt = stmt.where(getattr(Delivery, key) == value)
            count = db.session.scalar(stmt)
            db.session.rollback()
        return count

    def alive():
        for w in workers:
            assert w.is_running(), w.output()[-3000:]
        return True

    # SMTP stays down until an announcement's worth of emails has been refused and RQ's retry
    # of at least one of them was refused too (more tries than emails tried).
    down_since = time.monotonic()

    def refused_and_retried():
        alive()
        refused = _refused(rapp)
        return refused >= USERS and _email_attempts(rapp) > refused

    wait_for(refused_and_retried, timeout=90, message="emails to be tried, and retried, while SMTP is down")
    assert deliveries(channel="email", status="failed") == 0  # a refused connection is temporary: retried
    refused_while_down, tries_while_down = _refused(rapp), _email_attempts(rapp)
    assert smtp_server.refuses_connections() and not smtp_server.messages
    smtp_server.start()  # up again, on the same port the workers were configured with
    smtp_down_seconds = time.monotonic() - down_since
    # A second Discord burst half-way.
    wait_for(lambda: alive() and len(discord_server.messages(PERSONAL)) >= USERS * ANNOUNCEMENTS // 2,
             timeout=180, message="half the personal Discord messages")
    discord_server.fail_next(PERSONAL, 500, times=2)
    discord_server.rate_limit_next(PERSONAL, retry_after=0.5, times=2)

    expected = {"email": USERS * ANNOUNCEMENTS, "discord": USERS * ANNOUNCEMENTS + ANNOUNCEMENTS}
    wait_for(lambda: alive() and deliveries(status="sent") == sum(expected.values())
             and deliveries(status="pending") == 0, timeout=300,
             message="every email and Discord delivery to be sent")
    assert deliveries(status="failed") == 0

    emails = Counter((r, m.subject) for m in smtp_server.messages for r in m.rcpt_tos)
    personal = Counter(_title(p, titles) for p in discord_server.messages(PERSONAL))
    platform = Counter(_title(p, titles) for p in discord_server.messages(PLATFORM))
    email_dupes = sum(n - 1 for n in emails.values())
    discord_dupes = sum(n - 1 for n in personal.values() if n > USERS) + sum(n - 1 for n in platform.values())
    assert len(smtp_server.messages) == USERS * ANNOUNCEMENTS and email_dupes == 0, emails
    assert all(any(t in subject for t in titles) for _, subject in emails)
    assert {t: personal[t] for t in titles} == {t: USERS for t in titles}, personal
    assert {t: platform[t] for t in titles} == {t: 1 for t in titles}, platform
    peak = {hook: discord_server.max_requests_in_window(hook, 1.0) for hook in (PLATFORM, PERSONAL)}
    assert max(peak.values()) <= 5, peak
    assert not discord_server.violations
    with rapp.app_context():
        attempts = db.session.scalar(select(func.sum(Delivery.attempts)))
    record_figures("channels", emails=len(smtp_server.messages), email_duplicates=email_dupes,
                   discord_messages=len(discord_server.messages(PERSONAL)) + len(discord_server.messages(PLATFORM)),
                   discord_duplicates=discord_dupes, discord_requests=sum(len(discord_server.arrivals(h))
                                                                           for h in (PLATFORM, PERSONAL)),
                   discord_429_answered=sum(discord_server.count_429(h) for h in (PLATFORM, PERSONAL)),
                   delivery_attempts=attempts, lost=0, smtp_down_seconds=round(smtp_down_seconds, 1),
                   emails_refused_while_smtp_down=refused_while_down, email_tries_while_smtp_down=tries_while_down,
                   max_requests_in_any_second=peak)


def _refused(app) -> int:
    """Email deliveries whose last try found nothing listening (connection refused)."""
    with app.app_context():
        count = db.session.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.channel == "email", Delivery.last_error.contains("ConnectionRefusedError")))
        db.session.rollback()
    return count


def _email_attempts(app) -> int:
    with app.app_context():
        count = db.session.scalar(select(func.coalesce(func.sum(Delivery.attempts), 0))
                                  .where(Delivery.channel == "email"))
        db.session.rollback()
    return count


def _title(payload, titles) -> str | None:
    """Which announcement a Discord message is (its title appears in the embed)."""
    text = json.dumps(payload)
    found = [t for t in titles if t in text]
    return found[0] if len(found) == 1 else None
