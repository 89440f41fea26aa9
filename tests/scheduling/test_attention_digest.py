"""The daily digest leaves out what the player put away (archived) or asked to see later
(snoozed until after the digest); a snooze that is over counts again (issue 16)."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import time_machine
from sqlalchemy import update

from deltacrown.extensions import db
from deltacrown.notifications.digests import send_daily_digest
from deltacrown.notifications.models import Notification

from .test_digests import add_notification, set_prefs

UTC = timezone.utc
DIGEST_AT = datetime(2026, 3, 5, 8, 0, tzinfo=UTC)  # alice's 08:00 UTC digest of the 4th


def test_digest_leaves_out_archived_and_still_snoozed_notifications(app, users, smtp_server):
    alice = set_prefs(app, users, {"alice": ("UTC", time(8, 0), True)})["alice"]
    yesterday = DIGEST_AT - timedelta(hours=20)
    kept = add_notification(app, alice, yesterday, "Match tonight")
    archived = add_notification(app, alice, yesterday, "Old sponsor news")
    snoozed = add_notification(app, alice, yesterday, "Read the rules later")
    woken = add_notification(app, alice, yesterday, "Snoozed until before the digest")
    with app.app_context():
        db.session.execute(update(Notification).where(Notification.id == archived)
                           .values(archived_at=yesterday + timedelta(hours=1)))
        db.session.execute(update(Notification).where(Notification.id == snoozed)
                           .values(snoozed_until=DIGEST_AT + timedelta(hours=3)))
        db.session.execute(update(Notification).where(Notification.id == woken)
                           .values(snoozed_until=DIGEST_AT - timedelta(hours=1)))
        db.session.commit()
    with time_machine.travel(DIGEST_AT, tick=False), app.app_context():
        result = send_daily_digest(now=DIGEST_AT)
    assert result["sent"] == 1
    [message] = smtp_server.messages
    text = message.text
    assert "Match tonight" in text and "Snoozed until before the digest" in text
    assert "Old sponsor news" not in text and "Read the rules later" not in text
