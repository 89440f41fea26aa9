"""One rule for a person's time zone (the preference's, else the account's): the digest
and the ops page agree when the two differ."""
from __future__ import annotations

from datetime import date, datetime, timezone

from sqlalchemy import update

from deltacrown.extensions import db
from deltacrown.models import Notification, NotificationPreference
from deltacrown.notifications.digests import send_daily_digest


def test_preference_zone_wins_over_the_account_zone_in_the_digest_and_on_the_ops_page(app, client, users, auth):
    root = users.create("root", admin=True, timezone="UTC")
    with app.app_context():
        db.session.execute(update(NotificationPreference).where(NotificationPreference.user_id == root)
                           .values(timezone="Asia/Tokyo"))
        db.session.add(Notification(user_id=root, type="announcement", title="yesterday in Tokyo", body="",
                                    created_at=datetime(2026, 3, 4, 10, 0, tzinfo=timezone.utc)))
        db.session.commit()
        sent = []
        # 00:30 UTC is 09:30 in Tokyo: past the 08:00 digest time there, not in UTC.
        result = send_daily_digest(now=datetime(2026, 3, 5, 0, 30, tzinfo=timezone.utc),
                                   send_email=lambda recipient, day, items: sent.append((recipient.timezone, day,
                                                                                         len(items))))
    assert result["sent"] == 1 and sent == [("Asia/Tokyo", date(2026, 3, 5), 1)]

    auth.login("root")
    assert "Times are shown in Asia/Tokyo." in client.get("/ops").get_data(as_text=True)
